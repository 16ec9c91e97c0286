"""Bus peers run as separate processes by the tests: ``python tests/peers.py ROLE ...``.

- ``router SETTINGS_JSON``: start a middleware, print its endpoints as JSON, run until stdin closes.
- ``service NAME BACKEND_ADDR``: serve the ``Echo`` service under NAME until killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time

from aitrados.bus import Service, ServiceWorker
from aitrados.log import setup_logging
from aitrados.settings import load_settings


class Echo(Service):
    """A service for tests: echo, identify the process, sleep, fail."""

    name = "echo"

    def echo(self, value: object) -> object:
        return value

    def whoami(self) -> int:
        return os.getpid()

    async def sleep(self, seconds: float) -> float:
        await asyncio.sleep(seconds)
        return seconds

    def fail(self, message: str) -> None:
        raise ValueError(message)


def main() -> None:
    setup_logging("WARNING")
    role = sys.argv[1]
    if role == "router":
        from aitrados.middleware import Middleware

        mw = Middleware(load_settings(bus=json.loads(sys.argv[2]))).start()
        print(json.dumps({t: mw.endpoints(t).__dict__ for t in ("ipc", "tcp")}), flush=True)
        sys.stdin.read()
        mw.stop()
    elif role == "service":
        Echo.name = sys.argv[2]
        # the child's environment names the middleware (ipc folder, name): its service token file is there
        bus = load_settings().bus
        w = ServiceWorker(Echo(), sys.argv[3], bus=bus).start()
        print("ready", flush=True)
        while True:
            time.sleep(1)
            if w.failure:
                raise w.failure


if __name__ == "__main__":
    main()
