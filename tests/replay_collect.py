"""Test helper: run a runtime's replay and hand every message on some topics to a callback."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from conftest import joined_subscriber


def replay_and_collect(rt: Any, prefixes: list[str], on_message: Callable[[Any], None],
                       complete: Callable[[], bool], timeout: float = 120.0) -> None:
    """Start *rt*'s replay; pass each message on *prefixes* to *on_message* until ``replay.end`` came and
    ``complete()`` holds once the bus is quiet (plugins may publish a little after the replay's end).
    Bounded by *timeout*; fails when the replay did not end."""
    with joined_subscriber(rt.mw, [*prefixes, "replay.end"]) as sub:
        rt.start_replay()
        deadline, ended = time.monotonic() + timeout, False
        while time.monotonic() < deadline:
            m = sub.recv(timeout=0.5)
            if m is None:
                if ended and complete():
                    return
            elif m.topic == "replay.end":
                ended = True
            else:
                on_message(m)
        assert ended, "the replay stalled"
