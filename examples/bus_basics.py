"""Start a middleware, serve a service, call it, publish and subscribe — all in one script.

    python examples/bus_basics.py
"""

from __future__ import annotations

import time

from aitrados.bus import Service
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
        time.sleep(0.2)  # let the subscription reach the publisher
        for i in range(3):
            pub.publish("ohlc.STOCK:US:SPX.DAY", {"close": 4000 + i})
        while (m := sub.recv(timeout=1.0)) is not None:
            print(f"sub: {m.topic} #{m.seq} {m.data}")
        print("subscriber stats:", sub.stats)


if __name__ == "__main__":
    main()
