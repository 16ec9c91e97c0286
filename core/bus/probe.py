"""Proving a subscription: publish a probe until it comes back through the pub/sub router.

ZeroMQ subscriptions reach the router asynchronously, so a subscriber that must not miss the
first events (the plugin host's event pump, an isolated worker's strategies) publishes a probe
on a topic of its own until it receives it. Real messages that arrive meanwhile are kept, in
order, for the caller to handle first. :func:`prove` is for a :class:`~aitrados.bus.pubsub.Subscriber`,
:func:`aprove` for an :class:`~aitrados.bus.pubsub.AsyncSubscriber`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Generator
from typing import Any

from .pubsub import AsyncSubscriber, Message, Subscriber

__all__ = ["SubscriptionProbe", "aprove", "prove"]

#: Seconds between two probes.
PROBE_EVERY = 0.05


class SubscriptionProbe:
    """One probe topic on a subscriber: recognises the probe and keeps what else came meanwhile.

    :param sub: the subscriber (the probe topic is subscribed at once)
    :param address: the router address it is connected to (for the error message)
    :param owner: first part of the probe topic (``<owner>.probe.<random>``)
    """

    def __init__(self, sub: Subscriber | AsyncSubscriber, address: str, owner: str) -> None:
        self.sub = sub
        self.address = address
        self.topic = f"{owner}.probe.{os.urandom(6).hex()}"
        #: Messages that came before the probe, in arrival order.
        self.early: list[Message] = []
        sub.subscribe(self.topic)

    def came_back(self, msg: Message) -> bool:
        """True when *msg* is the probe (then unsubscribed); other messages are kept in ``early``."""
        if msg.topic == self.topic:
            self.sub.unsubscribe(self.topic)
            return True
        self.early.append(msg)
        return False

    def failure(self, timeout: float) -> RuntimeError:
        """The error for a probe that never came back."""
        return RuntimeError(f"no probe came back through the pub/sub router at {self.address} within "
                            f"{timeout:g}s; is the middleware running?")


def _waits(probe: SubscriptionProbe, publish: Callable[[str, Any], Any],
           timeout: float) -> Generator[float, Message | None, list[Message]]:
    """The probing schedule: yields how long to wait for a message and is sent what came (None:
    nothing); publishes a probe every :data:`PROBE_EVERY` seconds; returns the early messages."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        publish(probe.topic, {"probe": True})
        end = time.monotonic() + PROBE_EVERY
        while (left := end - time.monotonic()) > 0:
            msg = yield left
            if msg is None:
                break
            if probe.came_back(msg):
                return probe.early
    raise probe.failure(timeout)


def prove(sub: Subscriber, publish: Callable[[str, Any], Any], address: str, owner: str,
          timeout: float = 15.0) -> list[Message]:
    """Publish probes with *publish* until one comes back to *sub*; returns the messages received before it.

    :raises RuntimeError: when none came back within *timeout* seconds.
    """
    waits = _waits(SubscriptionProbe(sub, address, owner), publish, timeout)
    try:
        left = next(waits)
        while True:
            left = waits.send(sub.recv(timeout=left))
    except StopIteration as done:
        return done.value


async def aprove(sub: AsyncSubscriber, publish: Callable[[str, Any], Any], address: str, owner: str,
                 timeout: float = 15.0) -> list[Message]:
    """The asyncio twin of :func:`prove` (*publish* is a plain, non-blocking call)."""
    waits = _waits(SubscriptionProbe(sub, address, owner), publish, timeout)
    try:
        left = next(waits)
        while True:
            left = waits.send(await sub.recv(timeout=left))
    except StopIteration as done:
        return done.value
