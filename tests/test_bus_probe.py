"""Proving a subscription through the real pub/sub router, sync and asyncio, and failing clearly without one."""

from __future__ import annotations

import asyncio

import pytest
import zmq

from aitrados.bus.probe import aprove, prove
from aitrados.bus.pubsub import AsyncSubscriber, Publisher, Subscriber

pytestmark = pytest.mark.timeout(60)


def test_once_proven_the_first_message_arrives(mw) -> None:
    pub = mw.publisher()
    with mw.subscriber(["data."]) as sub:
        early = prove(sub, pub.publish, "inproc", "test")
        assert all(m.topic.startswith("data.") for m in early)  # the probe itself is not handed back
        pub.publish("data.first", {"n": 1})  # no retry: the path is known to work now
        m = sub.recv(timeout=10)
        assert m is not None and (m.topic, m.data) == ("data.first", {"n": 1})
    pub.close()


def test_the_asyncio_twin_proves_too(mw) -> None:
    async def main() -> tuple[str, object]:
        pub = mw.publisher()
        sub = AsyncSubscriber(mw.endpoints().subscribe, ["data."], bus=mw.bus, context=mw.context)
        try:
            await aprove(sub, pub.publish, "inproc", "test")
            pub.publish("data.first", [1, 2])
            m = await sub.recv(timeout=10)
            assert m is not None
            return m.topic, m.data
        finally:
            sub.close()
            pub.close()

    assert asyncio.run(main()) == ("data.first", [1, 2])


def test_without_a_router_it_fails_naming_the_address(tmp_path) -> None:
    ctx = zmq.Context()
    address = f"ipc://{tmp_path}/nobody-sub"
    sub = Subscriber(address, [], context=ctx)
    pub = Publisher(f"ipc://{tmp_path}/nobody-pub", context=ctx)
    try:
        with pytest.raises(RuntimeError, match=f"no probe came back through the pub/sub router at {address} "
                                               r"within 0.3s; is the middleware running\?"):
            prove(sub, pub.publish, address, "test", timeout=0.3)
    finally:
        sub.close()
        pub.close()
        ctx.term()
