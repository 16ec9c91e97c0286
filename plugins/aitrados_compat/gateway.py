"""The compat gateway: the official trade-middleware RPC router and pub/sub router, on our bus.

One thread runs the RPC side (asyncio): official clients' requests to ``aitrados_api`` are answered
from our instances (:mod:`.functions`), requests to a registered official ``BackendService`` are
forwarded to it, and requests to any other name go to the native service of that name. A second
thread forwards official pub/sub (XSUB -> XPUB) and hands official publishers' messages to the
native bus; a third feeds native market events to official subscribers. Malformed frames are
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
from .settings import CompatSettings
from .topics import NATIVE_PREFIXES, to_native, to_official

_BRIDGE = "inproc://aitrados-compat-bridge-{}"


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
        self.stats: dict[str, int] = {"requests": 0, "answered": 0, "forwarded": 0, "native_calls": 0,
                                      "malformed": 0, "rejected_key": 0, "published_in": 0, "published_out": 0}
        self.backends: dict[str, tuple[bytes, float]] = {}
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._ready = threading.Barrier(4)
        self._threads: list[threading.Thread] = []
        self._bridge = _BRIDGE.format(id(self))
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
            self._pull = self._ctx.socket(zmq.PULL)
            self._pull.bind(self._bridge)
            socks.append(self._pull)
        except BaseException:
            for sock in socks:
                sock.close(0)
            self._ctx.term()
            raise
        for name, target in (("rpc", self._rpc_main), ("pubsub", self._pubsub_main), ("bridge", self._bridge_main)):
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
        """Stop the threads and close every socket."""
        self._stop.set()
        for t in self._threads:
            t.join(timeout)
        self._threads.clear()
        ctx = getattr(self, "_ctx", None)
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
    def _pubsub_main(self) -> None:
        xsub, xpub, pull = self._xsub, self._xpub, self._pull
        native = Publisher(self.endpoints.publish, bus=self.bus, context=self.context)
        bridge = self.settings.bridge_native
        if bridge:  # the native bus hears every official publish: take everything from publishers
            xsub.send(b"\x01")
        poller = zmq.Poller()
        for s in (xsub, xpub, pull):
            poller.register(s, zmq.POLLIN)
        self._ready.wait()
        try:
            while not self._stop.is_set():
                events = dict(poller.poll(100))
                if xpub in events:  # subscriptions from official subscribers go up to official publishers
                    for _ in range(1000):
                        try:
                            sub_msg = xpub.recv(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        if not bridge:  # when bridging, publishers already send everything (XPUB filters)
                            xsub.send(sub_msg)
                if xsub in events:
                    for _ in range(1000):
                        try:
                            frames = xsub.recv_multipart(zmq.NOBLOCK)
                        except zmq.Again:
                            break
                        self._from_official(frames, xpub, native)
                if pull in events:
                    for _ in range(1000):
                        try:
                            xpub.send_multipart(pull.recv_multipart(zmq.NOBLOCK))
                        except zmq.Again:
                            break
                        self.stats["published_out"] += 1
        finally:
            native.close()

    def _from_official(self, frames: list[bytes], xpub: zmq.Socket, native: Publisher) -> None:
        if len(frames) < 2:
            self.stats["malformed"] += 1
            return
        xpub.send_multipart(frames)  # official subscribers get it as the official router would send it
        if not self.settings.bridge_native:
            return
        try:
            mapped = to_native(frames[-2], frames[-1])
            if mapped is not None:
                native.publish(*mapped)
                self.stats["published_in"] += 1
        except Exception:  # not JSON, too deep, ints msgpack cannot carry...: counted, never fatal
            self.stats["malformed"] += 1

    def _bridge_main(self) -> None:
        push = self._ctx.socket(zmq.PUSH)
        push.linger = 0
        push.connect(self._bridge)
        sub = Subscriber(self.endpoints.subscribe, NATIVE_PREFIXES if self.settings.bridge_native else (),
                         bus=self.bus, context=self.context)
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
                    push.send_multipart(list(out))
        finally:
            sub.close()
            push.close(0)
