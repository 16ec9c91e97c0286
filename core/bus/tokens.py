"""The middleware's secret tokens: who may serve a service, and who may operate the kill switch.

A middleware makes two random tokens each time it starts and writes them, mode 0600, into its
ipc folder (itself 0700): the *service* token (a worker must present it in READY to register a
service) and the *operator* token (``trading.trip``/``reset`` need it; ``aitrados call`` sends
it). Reading a file is the proof: a process that can read the user's private ipc folder is
trusted as that user; a process of another user on the same machine is not, whichever
loopback address it connects to. Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Literal

from .settings import BusSettings

Kind = Literal["service", "operator"]
KINDS: tuple[Kind, ...] = ("service", "operator")


def token_path(bus: BusSettings, kind: Kind) -> Path:
    """Where the *kind* token of this middleware lives (``bus.service_token_file`` overrides the service one)."""
    if kind == "service" and bus.service_token_file:
        return Path(bus.service_token_file)
    return Path(bus.ipc_dir) / f"{bus.name}-{kind}.token"


def new_token() -> str:
    """A fresh random token (256 bits, URL-safe text)."""
    return secrets.token_urlsafe(32)


def write_token(path: Path, token: str) -> None:
    """Write *token* to *path* (mode 0600, atomically replacing any old file)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(path.name + f".{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, token.encode("ascii"))
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_token(bus: BusSettings, kind: Kind) -> str | None:
    """The *kind* token of the middleware *bus* names, or None when its file is absent or unreadable."""
    try:
        text = token_path(bus, kind).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return text or None


def same_token(given: object, expected: str | None) -> bool:
    """True when *given* is a string equal to *expected* (constant-time; never true without an expected token)."""
    if expected is None or not isinstance(given, str):
        return False
    return hmac.compare_digest(given.encode("utf-8", "surrogatepass"), expected.encode("ascii"))
