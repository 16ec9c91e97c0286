"""Hostile bus peers run as separate processes by tests/test_bus_attacks.py.

``flood ADDRESS COUNT [SERVICE]``: a client DEALER with RCVHWM=1 that sends COUNT requests
(``middleware.ping`` by default) and never reads a reply. ``deaf-worker ADDRESS NAME TOKEN_FILE``: a worker that
registers NAME with the service token, heartbeats every 0.1 s and never reads. Both print one
line when their work is done and stay connected until their stdin closes (bounded by 60 s).
bench/bench_rpc_attack.py runs the same peers.

Over CURVE (the netns test): ``curve-worker ADDRESS TOKEN_FILE SERVER_PUBLIC CLIENT_SECRET``
serves ``nsworker`` (method ``where`` returns its pid and network namespace);
``curve-intruder`` takes the same arguments with a key the router does not allow and prints
``refused`` once the CURVE handshake is rejected (``not refused`` after 20 s).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import zmq

from aitrados.bus import protocol as P


def _until_stdin_closes(limit: float = 60.0) -> threading.Event:
    done = threading.Event()

    def read() -> None:
        try:
            while sys.stdin.readline():
                pass
        finally:
            done.set()

    threading.Thread(target=read, daemon=True).start()
    timer = threading.Timer(limit, done.set)
    timer.daemon = True
    timer.start()
    return done


def flood(address: str, count: int, service: str = "middleware") -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.rcvhwm = 1
    s.sndhwm = 10_000
    s.connect(address)
    body = P.request_body("ping", {})
    name = service.encode()
    for i in range(count):
        s.send_multipart([P.CLIENT_TAG, P.REQUEST, name, i.to_bytes(8, "big"), body])
    print(f"sent {count}", flush=True)
    _until_stdin_closes().wait()
    s.close(0)
    ctx.term()


def deaf_worker(address: str, name: str, token_file: str) -> None:
    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.rcvhwm = 1
    s.connect(address)
    token = Path(token_file).read_text().strip()
    s.send_multipart([P.WORKER_TAG, P.READY, name.encode(), P.encode({"pid": 1, "token": token})])
    print("registered", flush=True)
    done = _until_stdin_closes()
    while not done.wait(0.1):
        try:
            s.send_multipart([P.WORKER_TAG, P.HEARTBEAT], zmq.NOBLOCK)
        except zmq.Again:
            pass
    s.close(0)
    ctx.term()


def curve_worker(address: str, token_file: str, server_public: str, client_secret: str) -> None:
    import os

    from aitrados.bus import Service, ServiceWorker
    from aitrados.settings import BusSettings

    class Where(Service):
        name = "nsworker"

        def where(self) -> dict[str, object]:
            return {"pid": os.getpid(), "netns": os.readlink("/proc/self/ns/net")}

    bus = BusSettings(curve_public_key_file=server_public, curve_client_secret_key_file=client_secret,
                      service_token_file=token_file, heartbeat_interval=0.2)
    w = ServiceWorker(Where(), address, bus=bus).start()
    print("started", flush=True)
    _until_stdin_closes().wait()
    w.stop()


def curve_intruder(address: str, token_file: str, server_public: str, client_secret: str) -> None:
    import zmq.auth
    from zmq.utils.monitor import recv_monitor_message

    ctx = zmq.Context()
    s = ctx.socket(zmq.DEALER)
    s.linger = 0
    s.curve_serverkey = zmq.auth.load_certificate(server_public)[0]
    s.curve_publickey, s.curve_secretkey = zmq.auth.load_certificate(client_secret)
    mon = s.get_monitor_socket(zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_SUCCEEDED)
    s.connect(address)
    token = Path(token_file).read_text().strip()
    s.send_multipart([P.WORKER_TAG, P.READY, b"nsworker", P.encode({"token": token})])
    verdict = "not refused"
    if mon.poll(20_000):
        ev = recv_monitor_message(mon)
        verdict = "refused" if ev["event"] == zmq.EVENT_HANDSHAKE_FAILED_AUTH else "accepted"
    print(verdict, flush=True)
    s.disable_monitor()
    mon.close(0)
    s.close(0)
    ctx.term()


if __name__ == "__main__":
    role = sys.argv[1]
    if role == "flood":
        flood(sys.argv[2], int(sys.argv[3]), *sys.argv[4:5])
    elif role == "deaf-worker":
        deaf_worker(sys.argv[2], sys.argv[3], sys.argv[4])
    elif role == "curve-worker":
        curve_worker(*sys.argv[2:6])
    elif role == "curve-intruder":
        curve_intruder(*sys.argv[2:6])
    else:
        raise SystemExit(f"unknown role {role!r}")
