"""Shared fixtures: isolated bus settings (own name, ipc folder, free tcp ports) and a running middleware."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from aitrados.middleware import Middleware
from aitrados.settings import Settings, load_settings

_ids = itertools.count()
ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


@pytest.fixture
def ipc_dir() -> Iterator[str]:
    """A short private folder for ipc files (socket paths must stay under ~100 bytes)."""
    d = tempfile.mkdtemp(prefix="at-", dir="/tmp")
    yield d
    shutil.rmtree(d, ignore_errors=True)


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


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a CLI subprocess that starts or reaches *settings*' middleware (tcp ports: any free)."""
    b = settings.bus
    return dict(os.environ, AITRADOS_BUS__NAME=b.name, AITRADOS_BUS__IPC_DIR=b.ipc_dir,
                AITRADOS_BUS__RPC_FRONTEND_PORT="0", AITRADOS_BUS__RPC_BACKEND_PORT="0",
                AITRADOS_BUS__SUB_PORT="0", AITRADOS_BUS__PUB_PORT="0", **extra)


def child_env(settings: Settings | None = None) -> dict[str, str]:
    """Environment for a child process that should use *settings*' bus."""
    env = dict(os.environ)
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
