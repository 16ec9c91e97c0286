"""Shared fixtures: isolated bus settings (own name, ipc folder, free tcp ports) and a running middleware.

No test reads the caller's environment: every ``AITRADOS_*`` variable is removed for the whole
session and again around each test, and the working directory is a private empty folder (so a
``.env`` or ``aitrados.toml`` where pytest was started is not read either). Child processes get
their environment from :func:`clean_environ`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aitrados.bus.client import RPCClient
from aitrados.bus.probe import prove
from aitrados.bus.pubsub import Subscriber
from aitrados.middleware import Middleware
from aitrados.settings import Settings, load_settings

_ids = itertools.count()
ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
#: Prefix of the variables the settings read; none of the caller's may reach a test.
ENV_PREFIX = "AITRADOS_"


def clean_environ(*, drop_pythonpath: bool = False, **extra: str) -> dict[str, str]:
    """A copy of this process's environment without any ``AITRADOS_*`` variable, plus *extra*.

    The base of every child process's environment: a child sees only the settings its test
    gives it. PYTHONPATH stays (fixtures put test plugins on it) unless *drop_pythonpath*.
    """
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(ENV_PREFIX) and not (drop_pythonpath and k == "PYTHONPATH")}
    env.update(extra)
    return env


@pytest.fixture(scope="session", autouse=True)
def _no_caller_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """For the whole session: no ``AITRADOS_*`` variable, and a private empty working directory.

    Session-scoped so that module- and session-scoped fixtures are isolated too.
    """
    with pytest.MonkeyPatch.context() as mp:
        for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
            mp.delenv(key)
        mp.chdir(tmp_path_factory.mktemp("cwd"))
        yield


@pytest.fixture(autouse=True)
def _no_aitrados_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Around each test: drop any ``AITRADOS_*`` variable a previous test or fixture left behind."""
    for key in [k for k in os.environ if k.startswith(ENV_PREFIX)]:
        monkeypatch.delenv(key)


@pytest.fixture
def ipc_dir() -> Iterator[str]:
    """A short private folder for ipc files (socket paths must stay under ~100 bytes)."""
    d = tempfile.mkdtemp(prefix="at-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


#: Heartbeats for tests that run a whole replay in one process. The routers, the runtime's event
#: loop and any isolated worker share two cores with the replay (and, in .ci/run's second run,
#: with a busy loop per core), so a thread may be starved for a second: with the fast default
#: (0.6 s of silence = dead) a live service would be dropped mid-run. A killed peer is still
#: noticed at the next heartbeat send (its connection is gone); only silence takes longer.
PATIENT_HEARTBEATS: dict[str, object] = {"heartbeat_interval": 0.5, "heartbeat_liveness": 20}


def bus_settings(ipc_dir: str, **bus: object) -> Settings:
    """Settings for a test middleware: unique name, private ipc folder, any free tcp ports, fast heartbeats."""
    cfg: dict[str, object] = {
        "name": f"t{os.getpid()}-{next(_ids)}", "ipc_dir": ipc_dir,
        "rpc_frontend_port": 0, "rpc_backend_port": 0, "sub_port": 0, "pub_port": 0,
        "heartbeat_interval": 0.2, "heartbeat_liveness": 3,
    }
    cfg.update(bus)
    return load_settings(bus=cfg)


@pytest.fixture
def settings(ipc_dir: str) -> Settings:
    """Isolated settings for one test."""
    return bus_settings(ipc_dir)


@pytest.fixture
def mw(settings: Settings) -> Iterator[Middleware]:
    """A running middleware, stopped after the test."""
    m = Middleware(settings).start()
    yield m
    m.stop()


def joined_subscriber(mw: Middleware, prefixes: list[str]) -> Subscriber:
    """A subscriber to *mw*'s router on *prefixes* whose subscription has reached the router: a probe
    published after it came back (subscriptions travel asynchronously; a sleep proves nothing on a
    loaded machine). Fails if a message on *prefixes* came first: the test has not begun yet."""
    sub = mw.subscriber(prefixes)
    with mw.publisher() as pub:
        early = prove(sub, pub.publish, mw.endpoints().subscribe, "test")
    assert early == [], f"messages before the test began: {[m.topic for m in early]}"
    return sub


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a CLI subprocess that starts or reaches *settings*' middleware (tcp ports: any free)."""
    b = settings.bus
    return clean_environ(AITRADOS_BUS__NAME=b.name, AITRADOS_BUS__IPC_DIR=b.ipc_dir,
                         AITRADOS_BUS__RPC_FRONTEND_PORT="0", AITRADOS_BUS__RPC_BACKEND_PORT="0",
                         AITRADOS_BUS__SUB_PORT="0", AITRADOS_BUS__PUB_PORT="0", **extra)


def child_env(settings: Settings | None = None) -> dict[str, str]:
    """Environment for a child process that should use *settings*' bus (none of the caller's ``AITRADOS_*``)."""
    env = clean_environ()
    if settings is not None:
        b = settings.bus
        env.update({
            "AITRADOS_BUS__NAME": b.name, "AITRADOS_BUS__IPC_DIR": b.ipc_dir,
            "AITRADOS_BUS__HEARTBEAT_INTERVAL": str(b.heartbeat_interval),
            "AITRADOS_BUS__HEARTBEAT_LIVENESS": str(b.heartbeat_liveness),
        })
    return env

#: How tests run the command line (the installed `aitrados` script of this interpreter).
AITRADOS = [PYTHON, "-m", "aitrados"]


def wait_for_service(client: RPCClient, name: str, workers: int = 1, timeout: float = 10.0) -> None:
    """Return once the router lists *workers* workers of service *name* (a worker's ``start`` returns
    when its READY is sent, not when the router has read it); fails after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.call("middleware", "services").get(name)
        if info and len(info["workers"]) >= workers:
            return
        time.sleep(0.05)
    raise AssertionError(f"service {name} never registered {workers} worker(s)")
