"""An asyncio event loop in a daemon thread: where the plugin host runs hooks and its event pump."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .hook_runner import in_loop


class LoopThread:
    """An asyncio event loop in a daemon thread: where the host runs hooks and the event pump."""

    def __init__(self, name: str = "aitrados-plugins") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name=name, daemon=True)
        self._started = threading.Event()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._started.set)
        try:
            self.loop.run_forever()
        finally:
            pending = asyncio.all_tasks(self.loop)
            for t in pending:
                t.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            self.loop.close()

    def start(self) -> LoopThread:
        """Start the thread; returns once the loop runs."""
        self._thread.start()
        self._started.wait(5)
        return self

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        """Run *coro* on the loop from another thread and return its result."""
        if in_loop(self.loop):
            coro.close()
            raise RuntimeError("a blocking call from inside a hook would wait for itself: make the hook "
                               "`async def` and await the async variant (e.g. `await host.acheck_order(...)`)")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the loop (pending tasks are cancelled) and join the thread."""
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout)


__all__ = ["LoopThread"]
