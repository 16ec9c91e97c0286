"""CPU time and context switches per RPC call of every thread of the path, ours against raw pyzmq.

    python bench/rpc_threads.py [--calls 4000] [--pipe-calls 30000] [--window 256]

Runs each path as separate processes over ipc, as bench/bench_bus.py does: the raw one (a C
``zmq.proxy`` broker, a DEALER echo worker and a blocking DEALER client, bench_bus's baselines) and
ours (the middleware's RPC router, an echo ``ServiceWorker``, ``RPCClient`` for sequential calls and
``AsyncRPCClient`` with ``--window`` calls in flight for pipelined ones). Around the timed calls it
reads every thread's user and system CPU time and context switches from ``/proc`` (Linux), and
prints them per call: where each microsecond of a round trip is spent, by process and thread
(the Python thread against libzmq's I/O thread), which wall-clock latency on a shared machine
cannot show. The client's own figures cover its whole process. bench-only; not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_bus as B  # noqa: E402  (the roles and helpers of the bus benchmark)

HERE = os.path.abspath(__file__)
_TICK = os.sysconf("SC_CLK_TCK")


def threads(pid: int) -> dict[str, tuple[str, float, float, int]]:
    """Thread id -> (name, user s, system s, context switches) of every thread of process *pid*."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                st = f.read()
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                cs = sum(int(ln.split()[1]) for ln in f if "ctxt_switches" in ln)
        except FileNotFoundError:  # the thread ended
            continue
        fields = st.rsplit(")", 1)[1].split()
        out[tid] = (st[st.index("(") + 1:st.rindex(")")], int(fields[11]) / _TICK, int(fields[12]) / _TICK, cs)
    return out


def role_client(kind: str, front: str, mode: str, n: int, window: int) -> None:
    """Warm up, wait for a line on stdin, make *n* calls, print the process's CPU and context switches."""

    def run(count: int) -> None:
        if kind == "ours":
            from aitrados.bus import AsyncRPCClient, RPCClient

            if mode == "seq":
                c = RPCClient(front, timeout=30)
                for _ in range(count):
                    c.call("echo", "echo", value=1)
                c.close()
                return

            async def pipelined() -> None:
                ac, left = AsyncRPCClient(front, timeout=60), [count]

                async def lane() -> None:
                    while left[0] > 0:
                        left[0] -= 1
                        await ac.call("echo", "echo", value=1)

                await asyncio.gather(*[lane() for _ in range(window)])
                ac.close()

            asyncio.run(pipelined())
            return
        import zmq

        s = zmq.Context.instance().socket(zmq.DEALER)
        s.sndhwm = s.rcvhwm = 0
        s.connect(front)
        send, recv, sm = s.send, s.recv, B.SM
        body = B.P.request_body("echo", {"value": 1})

        def req(i: int) -> None:
            send(B.P.CLIENT_TAG, sm)
            send(B.P.REQUEST, sm)
            send(b"echo", sm)
            send(i.to_bytes(8, "big"), sm)
            send(body)

        def rep() -> None:
            for _ in range(5):
                recv()

        if mode == "seq":
            for i in range(count):
                req(i)
                rep()
        else:
            B.keep_window(req, rep, count, window)
        s.close(0)

    run(2000)
    me = os.getpid()
    print("ready", flush=True)
    sys.stdin.readline()
    t0, c0 = time.perf_counter(), threads(me)
    run(n)
    wall, c1 = time.perf_counter() - t0, threads(me)
    tot = [sum(c1[t][i] - c0.get(t, ("", 0, 0, 0))[i] for t in c1) for i in (1, 2, 3)]
    print(json.dumps({"wall": wall, "usr": tot[0], "sys": tot[1], "cs": tot[2]}), flush=True)


def measure(path: str, mode: str, n: int, window: int, tmp: str) -> list[tuple[str, float, float, float]]:
    """Rows (part, user µs/call, system µs/call, context switches/call) of one path and mode; the first row
    is the wall time per call (in the user column)."""
    procs: list[tuple[str, subprocess.Popen]] = []
    router = None
    if path == "ours":
        cfg = {"name": f"thr{mode}", "ipc_dir": tmp, "rpc_frontend_port": 0, "rpc_backend_port": 0,
               "sub_port": 0, "pub_port": 0}
        router = B.spawn("our_router", json.dumps(cfg))
        eps = json.loads(B.line(router))["ipc"]
        front = eps["rpc_frontend"]
        worker = B.spawn("our_worker", eps["rpc_backend"], os.path.join(tmp, f"thr{mode}-service.token"))
        procs.append(("router", router))
    else:
        front, back = f"ipc://{tmp}/thr-{mode}-f.sock", f"ipc://{tmp}/thr-{mode}-b.sock"
        broker = B.spawn("raw_broker", front, back, "c")
        B.line(broker)
        worker = B.spawn("raw_worker", back)
        procs.append(("router", broker))
    B.line(worker)
    procs.append(("worker", worker))
    client = subprocess.Popen([sys.executable, HERE, "--role", path, front, mode, str(n), str(window)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        B.line(client)
        before = {k: threads(p.pid) for k, p in procs}
        B.tell(client)
        res = json.loads(B.line(client))
        after = {k: threads(p.pid) for k, p in procs}
    finally:
        B.stop(client, worker)
        if router is not None:
            router.stdin.close()  # type: ignore[union-attr]
            router.wait(10)
        else:
            B.stop(procs[0][1])
    rows = [("wall per call", res["wall"] / n * 1e6, 0.0, 0.0),
            ("client process", res["usr"] / n * 1e6, res["sys"] / n * 1e6, res["cs"] / n)]
    for k, _ in procs:
        for tid, (name, u, s, cs) in sorted(after[k].items()):
            _, u0, s0, cs0 = before[k].get(tid, (name, 0.0, 0.0, 0))
            if cs - cs0 > n // 20 or u + s > u0 + s0:  # threads on the path (idle ones wake a few times a second)
                label = ("libzmq I/O thread" if name.startswith("ZMQbg")
                         else "zmq.proxy thread (C)" if path == "raw" and k == "router" else "Python thread")
                rows.append((f"{k}: {label}", (u - u0) / n * 1e6, (s - s0) / n * 1e6, (cs - cs0) / n))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=4000, help="sequential calls")
    ap.add_argument("--pipe-calls", type=int, default=30000, help="pipelined calls")
    ap.add_argument("--window", type=int, default=256, help="calls in flight when pipelined")
    ap.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role:
        kind, front, mode, n, window = a.role
        role_client(kind, front, mode, int(n), int(window))
        return
    tmp = tempfile.mkdtemp(prefix="atr-", dir="/tmp")
    for mode, n in (("seq", a.calls), ("pipe", a.pipe_calls)):
        print(f"\n{'sequential' if mode == 'seq' else f'pipelined ({a.window} in flight)'}, {n} calls over ipc, "
              f"load average {os.getloadavg()[0]:.1f}")
        print(f"  {'path':5} {'part':28} {'user us/call':>13} {'sys us/call':>12} {'ctx sw/call':>12}")
        for path in ("raw", "ours"):
            for part, u, s, cs in measure(path, mode, n, a.window, tmp):
                if part == "wall per call":
                    print(f"  {path:5} {part:28} {u:13.1f}")
                else:
                    print(f"  {path:5} {part:28} {u:13.1f} {s:12.1f} {cs:12.2f}")


if __name__ == "__main__":
    main()
