"""The middleware: one object that runs the RPC router and the pub/sub router.

Embed it (``with Middleware(settings) as mw: ...``) or run it with ``aitrados run``.
It binds tcp (127.0.0.1 by default), ipc and inproc, refuses unsafe binds, removes stale ipc
files, reports a port in use by name, and watches its router threads: a thread that dies
makes ``failure`` non-None and ``wait()`` return, so nothing fails silently.

At start it writes a fresh service token and operator token (mode 0600) into its ipc folder
(see :mod:`aitrados.bus.tokens`): only workers presenting the service token may register a
service, and only callers sending the operator token may operate the kill switch.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path
from typing import Any

import zmq
from loguru import logger

from .bus.addresses import ROLES, Endpoints, Role, endpoints_for, ensure_ipc_dir, inproc_address, ipc_path, tcp_address
from .bus.client import RPCClient
from .bus.pubsub import Publisher, PubSubRouter, Subscriber
from .bus.rpc import RPCRouter
from .bus.security import apply_server, check_bind_safety, start_authenticator
from .bus.service import Service, ServiceWorker
from .bus.tokens import KINDS, new_token, token_path, write_token
from .settings import Settings, load_settings


class Middleware:
    """The routers of one middleware instance.

    :param settings: effective settings (``load_settings()`` when omitted)
    :param context: ZeroMQ context; the process-wide one by default, so in-process clients
        reach the routers over inproc without passing it around
    """

    def __init__(self, settings: Settings | None = None, context: zmq.Context | None = None,
                 quiet: bool = False) -> None:
        self.settings = settings or load_settings()
        #: Level of the routine start/registration/goodbye lines: INFO, or DEBUG when *quiet*
        #: (a finite backtest keeps the terminal for its progress and summary).
        self.routine_level = "DEBUG" if quiet else "INFO"
        self.bus = self.settings.bus
        self.context = context or zmq.Context.instance()
        self.rpc: RPCRouter | None = None
        self.pubsub: PubSubRouter | None = None
        self.workers: list[ServiceWorker] = []
        #: Other long-running parts (a plugin's gateway...) whose ``failure`` stops the run; see ``watch``.
        self.watched: list[Any] = []
        self._auth: Any = None
        self._tcp_ports: dict[Role, int] = {}
        self._ipc_files: list[Path] = []
        self._stopped = threading.Event()
        #: The signal (SIGINT, SIGTERM) that asked this middleware to stop, if one did.
        self.signal_received: int | None = None
        self.running = False
        self.tokens: dict[str, str] = {}
        self._token_files: list[Path] = []

    # ---------------------------------------------------------------- addresses
    def _bind_addresses(self, role: Role) -> list[str]:
        b = self.bus
        addrs = []
        if b.enable_tcp:
            addrs.append(tcp_address(b, role))
        if b.enable_ipc:
            addrs.append(f"ipc://{ipc_path(b, role)}")
        addrs.append(inproc_address(b, role))
        return addrs

    def endpoints(self, transport: str = "auto") -> Endpoints:
        """Connect addresses over *transport* (``auto`` = inproc: the caller is in this process)."""
        return endpoints_for(self.bus, transport, in_process=True, tcp_ports=self._tcp_ports)

    # ---------------------------------------------------------------- lifecycle
    def start(self) -> Middleware:
        """Bind and start both routers. Raises with a clear message when it cannot."""
        if self.running:
            return self
        check_bind_safety(self.bus)
        ensure_ipc_dir(self.bus)  # also holds the token files
        self.tokens = {kind: new_token() for kind in KINDS}  # written once the binds succeeded
        self._auth = start_authenticator(self.context, self.bus)
        secure = (lambda s: apply_server(s, self.bus)) if self.bus.curve_secret_key_file else None
        self.pubsub = PubSubRouter(self.context, self.bus, self._bind_addresses("publish"),
                                   self._bind_addresses("subscribe"), secure=secure)
        self.rpc = RPCRouter(self.context, self.bus, self._bind_addresses("rpc_frontend"),
                             self._bind_addresses("rpc_backend"), topics=self.pubsub.topics_encoded, secure=secure,
                             service_token=self.tokens["service"], pubsub_stats=self.pubsub.router_stats,
                             report_gaps=self.pubsub.gap_reports.report)
        try:
            ps = self.pubsub.bind()
            rp = self.rpc.bind()
        except BaseException:
            self.pubsub.stop()
            self.rpc.stop()
            for bound in (*self.pubsub.bound.values(), *self.rpc.bound.values()):
                self._ipc_files += [Path(a[len("ipc://"):]) for a in bound if a.startswith("ipc://")]
            self._remove_ipc_files()
            if self._auth:
                self._auth.stop()
            raise
        for role, bound in (("publish", ps["sub"]), ("subscribe", ps["pub"]),
                            ("rpc_frontend", rp["frontend"]), ("rpc_backend", rp["backend"])):
            for a in bound:
                if a.startswith("tcp://"):
                    self._tcp_ports[role] = int(a.rsplit(":", 1)[1])  # type: ignore[index]
                elif a.startswith("ipc://"):
                    self._ipc_files.append(Path(a[len("ipc://"):]))
        self._write_tokens()
        self.pubsub.start()
        self.rpc.routine_level = self.routine_level
        self.rpc.start()
        self.running = True
        logger.log(self.routine_level, "Pubsub Router Started")
        logger.log(self.routine_level, "Sub addr:{}", ps["sub"])
        logger.log(self.routine_level, "Pub addr:{}", ps["pub"])
        logger.log(self.routine_level, "RPC Router Started")
        logger.log(self.routine_level, "Frontend addr:{}", rp["frontend"])
        logger.log(self.routine_level, "Backend addr:{}", rp["backend"])
        return self

    def stop(self) -> None:
        """Stop services, routers and the authenticator; close sockets and remove ipc files."""
        if not self.running:
            return
        for w in self.workers:
            w.stop()
        self.workers.clear()
        if self.rpc:
            self.rpc.stop()
        if self.pubsub:
            self.pubsub.stop()
        if self._auth:
            self._auth.stop()
        self._remove_ipc_files()
        self._remove_tokens()
        self.running = False
        self._stopped.set()
        logger.debug("middleware stopped")

    def _write_tokens(self) -> None:
        """Write this run's token files (after the binds succeeded: never over a running middleware's)."""
        for kind in KINDS:
            path = token_path(self.bus, kind)
            write_token(path, self.tokens[kind])
            self._token_files.append(path)

    def _remove_tokens(self) -> None:
        for f in self._token_files:
            f.unlink(missing_ok=True)
        self._token_files.clear()

    def _remove_ipc_files(self) -> None:
        for f in self._ipc_files:
            f.unlink(missing_ok=True)
        self._ipc_files.clear()

    def __enter__(self) -> Middleware:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def watch(self, part: Any) -> None:
        """Make *part*'s fatal error this middleware's: once ``part.failure`` is not None, ``failure``
        returns it, so ``wait()`` (and ``aitrados run``) stop with that cause and exit non-zero.

        For parts that run their own threads beside the routers (a plugin's gateway, say).
        """
        if not hasattr(part, "failure"):
            raise TypeError(f"{type(part).__name__} has no `failure` attribute to watch")
        self.watched.append(part)

    @property
    def failure(self) -> BaseException | None:
        """The error that killed a router, an in-process service thread or a watched part, if any."""
        for part in (self.rpc, self.pubsub, *self.workers, *self.watched):
            if part is not None and part.failure is not None:
                return part.failure
        if self.running and ((self.rpc and not self.rpc.alive) or (self.pubsub and not self.pubsub.alive)):
            return RuntimeError("a router thread stopped unexpectedly")
        return None

    @property
    def stop_requested(self) -> bool:
        """True once SIGINT/SIGTERM arrived (with handlers installed) or ``stop()`` ran."""
        return self._stopped.is_set()

    def install_signal_handlers(self) -> None:
        """Make SIGINT and SIGTERM end ``wait()`` (call before ``start()`` so no signal is missed)."""
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                signal.signal(sig, lambda signum, _frame: self.request_stop(signum))

    def request_stop(self, signum: int | None = None) -> None:
        """Ask ``wait()`` to return; *signum* records the signal that asked (``signal_received``)."""
        if signum is not None:
            self.signal_received = signum
        self._stopped.set()

    def wait(self, install_signals: bool = True) -> int:
        """Block until SIGINT/SIGTERM, ``stop()`` or a router failure; stops and returns an exit code."""
        if install_signals:
            self.install_signal_handlers()
        while not self._stopped.wait(0.5):
            if self.failure is not None:
                logger.error("middleware failing: {}", self.failure)
                self.stop()
                return 1
        self.stop()
        return 0

    # ---------------------------------------------------------------- conveniences
    def rpc_client(self, transport: str = "auto", timeout: float | None = None, role: str | None = None) -> RPCClient:
        """A sync RPC client connected to this middleware; *role* (``operator``, ``service``) sends that token."""
        token = self.tokens[role] if role else None
        return RPCClient(self.endpoints(transport).rpc_frontend, bus=self.bus, context=self.context, timeout=timeout,
                         token=token)

    def publisher(self, transport: str = "auto") -> Publisher:
        """A publisher connected to this middleware (one per thread)."""
        return Publisher(self.endpoints(transport).publish, bus=self.bus, context=self.context)

    def subscriber(self, prefixes: list[str] | tuple[str, ...] = (), transport: str = "auto") -> Subscriber:
        """A subscriber connected to this middleware."""
        return Subscriber(self.endpoints(transport).subscribe, prefixes, bus=self.bus, context=self.context)

    def serve(self, service: Service, transport: str = "auto") -> ServiceWorker:
        """Serve *service* from a worker thread in this process; returns the started worker."""
        w = ServiceWorker(service, self.endpoints(transport).rpc_backend, bus=self.bus, context=self.context,
                          **self.worker_credentials())
        w.start()
        self.workers.append(w)
        return w

    def worker_credentials(self) -> dict[str, Any]:
        """``ServiceWorker`` keyword arguments for a worker of this middleware: its token and the callers' roles."""
        return {"token": self.tokens["service"],
                "auth": {self.tokens["operator"]: "operator", self.tokens["service"]: "service"}}


__all__ = ["Middleware"]
