"""The compat gateway: the official trade-middleware RPC router and pub/sub router, on our bus.

One thread runs the RPC side (asyncio): official clients' requests to ``aitrados_api`` are answered
from our instances (:mod:`.functions`), requests to a registered official ``BackendService`` are
forwarded to it, and requests to any other name go to the native service of that name.

Official pub/sub is forwarded by libzmq (:mod:`.proxy`), as the official router does it. Without
the native bridge one proxy joins the official XSUB and XPUB, and subscriptions travel up to the
official publishers. With it (``bridge_native``, the default) the gateway subscribes to every
official publish and two proxies run in series::

    official publishers -> XSUB -proxy "in"-> PUB (inproc) -> XSUB -proxy "out"-> XPUB -> official subscribers
                                  | capture                    ^
                                  v                            | native market events (to_official)
                     bridge thread: to_native -> native bus    bridge thread <- native bus

Only the "in" hop has a capture, so each official publish reaches the native bus once, and
native events, entering at the "out" hop, never come back. The capture is a bounded queue that
never slows the forwarding: what it drops under overload is counted
(``stats["bridge_lost_frames"]``, from the "in" proxy's own frame count). Malformed frames are
counted in ``stats`` and dropped; no frame stops a thread.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from typing import Any

import zmq
import zmq.asyncio
from loguru import logger

from aitrados.bus.addresses import Endpoints, is_loopback
from aitrados.bus.client import AsyncRPCClient
from aitrados.bus.pubsub import Publisher, Subscriber
from aitrados.bus.security import SecurityError, apply_server, curve_enabled
from aitrados.bus.service import ServiceWorker
from aitrados.settings import BusSettings

from . import frames as F
from .functions import answer
from .official_backends import OfficialBackendProxy
from .proxy import CaptureLoss, ProxyControl, lower_priority, serve_proxy
from .settings import CompatSettings
from .topics import NATIVE_PREFIXES, to_native, to_official

#: The gateway's private inproc addresses (``role``, ``id``).
_INPROC = "inproc://aitrados-compat-{role}-{id}"
#: Seconds between the bridge's reads of the "in" proxy's counts (how fresh its loss count is).
_LOSS_PERIOD = 0.25


class CompatGateway:
    """Binds the official addresses and serves them until :meth:`stop`.

    :param settings: the gateway's addresses, key and limits
    :param endpoints: the native middleware's connect addresses
    :param bus: the native bus settings (CURVE keys, timeouts)
    :param context: the native middleware's ZeroMQ context (inproc needs it)
    """

    def __init__(self, settings: CompatSettings, endpoints: Endpoints, bus: BusSettings,
                 context: zmq.Context | None = None) -> None:
        if not is_loopback(settings.host) and not curve_enabled(bus):
            raise SecurityError(f"refusing to bind the compat gateway on {settings.host!r} without CURVE keys; "
                                "set the bus CURVE keys (docs/bus.md) or keep plugins.aitrados_compat.host = 127.0.0.1")
        self.settings = settings
        self.endpoints = endpoints
        self.bus = bus
        self.context = context or zmq.Context.instance()
        #: ``published_in``: official publishes put on the native bus; ``bridge_lost_frames``: frames of
        #: official publishes the bridge's capture queue dropped (an official publish is 2 frames);
        #: ``published_out``: native events sent to official subscribers; ``proxy_restarts``: see
        #: :func:`.proxy.serve_proxy`.
        self.stats: dict[str, int] = {"requests": 0, "answered": 0, "forwarded": 0, "native_calls": 0,
                                      "malformed": 0, "rejected_key": 0, "published_in": 0, "published_out": 0,
                                      "bridge_lost_frames": 0, "proxy_restarts": 0}
        self.backends: dict[str, tuple[bytes, float]] = {}
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._ready = threading.Barrier(1)  # one party per thread, set by start()
        self._threads: list[threading.Thread] = []
        self._proxies_ctl: list[str] = []
        self._pending: dict[bytes, asyncio.Future[Any]] = {}
        self._proxies: dict[str, ServiceWorker] = {}
        self._ids = 0

    # ------------------------------------------------------------------ lifecycle
    def _addresses(self, port: int, ipc: str) -> list[str]:
        s = self.settings
        return [s.tcp(port)] + ([ipc] if s.enable_ipc else [])

    def _socket(self, ctx: zmq.Context, kind: int) -> zmq.Socket:
        sock = ctx.socket(kind)
        sock.linger = 0
        sock.maxmsgsize = self.settings.max_message_size
        sock.sndhwm = sock.rcvhwm = self.bus.hwm
        if curve_enabled(self.bus):
            apply_server(sock, self.bus)
        return sock

    def start(self, timeout: float = 10.0) -> CompatGateway:
        """Bind every official address and start the threads; raises when one cannot bind."""
        s = self.settings
        self._ctx = zmq.Context()
        socks: list[zmq.Socket] = []
        try:
            self._front = self._socket(self._ctx, zmq.ROUTER)
            self._back = self._socket(self._ctx, zmq.ROUTER)
            self._xsub = self._socket(self._ctx, zmq.XSUB)
            self._xpub = self._socket(self._ctx, zmq.XPUB)
            socks = [self._front, self._back, self._xsub, self._xpub]
            for sock, addrs in ((self._front, self._addresses(s.frontend_port, s.ipc_frontend)),
                                (self._back, self._addresses(s.backend_port, s.ipc_backend)),
                                (self._xsub, self._addresses(s.sub_port, s.ipc_sub)),
                                (self._xpub, self._addresses(s.pub_port, s.ipc_pub))):
                for a in addrs:
                    try:
                        sock.bind(a)
                    except zmq.ZMQError as exc:
                        raise RuntimeError(f"compat gateway cannot bind {a}: {exc} (is the official run_all() "
                                           "middleware or another gateway running? change plugins.aitrados_compat "
                                           "ports to move this one)") from None
            targets = [("rpc", self._rpc_main), *self._pubsub_sockets(socks)]
        except BaseException:
            for sock in socks:
                sock.close(0)
            self._ctx.term()
            raise
        self._ready = threading.Barrier(len(targets) + 1)
        for name, target in targets:
            t = threading.Thread(target=self._guard, args=(target,), name=f"aitrados-compat-{name}", daemon=True)
            t.start()
            self._threads.append(t)
        try:
            self._ready.wait(timeout)
        except threading.BrokenBarrierError:
            self.stop()
            raise RuntimeError(f"compat gateway did not start within {timeout}s: {self.failure}") from self.failure
        logger.info("aitrados compat gateway: official RPC on {} / {}, pub/sub on {} / {}",
                    s.tcp(s.frontend_port), s.tcp(s.backend_port), s.tcp(s.sub_port), s.tcp(s.pub_port))
        return self

    def _guard(self, target: Any) -> None:
        try:
            target()
        except threading.BrokenBarrierError:  # another thread failed first: its error is the cause
            pass
        except BaseException as exc:  # reported through failure, never silent
            if not self._stop.is_set():
                self.failure = self.failure or exc  # the first error is the cause; later ones follow from it
                logger.exception("compat gateway thread {} died: {}", threading.current_thread().name, exc)
                self._ready.abort()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the threads (the proxies through their control sockets) and close every socket."""
        self._stop.set()
        ctx = getattr(self, "_ctx", None)
        if ctx is not None and not ctx.closed and self._threads:
            for address in self._proxies_ctl:  # "in" first: it may be waiting for "out" to drain
                peer = ProxyControl(ctx, address, timeout=min(timeout, 1.0))
                peer.terminate()
                peer.close()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        if ctx is not None and not ctx.closed:
            ctx.destroy(0)

    # ------------------------------------------------------------------ RPC
    def _rpc_main(self) -> None:
        asyncio.run(self._rpc_loop())

    async def _rpc_loop(self) -> None:
        native = AsyncRPCClient(self.endpoints.rpc_frontend, bus=self.bus, context=self.context,
                                timeout=self.settings.call_timeout)

        async def call(service: str, method: str, **params: Any) -> Any:
            return await native.call(service, method, **params)

        self._native_call = call
        self._loop = asyncio.get_running_loop()
        tasks: set[asyncio.Task[None]] = set()
        # wait on asyncio shadows; receive and send on the plain sockets without blocking
        front_w = zmq.asyncio.Socket.shadow(self._front.underlying)
        back_w = zmq.asyncio.Socket.shadow(self._back.underlying)
        poller = zmq.asyncio.Poller()
        poller.register(front_w, zmq.POLLIN)
        poller.register(back_w, zmq.POLLIN)
        self._ready.wait()
        try:
            while not self._stop.is_set():
                events = dict(await poller.poll(100))
                if front_w in events:
                    for _ in range(1000):
                        try:
                            frames = self._front.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        task = self._on_request(frames)
                        if task is not None:
                            t = asyncio.ensure_future(task)
                            tasks.add(t)
                            t.add_done_callback(tasks.discard)
                if back_w in events:
                    for _ in range(1000):
                        try:
                            frames = self._back.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._on_backend(frames)
                self._expire()
        finally:
            for t in tasks:
                t.cancel()
            native.close()
            for w in self._proxies.values():
                w.stop()
            self._proxies.clear()

    def _reply(self, client: bytes, backend: bytes, fn: bytes, body: bytes) -> None:
        try:
            self._front.send_multipart([client, b"", backend, fn, body], zmq.NOBLOCK)
        except zmq.ZMQError:  # the client left (REQ gone) or its pipe is full: never block the router
            pass

    def _on_request(self, frames: list[bytes]) -> Any:
        self.stats["requests"] += 1
        if len(frames) < 5 or frames[1] != b"" or len(frames) > 6:
            self.stats["malformed"] += 1
            return None
        client, _, backend_b, fn_b, params = frames[:5]
        key = self.settings.secret_key
        if key is not None:
            given = frames[5] if len(frames) > 5 else b""
            if not hmac.compare_digest(given, key.get_secret_value().encode()):
                self.stats["rejected_key"] += 1
                self._reply(client, backend_b, fn_b, F.error(
                    "the compat gateway needs the secret key: pass secret_key= or set AITRADOS_SECRET_KEY",
                    code=429, status="invalid_secret_key"))
                return None
        try:
            backend, fn = backend_b.decode("utf-8"), fn_b.decode("utf-8")
        except UnicodeDecodeError:
            self.stats["malformed"] += 1
            self._reply(client, backend_b, fn_b, F.error("backend identity and function name must be UTF-8"))
            return None
        if fn_b == F.ONLINE_SERVICES:
            self._reply(client, backend_b, fn_b, F.ok(sorted({F.AITRADOS_API, *self.backends})))
            return None
        entry = self.backends.get(backend)
        if entry is not None and backend != F.AITRADOS_API:
            self.stats["forwarded"] += 1
            try:
                self._back.send_multipart([entry[0], b"", client, backend_b, fn_b, params], zmq.NOBLOCK)
            except zmq.ZMQError:
                self._reply(client, backend_b, fn_b, F.error(f"backend {backend} is not reachable", code=503))
            return None
        try:
            args, kwargs = F.parse_params(params)
        except ValueError as exc:
            self.stats["malformed"] += 1
            self._reply(client, backend_b, fn_b, F.error(str(exc)))
            return None
        return self._answer(client, backend_b, fn_b, backend, fn, args, kwargs)

    async def _answer(self, client: bytes, backend_b: bytes, fn_b: bytes, backend: str, fn: str,
                      args: list[Any], kwargs: dict[str, Any]) -> None:
        if backend == F.AITRADOS_API:
            body = await answer(fn, args, kwargs, self._native_call)
            self.stats["answered"] += 1
        else:
            self.stats["native_calls"] += 1
            if args:
                body = F.error(f"native service {backend}: pass keyword arguments only (docs/compat.md)")
            else:
                try:
                    body = F.ok(await self._native_call(backend, fn, **kwargs))
                except Exception as exc:
                    online = sorted({F.AITRADOS_API, *self.backends})
                    body = F.error(f"backend_identity {backend} {fn}: {exc} (official backends online: {online})",
                                   code=429)
        self._reply(client, backend_b, fn_b, body)

    def _on_backend(self, frames: list[bytes]) -> None:
        if len(frames) < 3 or frames[1] != b"":
            self.stats["malformed"] += 1
            return
        ident, cmd = frames[0], frames[2]
        if cmd in (F.REGISTER, F.HEARTBEAT) and len(frames) == 4:
            try:
                name = frames[3].decode("utf-8")
            except UnicodeDecodeError:
                self.stats["malformed"] += 1
                return
            if not name or name == F.AITRADOS_API:
                self.stats["malformed"] += 1  # the aitrados_api name is the gateway's own
                return
            if name not in self.backends:
                logger.info("compat gateway: official backend {!r} registered", name)
                self._loop.run_in_executor(None, self._serve_proxy, name)
            self.backends[name] = (ident, time.monotonic())
            return
        if len(frames) >= 6:  # a reply: [ident, "", client, backend, function, response]
            fut = self._pending.pop(frames[2], None)
            if fut is not None:
                if not fut.done():
                    fut.set_result(frames[5])
                return
            self._reply(frames[2], frames[3], frames[4], frames[5])
            return
        self.stats["malformed"] += 1

    def _expire(self) -> None:
        limit = time.monotonic() - self.settings.backend_timeout
        for name, (_, seen) in list(self.backends.items()):
            if seen < limit:
                del self.backends[name]
                logger.warning("compat gateway: official backend {!r} missed its heartbeats; removed", name)
                w = self._proxies.pop(name, None)
                if w is not None:
                    self._loop.run_in_executor(None, w.stop)

    def _serve_proxy(self, name: str) -> None:
        """Serve the native twin of official backend *name* (runs in an executor thread)."""
        if name in self._proxies or self._stop.is_set():
            return
        proxy = OfficialBackendProxy(name, self._forward, self._loop, self.settings.call_timeout)
        try:
            w = ServiceWorker(proxy, self.endpoints.rpc_backend, bus=self.bus, context=self.context).start()
        except Exception as exc:  # the native name may be taken or refused: official callers still work
            logger.warning("compat gateway: official backend {!r} not served natively: {}", name, exc)
            return
        self._proxies[name] = w

    async def _forward(self, name: str, function: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """Send one native caller's request to official backend *name*; returns its decoded answer."""
        entry = self.backends.get(name)
        if entry is None:
            raise LookupError(f"official backend {name!r} is not registered with the compat gateway")
        self._ids += 1
        client = b"\x00native-%d" % self._ids
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[client] = fut
        try:
            self._back.send_multipart([entry[0], b"", client, name.encode(), function.encode(),
                                       F.dumps({"args": args, "kwargs": kwargs})], zmq.NOBLOCK)
            raw = await asyncio.wait_for(fut, self.settings.call_timeout)
        finally:
            self._pending.pop(client, None)
        try:
            return json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return raw.decode("utf-8", "replace")

    # ------------------------------------------------------------------ pub/sub
    def _inproc(self, role: str) -> str:
        return _INPROC.format(role=role, id=id(self))

    def _pubsub_sockets(self, socks: list[zmq.Socket]) -> list[tuple[str, Any]]:
        """Make the pub/sub side's inproc sockets (added to *socks*); returns its thread targets."""
        ctx, hwm = self._ctx, self.bus.hwm

        def make(kind: int) -> zmq.Socket:
            sock = ctx.socket(kind)
            sock.linger = 0
            socks.append(sock)
            return sock

        ctl_in = make(zmq.REP)
        ctl_in.bind(self._inproc("ctl-in"))
        self._proxies_ctl = [self._inproc("ctl-in")]
        if not self.settings.bridge_native:  # one proxy, both ways, as the official router
            return [("pubsub", lambda: self._proxy_main(self._xsub, self._xpub, None, ctl_in))]
        self._xsub.send(b"\x01")  # the native bus hears every official publish: publishers send them all
        mid = make(zmq.PUB)
        mid.setsockopt(zmq.XPUB_NODROP, 1)  # a full hop makes "in" wait for "out", never drops
        mid.sndhwm = hwm
        mid.bind(self._inproc("mid"))
        out = make(zmq.XSUB)
        out.rcvhwm = hwm
        out.bind(self._inproc("out"))  # native events come in here (outside the capture)
        out.connect(self._inproc("mid"))
        capture = make(zmq.XPUB)
        capture.sndhwm = self.settings.bridge_hwm
        capture.bind(self._inproc("capture"))
        self._tap = tap = make(zmq.SUB)
        tap.rcvhwm = 1  # the queue's bound is the capture's
        tap.subscribe(b"")
        tap.connect(self._inproc("capture"))
        if not capture.poll(5000):
            raise RuntimeError("compat gateway: the native bridge's capture queue did not connect")
        capture.recv()  # the tap's subscription: from now on every official publish is copied to it
        ctl_out = make(zmq.REP)
        ctl_out.bind(self._inproc("ctl-out"))
        self._proxies_ctl.append(self._inproc("ctl-out"))
        return [("pubsub-in", lambda: self._proxy_main(self._xsub, mid, capture, ctl_in)),
                ("pubsub-out", lambda: self._proxy_main(out, self._xpub, None, ctl_out)),
                ("official-to-native", self._capture_main),
                ("native-to-official", self._bridge_main)]

    def official_frames_in(self, timeout: float = 2.0) -> int | None:
        """Frames the gateway has received from official publishers (the first proxy's own count;
        an official publish is 2 frames), or None when the proxy does not answer in time."""
        ctx = getattr(self, "_ctx", None)
        if ctx is None or ctx.closed or not self._proxies_ctl:
            return None
        try:
            peer = ProxyControl(ctx, self._proxies_ctl[0], timeout)
        except zmq.ZMQError:  # the gateway is stopping
            return None
        try:
            counts = peer.statistics()
        finally:
            peer.close()
        return None if counts is None else counts[0]

    def _proxy_main(self, frontend: zmq.Socket, backend: zmq.Socket, capture: zmq.Socket | None,
                    control: zmq.Socket) -> None:
        self._ready.wait()

        def restarted() -> None:
            self.stats["proxy_restarts"] += 1
            if self.stats["proxy_restarts"] in (1, 10, 100, 1000):
                logger.warning("compat gateway: a pub/sub proxy hit a full or empty queue and was restarted "
                               "({} time(s)); a peer is flooding it or not reading", self.stats["proxy_restarts"])

        serve_proxy(frontend, backend, capture, control, self._stop, restarted)

    def _capture_main(self) -> None:
        """Official publishes (the "in" proxy's capture) -> the native bus, counting what the capture dropped."""
        tap = self._tap
        native = Publisher(self.endpoints.publish, bus=self.bus, context=self.context)
        counts = ProxyControl(self._ctx, self._inproc("ctl-in"))
        loss = CaptureLoss()
        next_count, warned = 0.0, 0.0
        lower_priority(self.settings.bridge_nice)
        self._ready.wait()
        try:
            while not self._stop.is_set():
                if tap.poll(100):
                    self._drain(tap, native, loss, 1000)
                now = time.monotonic()
                if now < next_count:
                    continue
                next_count = now + _LOSS_PERIOD
                counted = counts.statistics()
                # settle only once every frame the proxy had captured by then was read
                if counted is not None and self._drain(tap, native, loss, 100_000):
                    lost = loss.settle(counted[0])
                    if lost > self.stats["bridge_lost_frames"] and now >= warned:
                        warned = now + 10.0
                        logger.warning("compat gateway: the native bridge fell behind official publishers and "
                                       "lost {} frames so far (stats bridge_lost_frames; raise "
                                       "plugins.aitrados_compat.bridge_hwm)", lost)
                    self.stats["bridge_lost_frames"] = lost
        finally:
            counts.close()
            native.close()

    def _drain(self, tap: zmq.Socket, native: Publisher, loss: CaptureLoss, limit: int) -> bool:
        """Bridge up to *limit* captured official publishes; True when the capture queue ran empty."""
        for _ in range(limit):
            try:
                frames = tap.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return True
            loss.read(len(frames))
            self._from_official(frames, native)
        return False

    def _from_official(self, frames: list[bytes], native: Publisher) -> None:
        if len(frames) < 2:
            self.stats["malformed"] += 1
            return
        try:
            mapped = to_native(frames[-2], frames[-1])
            if mapped is not None:
                native.publish(*mapped)
                self.stats["published_in"] += 1
        except Exception:  # not JSON, too deep, ints msgpack cannot carry...: counted, never fatal
            self.stats["malformed"] += 1

    def _bridge_main(self) -> None:
        """Native market events -> official subscribers, entering at the "out" proxy (never captured)."""
        inject = self._ctx.socket(zmq.PUB)
        inject.linger = 0
        inject.setsockopt(zmq.XPUB_NODROP, 1)  # a full queue waits (bounded by stop), never drops
        inject.sndhwm = self.bus.hwm
        inject.sndtimeo = 100
        inject.connect(self._inproc("out"))
        try:
            sub = Subscriber(self.endpoints.subscribe, NATIVE_PREFIXES, bus=self.bus, context=self.context)
        except BaseException:
            inject.close(0)
            raise
        self._ready.wait()
        try:
            while not self._stop.is_set():
                m = sub.recv(timeout=0.1)
                if m is None:
                    continue
                try:
                    out = to_official(m.topic, m.data)
                except Exception as exc:  # any malformed native payload is counted, never stops the bridge
                    self.stats["malformed"] += 1
                    logger.warning("compat gateway: native {} not bridged: {}", m.topic, exc)
                    continue
                if out is not None:
                    self._send_out(inject, list(out))
        finally:
            sub.close()
            inject.close(0)

    def _send_out(self, inject: zmq.Socket, frames: list[bytes]) -> None:
        while not self._stop.is_set():
            try:
                inject.send_multipart(frames)
            except zmq.Again:  # the "out" hop is full: wait for it (it never waits on anyone)
                continue
            self.stats["published_out"] += 1
            return
