"""CLI helpers as a person runs them: call, status, tail, config, keygen (real subprocesses)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from aitrados.bus import Service, UnauthorizedError, rpc_method
from aitrados.bus.probe import prove
from aitrados.middleware import Middleware

from conftest import AITRADOS, clean_environ, wait_for_service

pytestmark = pytest.mark.timeout(90)


class Shop(Service):
    name = "shop"

    def price(self, item: str, qty: int = 1) -> dict:
        return {"item": item, "total": 2.5 * qty}

    @rpc_method(role="operator")
    def close(self, reason: str) -> str:
        return f"closed: {reason}"


def cli_env(mw: Middleware) -> dict[str, str]:
    b = mw.bus
    return clean_environ(AITRADOS_BUS__NAME=b.name, AITRADOS_BUS__IPC_DIR=b.ipc_dir)


def aitrados(*args: str, env: dict[str, str], timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AITRADOS, *args], env=env, capture_output=True, text=True, timeout=timeout)


def test_call_prints_json(mw: Middleware) -> None:
    mw.serve(Shop())
    wait_for_service(mw.rpc_client(timeout=10), "shop")
    r = aitrados("call", "shop", "price", "item=apple", "qty=4", env=cli_env(mw))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == {"item": "apple", "total": 10.0}
    bad = aitrados("call", "nosuch", "x", env=cli_env(mw))
    assert bad.returncode == 1 and "no service named 'nosuch'" in bad.stderr and "shop" in bad.stderr


def test_call_sends_the_operator_token_it_reads_from_the_ipc_folder(mw: Middleware) -> None:
    mw.serve(Shop())
    wait_for_service(mw.rpc_client(timeout=10), "shop")
    with pytest.raises(UnauthorizedError):
        mw.rpc_client(timeout=10).call("shop", "close", reason="x")  # no token: refused
    r = aitrados("call", "shop", "close", "reason=lunch", env=cli_env(mw))
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == "closed: lunch"
    # a user who cannot read the ipc folder has no token: same call over tcp, refused
    port = mw.endpoints("tcp").rpc_frontend.rsplit(":", 1)[1]
    other = dict(cli_env(mw), AITRADOS_BUS__IPC_DIR=str(Path(mw.bus.ipc_dir) / "elsewhere"),
                 AITRADOS_BUS__RPC_FRONTEND_PORT=port)
    r = aitrados("call", "--transport", "tcp", "shop", "close", "reason=x", env=other)
    assert r.returncode == 1 and "Unauthorized" in r.stderr and "operator token" in r.stderr, r.stderr


def test_status_lists_services_and_topics(mw: Middleware) -> None:
    mw.serve(Shop())
    pub = mw.publisher()
    sub = mw.subscriber(["ohlc."])
    assert prove(sub, pub.publish, mw.endpoints().subscribe, "test") == []
    for i in range(4):
        pub.publish("ohlc.CRYPTO:GLOBAL:BTCUSD.1M", {"close": i})
    assert sub.recv(timeout=10) is not None
    deadline = time.monotonic() + 30  # the router lists topics from a snapshot its monitor makes once a second
    while True:
        r = aitrados("status", "--json", env=cli_env(mw))
        assert r.returncode == 0, r.stderr
        st = json.loads(r.stdout)
        if st["topics"].get("ohlc.CRYPTO:GLOBAL:BTCUSD.1M", {}).get("count") == 4 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "shop" in st["services"] and len(st["services"]["shop"]["workers"]) == 1
    assert st["topics"]["ohlc.CRYPTO:GLOBAL:BTCUSD.1M"]["count"] == 4
    human = aitrados("status", env=cli_env(mw))
    assert "shop" in human.stdout and "ohlc.CRYPTO:GLOBAL:BTCUSD.1M" in human.stdout
    assert "rpc peers: replies dropped 0" in human.stdout and "restarts 0" in human.stdout


def test_tail_prints_messages(mw: Middleware) -> None:
    p = subprocess.Popen([*AITRADOS, "tail", "news.", "--count", "3", "--seconds", "20"], env=cli_env(mw),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    pub = mw.publisher()
    stop = threading.Event()

    def feed() -> None:  # keep publishing until the tail has subscribed and printed
        i = 0
        while not stop.is_set():
            pub.publish("news.STOCK:US:SPX", {"title": f"n{i}"})
            pub.publish("ohlc.ignored", i)
            i += 1
            time.sleep(0.05)

    t = threading.Thread(target=feed, daemon=True)
    t.start()
    out, err = p.communicate(timeout=30)
    stop.set()
    t.join()
    lines = out.strip().splitlines()
    assert p.returncode == 0 and len(lines) == 3, (out, err)
    assert all(ln.startswith("news.STOCK:US:SPX #") for ln in lines)
    assert json.loads(lines[0].split(" ", 2)[2])["title"].startswith("n")


def test_config_masks_secrets(tmp_path: Path) -> None:
    env = clean_environ(AITRADOS_SECRET_KEY="sk-very-secret-value-123", AITRADOS_BUS__PUB_PORT="6000")
    r = subprocess.run([*AITRADOS, "config"], env=env, capture_output=True, text=True, timeout=30, cwd=tmp_path)
    assert r.returncode == 0
    assert "sk-very-secret-value-123" not in r.stdout + r.stderr
    cfg = json.loads(r.stdout)
    assert cfg["secret_key"] == "**********" and cfg["bus"]["pub_port"] == 6000


def test_config_reads_toml(tmp_path: Path) -> None:
    (tmp_path / "aitrados.toml").write_text('log_level = "DEBUG"\n[bus]\nrpc_frontend_port = 7001\n')
    r = subprocess.run([*AITRADOS, "config"], env=clean_environ(), capture_output=True, text=True, timeout=30,
                       cwd=tmp_path)
    cfg = json.loads(r.stdout)
    assert cfg["log_level"] == "DEBUG" and cfg["bus"]["rpc_frontend_port"] == 7001


def test_keygen_writes_key_pairs(tmp_path: Path) -> None:
    r = subprocess.run([*AITRADOS, "keygen", "--dir", str(tmp_path / "k")], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    names = sorted(p.name for p in (tmp_path / "k").iterdir())
    assert names == ["authorized", "client.key", "client.key_secret", "server.key", "server.key_secret"]
    assert "AITRADOS_BUS__CURVE_SECRET_KEY_FILE" in r.stdout
    assert (tmp_path / "k" / "authorized" / "client.key").read_bytes() == (tmp_path / "k" / "client.key").read_bytes()


def test_keygen_refuses_to_overwrite_without_force(tmp_path: Path) -> None:
    d = tmp_path / "k"
    assert subprocess.run([*AITRADOS, "keygen", "--dir", str(d)], capture_output=True, timeout=30).returncode == 0
    before = (d / "server.key_secret").read_bytes()
    again = subprocess.run([*AITRADOS, "keygen", "--dir", str(d)], capture_output=True, text=True, timeout=30)
    assert again.returncode == 1 and "--force" in again.stderr and "server.key_secret" in again.stderr
    assert (d / "server.key_secret").read_bytes() == before  # nothing replaced
    forced = subprocess.run([*AITRADOS, "keygen", "--dir", str(d), "--force"], capture_output=True, text=True, timeout=30)
    assert forced.returncode == 0, forced.stderr
    assert (d / "server.key_secret").read_bytes() != before


def test_config_masks_replay_key_and_plugin_secrets(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADOS_")}
    env.update(AITRADOS_MARKETDATA__REPLAY_SECRET_KEY="replay-key-very-secret-42",
               AITRADOS_BUS__CURVE_SECRET_KEY_FILE="/keys/server.key_secret")
    (tmp_path / "aitrados.toml").write_text('[plugins.news]\napi_token = "tok-very-secret-77"\nlimit = 5\n')
    r = subprocess.run([*AITRADOS, "config"], capture_output=True, text=True, timeout=30, cwd=tmp_path, env=env)
    assert r.returncode == 0, r.stderr
    assert "replay-key-very-secret-42" not in r.stdout + r.stderr and "tok-very-secret-77" not in r.stdout
    cfg = json.loads(r.stdout)
    assert cfg["marketdata"]["replay_secret_key"] == "**********"
    assert cfg["plugins"]["news"] == {"api_token": "**********", "limit": 5}
    assert cfg["bus"]["curve_secret_key_file"] == "/keys/server.key_secret"  # a path, not a secret


def test_masking_hides_secret_named_values_but_not_counts_named_like_them() -> None:
    from aitrados.settings import load_settings

    m = load_settings(marketdata={"replay_secret_key": "s3cret", "replay_control_token": "tok"}).masked()
    assert m["marketdata"]["replay_secret_key"] == m["marketdata"]["replay_control_token"] == "**********"
    assert isinstance(m["trading"]["llm"]["max_tokens"], int)  # a count, not a secret: `config --toml` pastes back
