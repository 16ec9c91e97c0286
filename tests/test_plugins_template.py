"""The plugin template: its file set, and a rendered plugin pip-installed into a fresh venv next to the host."""

from __future__ import annotations

import json
import os
import site
import subprocess
import sys
from pathlib import Path

import pytest

from aitrados.plugin_cli import render_plugin, template_context, template_dir

ROOT = Path(__file__).resolve().parent.parent

EXPECTED = {
    "README.md",
    "pyproject.toml",
    "aitrados_demo_cross/__init__.py",
    "aitrados_demo_cross/crossover.py",
    "aitrados_demo_cross/plugin.py",
    "tests/test_plugin.py",
}


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_template_file_set_and_rendering(tmp_path) -> None:
    assert template_dir() == ROOT / "plugin_template"
    keys = json.loads((template_dir() / "cookiecutter.json").read_text())
    # every prompt has a flag of `aitrados new-plugin` (non-interactive)
    from aitrados.plugin_cli import _TEMPLATE_FLAGS

    assert set(keys) == {"plugin_name"} | {k for k, _, _ in _TEMPLATE_FLAGS}
    out = render_plugin("demo_cross", tmp_path, author="Ada", full_symbol="CRYPTO:GLOBAL:BTCUSD", interval="60M")
    assert out == tmp_path / "aitrados-demo-cross"
    assert files(out) == EXPECTED
    for f in EXPECTED:
        text = (out / f).read_text()
        assert "{{" not in text and "cookiecutter" not in text, f
    pyproject = (out / "pyproject.toml").read_text()
    assert '[project.entry-points.aitrados]\ndemo_cross = "aitrados_demo_cross.plugin"' in pyproject
    assert 'name = "Ada"' in pyproject
    plugin = (out / "aitrados_demo_cross/plugin.py").read_text()
    assert 'full_symbol: str = "CRYPTO:GLOBAL:BTCUSD"' in plugin and 'interval: str = "60M"' in plugin
    with pytest.raises(FileExistsError, match="--force"):
        render_plugin("demo_cross", tmp_path)


def test_new_plugin_rejects_bad_names() -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        template_context("My-Plugin")
    with pytest.raises(ValueError, match="not a valid Python module name"):
        template_context("ok", package_name="bad-name")


def test_new_plugin_command(tmp_path) -> None:
    out = subprocess.run([sys.executable, "-m", "aitrados.plugin_cli", "new-plugin", "demo_cross", "-o", str(tmp_path),
                          "--description", "Demo", "--email", "a@b.c"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"created {tmp_path / 'aitrados-demo-cross'}" in out.stdout
    assert 'description = "Demo"' in (tmp_path / "aitrados-demo-cross/pyproject.toml").read_text()


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> tuple[Path, Path]:
    """A fresh venv that sees the host's packages (a .pth adds this venv's site-packages), with the rendered plugin pip-installed."""
    base = tmp_path_factory.mktemp("tpl")
    project = render_plugin("demo_cross", base)
    env_dir = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], check=True, timeout=60)
    py = env_dir / "bin" / "python"
    target = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    host_site = site.getsitepackages()[0]
    Path(target, "aitrados_host.pth").write_text(f"import site; site.addsitedir({host_site!r})\n")
    r = subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                        str(project)], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    assert any(Path(target).glob("aitrados_demo_cross-0.1.0.dist-info")), "pip did not install into the fresh venv"
    return py, project


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH",) and not k.startswith("AITRADOS_")}


@pytest.mark.timeout(240)
def test_installed_plugin_is_listed_by_aitrados_plugins(venv) -> None:
    py, _ = venv
    out = subprocess.run([str(py), "-m", "aitrados.plugin_cli", "plugins", "--json"], capture_output=True, text=True,
                         timeout=60, env=clean_env(), cwd="/")
    assert out.returncode == 0, out.stderr
    by = {p["name"]: p for p in json.loads(out.stdout)["plugins"]}
    demo = by["demo_cross"]
    assert (demo["distribution"], demo["version"], demo["status"]) == ("aitrados-demo-cross", "0.1.0", "loaded")
    assert demo["hooks"] == ["on_bar", "on_news", "on_shutdown", "on_startup", "register_settings"]
    # the host's own interpreter does not see it: the plugin lives in the fresh venv only
    here = subprocess.run([sys.executable, "-m", "aitrados.plugin_cli", "plugins", "--json"], capture_output=True,
                          text=True, timeout=60, env=clean_env(), cwd="/")
    assert "demo_cross" not in {p["name"] for p in json.loads(here.stdout)["plugins"]}


@pytest.mark.timeout(240)
def test_installed_plugin_runs_in_the_host_and_receives_events(venv) -> None:
    """The rendered plugin's own tests: the host loads it by entry point and it trades on published bars."""
    py, project = venv
    out = subprocess.run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=project,
                         capture_output=True, text=True, timeout=200, env=clean_env())
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "3 passed" in out.stdout


def _run_supports_plugins(py: Path) -> bool:
    out = subprocess.run([str(py), "-m", "aitrados", "run", "--help"], capture_output=True, text=True, timeout=60,
                         env=clean_env(), cwd="/")
    return "--plugins" in out.stdout


@pytest.mark.timeout(120)
def test_aitrados_run_plugins_loads_the_installed_plugin(venv, ipc_dir) -> None:
    """`aitrados run --plugins demo_cross` in the fresh venv: the plugin loads and trades on published bars."""
    import datetime as dt
    import signal
    import time

    from aitrados.bus import RPCClient, Publisher, Subscriber
    from aitrados.bus.addresses import endpoints_for
    from aitrados.marketdata.models import Bar
    from aitrados.settings import load_settings

    py, _ = venv
    assert _run_supports_plugins(py), "`aitrados run --plugins` must exist"
    name = f"tplrun{os.getpid()}"
    env = {**clean_env(), "AITRADOS_BUS__NAME": name, "AITRADOS_BUS__IPC_DIR": ipc_dir,
           "AITRADOS_BUS__RPC_FRONTEND_PORT": "0", "AITRADOS_BUS__RPC_BACKEND_PORT": "0",
           "AITRADOS_BUS__SUB_PORT": "0", "AITRADOS_BUS__PUB_PORT": "0",
           "AITRADOS_PLUGINS__DEMO_CROSS__FAST": "2", "AITRADOS_PLUGINS__DEMO_CROSS__SLOW": "3",
           "AITRADOS_PLUGINS__DEMO_CROSS__FULL_SYMBOL": "CRYPTO:GLOBAL:TPLCOIN",
           "AITRADOS_PLUGINS__DEMO_CROSS__INTERVAL": "1M"}
    proc = subprocess.Popen([str(py), "-m", "aitrados", "run", "--plugins", "demo_cross", "--serve"], env=env, cwd="/",
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ep = endpoints_for(load_settings(bus={"name": name, "ipc_dir": ipc_dir}).bus, "ipc")
    try:
        with RPCClient(ep.rpc_frontend, timeout=2) as c:
            deadline = time.monotonic() + 60
            while True:  # ready once the plugin host serves its status and has subscribed to bars
                try:
                    st = c.call("plugins", "status")
                    subs = c.call("middleware", "stats")["pubsub"].get("subscriptions", {})
                    if any(k.startswith("ohlc.") for k in subs):
                        break
                except Exception:
                    pass
                assert proc.poll() is None and time.monotonic() < deadline, "aitrados run did not start"
                time.sleep(0.2)
        assert {p["name"]: p["status"] for p in st["plugins"]}["demo_cross"] == "loaded"
        t0 = dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc)
        m = dt.timedelta(minutes=1)
        with Subscriber(ep.subscribe, ["intent.demo_cross"]) as sub, Publisher(ep.publish) as pub:
            time.sleep(0.5)  # let the new publisher learn the subscriptions
            for i, c_ in enumerate([10, 9, 8, 9, 11, 12, 9, 7]):
                pub.publish("ohlc.CRYPTO:GLOBAL:TPLCOIN.1M",
                            Bar("CRYPTO:GLOBAL:TPLCOIN", "1M", t0 + i * m, t0 + (i + 1) * m, c_, c_, c_, c_, 1.0))
            got = [sub.recv(timeout=10), sub.recv(timeout=10)]
        assert [(g.data["side"], g.data["price"]) for g in got if g] == [("buy", 11.0), ("sell", 9.0)]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
