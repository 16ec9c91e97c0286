"""Settings of the bus: addresses, limits, timings and keys of the RPC and pub/sub routers.

The bus owns these so that it imports alone (``import aitrados.bus.rpc`` loads nothing above the
bus). The middleware's :class:`aitrados.settings.Settings` nests them as ``bus``: every value is
settable as ``AITRADOS_BUS__<NAME>`` or in ``aitrados.toml`` under ``[bus]``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

__all__ = ["BusSettings", "Transport", "default_ipc_dir"]

Transport = Literal["auto", "inproc", "ipc", "tcp"]


def default_ipc_dir() -> str:
    """Per-user folder for the routers' ipc files (``/tmp/aitrados-<uid>``)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    return str(Path(tempfile.gettempdir()) / f"aitrados-{uid}")


class BusSettings(BaseModel):
    """Addresses, limits and timings of the RPC and pub/sub routers."""

    model_config = {"extra": "forbid"}

    host: str = Field("127.0.0.1", description="tcp bind/connect host; beyond loopback needs CURVE keys")
    rpc_frontend_port: int = Field(51691, description="tcp port clients connect to (0 = pick a free one)")
    rpc_backend_port: int = Field(51692, description="tcp port services connect to (0 = pick a free one)")
    sub_port: int = Field(51693, description="tcp port publishers connect to (router XSUB side)")
    pub_port: int = Field(51694, description="tcp port subscribers connect to (router XPUB side)")
    ipc_dir: str = Field(default_factory=default_ipc_dir, description="folder of the ipc endpoint files")
    name: str = Field("default", description="instance name: inproc and ipc endpoints are named after it")
    transport: Transport = Field("auto", description="peer transport; auto = inproc in-process, ipc on this host, tcp otherwise")
    enable_tcp: bool = True
    enable_ipc: bool = True
    heartbeat_interval: float = Field(1.0, gt=0, description="seconds between heartbeats, both ways")
    heartbeat_liveness: int = Field(3, ge=1, description="missed heartbeats before a peer is declared dead")
    rpc_timeout: float = Field(10.0, gt=0, description="default client-side timeout of one RPC call, seconds")
    max_message_size: int = Field(16 * 1024 * 1024, description="bytes; larger messages are dropped by the routers (ZMQ_MAXMSGSIZE)")
    hwm: int = Field(100_000, description="send/receive high-water mark (messages) of the router sockets")
    max_inflight_per_client: int = Field(1000, ge=1, description="requests one client may have in flight at the RPC router; more are answered TooManyRequests")
    peer_refusal_limit: int = Field(1000, ge=1, description="messages in a row a peer may leave untaken (its queue full) before the RPC router cuts it off")
    peer_cutoff_seconds: float = Field(10.0, gt=0, description="how long a cut-off peer's messages are discarded (a cut-off worker is unregistered)")
    service_token_file: str | None = Field(None, description="file holding the middleware's service token (default <ipc_dir>/<name>-service.token); workers prove with it that they may serve")
    max_publish_size: int = Field(64 * 1024, ge=1, description="bytes; largest pub/sub message body: Publisher refuses "
                                  "larger ones, the router disconnects a remote publisher that sends one")
    subscriber_queue_bytes: int = Field(1024 * 1024 * 1024, ge=1, description="bytes the pub/sub router queues at most for "
                                        "one subscriber that does not read (its high-water mark is this ÷ max_publish_size)")
    count_all_topics: bool = Field(True, description="the pub/sub router subscribes to every topic, so `status` counts "
                                                     "topics nobody subscribes to (publishers send it everything)")
    topic_stats_max: int = Field(10_000, ge=1, description="most topics the pub/sub router keeps statistics for")
    topic_stats_ttl: float = Field(300.0, gt=0, description="seconds after which a silent topic's statistics are dropped")
    curve_secret_key_file: str | None = Field(None, description="router's CURVE secret certificate (server.key_secret from `aitrados keygen`)")
    curve_public_key_file: str | None = Field(None, description="router's CURVE public certificate (server.key), given to clients")
    curve_client_secret_key_file: str | None = Field(None, description="this client's CURVE secret certificate (client.key_secret)")
    curve_authorized_dir: str | None = Field(None, description="folder of client public certificates allowed to connect; unset = the `authorized` folder beside the server key (made by `aitrados keygen`)")
    curve_allow_any_client: bool = Field(False, description="accept any client key that knows the server key (no allow-list); off by default")
