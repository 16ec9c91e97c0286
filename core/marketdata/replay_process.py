"""The replay server in its own process, controlled over the child's stdin/stdout (JSON lines).

The middleware's process already runs the routers, the hub, the chart flow and the trading
runtime under one GIL; a replay server thread there (generating and JSON-encoding every bar)
competes with them for it, which slows the whole loop and delays the router's answers.
:class:`ReplayServerProcess` runs the same :class:`~aitrados.marketdata.replay_server.ReplayServer`
in a child process instead (``marketdata.replay_process``). It offers what the runtime uses of
:class:`~aitrados.marketdata.replay_server.ReplayServerThread`: ``start()``, ``stop()``,
``start_clock()``, ``http_url``/``ws_url`` and a ``server`` whose ``state()`` and ``autostart``
are forwarded to the child.

Control channel: the parent writes one JSON object per line to the child's stdin (first the
settings, then commands ``{"cmd": "state" | "start_clock" | "autostart", "value": ...}``); the child
answers each with one line ``{"ok": result}`` or ``{"error": "..."}`` on its stdout (its logs go to
stderr). The child stops when its stdin closes, so it never outlives the parent. No pickle:
settings cross as JSON and are validated again in the child.
"""

from __future__ import annotations

import asyncio
import json
import os
import queue
import subprocess
import sys
import threading
from typing import Any

from loguru import logger

from .settings import MarketDataSettings

__all__ = ["ReplayServerProcess"]


class _RemoteServer:
    """The parts of a :class:`ReplayServer` the runtime reads, answered by the child process."""

    def __init__(self, proc: ReplayServerProcess, http_url: str, ws_url: str) -> None:
        self._proc = proc
        self.http_url = http_url
        self.ws_url = ws_url

    def state(self) -> dict[str, Any]:
        """The child server's ``state()`` (timestamps as ISO strings, as the server formats them)."""
        return self._proc.request("state")

    def start_clock(self) -> None:
        """Start the replay clock in the child."""
        self._proc.request("start_clock")

    @property
    def autostart(self) -> str:
        """The child server's autostart mode; setting it forwards the new mode."""
        return self._proc.request("autostart")

    @autostart.setter
    def autostart(self, mode: str) -> None:
        self._proc.request("autostart", mode)


class ReplayServerProcess:
    """A :class:`ReplayServer` in a child process (same settings, same HTTP/WebSocket protocol).

    :param settings: the market-data settings the child's server is built from
    :param log_level: the child's log level (its lines go to this process's stderr)
    :param timeout: seconds to wait for each answer of the child
    """

    def __init__(self, settings: MarketDataSettings, *, log_level: str = "INFO", timeout: float = 30.0) -> None:
        self._settings = settings
        self._log_level = log_level
        self._timeout = timeout
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[bytes] = queue.Queue()
        self._lock = threading.Lock()
        self.server: _RemoteServer | None = None
        #: Level of the server's "listening" and "replay ended" lines (``ReplayServer.routine_level``).
        self.routine_level = "INFO"

    def start(self, timeout: float = 120.0) -> ReplayServerProcess:
        """Start the child and wait until its server listens (building a large timeline takes a while).

        :raises RuntimeError: the child failed to start (its error, or its exit status)
        """
        self._proc = subprocess.Popen([sys.executable, "-m", "aitrados.marketdata.replay_process"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        threading.Thread(target=self._read, args=(self._proc.stdout,), name="replay-process-reader",
                         daemon=True).start()
        try:
            first = {"settings": self._settings.model_dump(mode="json"), "log_level": self._log_level,
                     "routine_level": self.routine_level}
            urls = self.request(None, first, timeout=timeout)
        except BaseException:
            self.stop()
            raise
        self.server = _RemoteServer(self, urls["http_url"], urls["ws_url"])
        return self

    def _read(self, out: Any) -> None:
        for line in iter(out.readline, b""):
            self._lines.put(line)
        self._lines.put(b"")  # end of output: the child exited

    def request(self, cmd: str | None, value: Any = None, *, timeout: float | None = None) -> Any:
        """Send one command to the child and return its answer.

        :raises RuntimeError: the child answered with an error, exited, or did not answer in time
        """
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise RuntimeError("the replay server process is not running; start() it first")
        msg = value if cmd is None else {"cmd": cmd, "value": value}
        with self._lock:
            try:
                proc.stdin.write(json.dumps(msg).encode() + b"\n")
                proc.stdin.flush()
            except (BrokenPipeError, ValueError):
                raise RuntimeError(f"the replay server process exited (status {proc.poll()})") from None
            try:
                line = self._lines.get(timeout=timeout or self._timeout)
            except queue.Empty:
                raise RuntimeError(f"the replay server process did not answer {cmd or 'start'!r} within "
                                   f"{timeout or self._timeout:g} s") from None
        if not line:
            raise RuntimeError(f"the replay server process exited (status {proc.wait(5)}); see its log lines above")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"replay server process: {answer['error']}")
        return answer.get("ok")

    def start_clock(self, timeout: float = 10.0) -> None:
        """Start the replay clock now: for ``autostart='manual'`` once every subscription is in place."""
        self.request("start_clock", timeout=timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Close the child's stdin (it stops its server and exits) and wait for it; killed if it does not."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("replay server process {} did not stop within {:g} s; killing it", proc.pid, timeout)
            proc.kill()
            proc.wait(5)

    @property
    def http_url(self) -> str:
        """The child server's HTTP base URL."""
        assert self.server is not None, "start() the process first"
        return self.server.http_url

    @property
    def ws_url(self) -> str:
        """The child server's WebSocket base URL (without ``/ws``)."""
        assert self.server is not None, "start() the process first"
        return self.server.ws_url

    def __enter__(self) -> ReplayServerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------- child side
async def _child(proto: Any) -> None:
    """Serve one replay server; answer commands from stdin until it closes."""
    from ..log import setup_logging
    from .replay_server import ReplayServer

    loop = asyncio.get_running_loop()

    def reply(obj: dict[str, Any]) -> None:
        proto.write(json.dumps(obj, default=str) + "\n")
        proto.flush()

    first = await loop.run_in_executor(None, sys.stdin.buffer.readline)
    if not first:
        return
    try:
        init = json.loads(first)
        setup_logging(init.get("log_level", "INFO"))
        server = ReplayServer(MarketDataSettings.model_validate(init["settings"]))
        server.routine_level = init.get("routine_level", "INFO")
        await server.start()
    except Exception as e:  # reported to the parent's start()
        logger.exception("replay server process failed to start")
        reply({"error": f"{type(e).__name__}: {e}"})
        return
    reply({"ok": {"http_url": server.http_url, "ws_url": server.ws_url}})
    try:
        while line := await loop.run_in_executor(None, sys.stdin.buffer.readline):
            try:
                msg = json.loads(line)
                cmd, value = msg.get("cmd"), msg.get("value")
                if cmd == "state":
                    result: Any = server.state()
                elif cmd == "start_clock":
                    result = server.start_clock()
                elif cmd == "autostart":
                    if value is not None:
                        if value not in ("immediately", "first_subscribe", "manual"):
                            raise ValueError(f"autostart {value!r} is not immediately, first_subscribe or manual")
                        server.autostart = value
                    result = server.autostart
                else:
                    raise ValueError(f"unknown command {cmd!r}: use state, start_clock or autostart")
            except Exception as e:  # a bad command is answered, the server keeps running
                reply({"error": f"{type(e).__name__}: {e}"})
                continue
            reply({"ok": result})
    finally:
        await server.stop()


def main() -> None:
    """Child entry point: ``python -m aitrados.marketdata.replay_process`` (started by :class:`ReplayServerProcess`)."""
    proto = os.fdopen(os.dup(1), "w")  # the answers; anything else printed goes to stderr
    os.dup2(2, 1)
    try:
        asyncio.run(_child(proto))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
