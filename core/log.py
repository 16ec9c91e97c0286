"""Logging through loguru: one sink on stderr, secrets scrubbed from every record."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterable

from loguru import logger
from rich.console import Console
from rich.text import Text

_secrets: set[str] = set()


def register_secret(value: str | None) -> None:
    """Never let *value* reach a log line (it is replaced by ``**********``)."""
    if value and len(value) >= 4:
        _secrets.add(value)


#: The format of log lines.
LOG_FORMAT = "<green>{time:YYYY-MM-DD HH:mm:ss.SSS}</green> | <level>{level: <7}</level> | {message}"


def scrub_secrets(record: dict) -> bool:
    """A loguru filter that replaces every registered secret in the message; always True."""
    if _secrets:
        msg = record["message"]
        for s in _secrets:
            if s in msg:
                msg = msg.replace(s, "**********")
        record["message"] = msg
    return True


def setup_logging(level: str = "INFO", secrets: Iterable[str | None] = ()) -> None:
    """Send logs to stderr at *level* (DEBUG adds addresses and registrations)."""
    for s in secrets:
        register_secret(s)
    logger.remove()
    fmt = LOG_FORMAT
    if level.upper() == "DEBUG":
        fmt += " <dim>({name}:{line})</dim>"
    con = console()
    if con.is_terminal:  # through the rich console, so a live progress bar stays below the log lines
        logger.add(_console_sink, level=level.upper(), format=fmt, filter=scrub_secrets, backtrace=False,
                   diagnose=False, colorize=True)
    else:
        logger.add(_stderr_sink, level=level.upper(), format=fmt, filter=scrub_secrets, backtrace=False,
                   diagnose=False)


_console: Console | None = None


def console() -> Console:
    """The rich console on stderr that log lines, the progress bar and the summary share."""
    global _console
    if _console is None or _console.file is not sys.stderr:
        _console = Console(stderr=True, highlight=False)
    return _console


def _stderr_sink(message: str) -> None:
    """Write a log line to the ``sys.stderr`` of the moment, not the one of ``setup_logging``'s call: a
    stream swapped and closed since (a test's captured stderr, a redirect undone) would make every
    later line from any thread a "logging error"."""
    err = sys.stderr
    err.write(message)
    err.flush()


def _console_sink(message: str) -> None:
    console().print(Text.from_ansi(str(message).rstrip("\n")), soft_wrap=True)


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    name = args.thread.name if args.thread else "?"
    logger.opt(exception=(args.exc_type, args.exc_value, args.exc_traceback)).error(
        "thread {} died: {}", name, args.exc_value)


#: No thread dies silently: uncaught exceptions in threads go to the log with their traceback.
threading.excepthook = _thread_excepthook
