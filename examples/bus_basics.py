"""Start a middleware, serve a service, call it, publish and subscribe — all in one script.

    python examples/bus_basics.py
"""

from __future__ import annotations

from aitrados.bus import Service
from aitrados.bus.probe import prove
from aitrados.middleware import Middleware


class Greeter(Service):
    """Every public method is an RPC method."""

    name = "greeter"

    def hello(self, who: str) -> str:
        return f"hello {who}"


def main() -> None:
    with Middleware() as mw:
        mw.serve(Greeter())
        client = mw.rpc_client()
        print("rpc:", client.call("greeter", "hello", who="world"))
        print("ping:", client.call("middleware", "ping")["pong"])

        sub = mw.subscriber(["ohlc."])
        pub = mw.publisher()
        # a subscription takes a moment to reach the router: publish a probe until it comes back
        prove(sub, pub.publish, mw.endpoints().subscribe, "example")
        for i in range(3):
            pub.publish("ohlc.STOCK:US:SPX.DAY", {"close": 4000 + i})
        while (m := sub.recv(timeout=1.0)) is not None:
            print(f"sub: {m.topic} #{m.seq} {m.data}")
        print("subscriber stats:", sub.stats)  # the probe counts as one received


if __name__ == "__main__":
    main()
