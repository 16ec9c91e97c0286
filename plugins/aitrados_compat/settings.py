"""``[plugins.aitrados_compat]``: where the compat gateway binds and which key it asks for."""

from __future__ import annotations

import getpass

from pydantic import BaseModel, ConfigDict, Field, SecretStr


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return "user"


class CompatSettings(BaseModel):
    """The official trade-middleware addresses (aitrados-api 0.2.0) and the gateway's limits.

    Defaults are the official ones, so unchanged aitrados-api programs find the gateway.
    """

    model_config = ConfigDict(extra="forbid")

    host: str = Field("127.0.0.1", description="tcp bind host; beyond loopback needs the bus CURVE keys")
    frontend_port: int = Field(51591, description="official RPC frontend (FrontendRequest connects here)")
    backend_port: int = Field(51592, description="official RPC backend (BackendService connects here)")
    sub_port: int = Field(51593, description="official publishers connect here (XSUB)")
    pub_port: int = Field(51594, description="official subscribers connect here (XPUB)")
    enable_ipc: bool = Field(True, description="also bind the official ipc names /tmp/aitrados_<role>_<user>.sock")
    ipc_frontend: str = Field(default_factory=lambda: f"ipc:///tmp/aitrados_frontend_{_user()}.sock")
    ipc_backend: str = Field(default_factory=lambda: f"ipc:///tmp/aitrados_backend_{_user()}.sock")
    ipc_sub: str = Field(default_factory=lambda: f"ipc:///tmp/aitrados_sub_{_user()}.sock")
    ipc_pub: str = Field(default_factory=lambda: f"ipc:///tmp/aitrados_pub_{_user()}.sock")
    secret_key: SecretStr | None = Field(
        None, description="when set, every official request must carry it (the 6th frame, AITRADOS_SECRET_KEY on the client)")
    backend_timeout: float = Field(15.0, gt=0, description="seconds an official backend has to register missing heartbeats")
    call_timeout: float = Field(30.0, gt=0, description="seconds one forwarded call may take")
    max_message_size: int = Field(16 * 1024 * 1024, description="bytes; larger official frames are dropped and counted")
    bridge_native: bool = Field(True, description="publish native market events to official subscribers and back")
    bridge_hwm: int = Field(100_000, ge=1, description="official publishes queued at most for the native bridge; beyond "
                            "it they still reach official subscribers but not the native bus, counted in the "
                            "gateway's stats bridge_lost_frames")
    bridge_nice: int = Field(10, ge=0, le=19, description="how much lower the CPU priority of the thread putting official "
                             "publishes on the native bus is (Linux); forwarding to official subscribers goes first")

    def tcp(self, port: int) -> str:
        """``tcp://host:port`` for one of the ports."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{port}"
