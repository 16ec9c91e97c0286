"""The plugin template and the wheel: the template renders a complete strategy plugin, and the
built wheel, installed into a fresh venv, makes one with `aitrados new-plugin`, pip-installs it
and runs it to a report with `aitrados run --plugins NAME`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

from aitrados.pluginhost.cli import render_plugin, template_context, template_dir

from conftest import AITRADOS, ROOT, bus_settings, clean_environ, cli_env

PLUGIN = "my_breakout"
PACKAGE = "aitrados_my_breakout"

EXPECTED = {
    "README.md",
    "pyproject.toml",
    "aitrados_demo_cross/__init__.py",
    "aitrados_demo_cross/channel.py",
    "aitrados_demo_cross/strategy.py",
    "aitrados_demo_cross/plugin.py",
    "tests/conftest.py",
    "tests/test_plugin.py",
}


def files(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts}


def test_template_file_set_and_rendering(tmp_path) -> None:
    assert template_dir() == ROOT / "plugin_template"
    keys = json.loads((template_dir() / "cookiecutter.json").read_text())
    # every prompt has a flag of `aitrados new-plugin` (non-interactive)
    from aitrados.pluginhost.cli import _TEMPLATE_FLAGS

    assert set(keys) == {"plugin_name"} | {k for k, _, _ in _TEMPLATE_FLAGS}
    # the template's defaults and the command's agree, and trade a bundled symbol
    assert (keys["full_symbol"], keys["interval"]) == ("STOCK:US:SPX", "DAY")
    assert {k: template_context("x")[k] for k in ("full_symbol", "interval")} == {"full_symbol": "STOCK:US:SPX",
                                                                                   "interval": "DAY"}
    out = render_plugin("demo_cross", tmp_path, author="Ada", full_symbol="CRYPTO:GLOBAL:BTCUSD", interval="60M")
    assert out == tmp_path / "aitrados-demo-cross"
    assert files(out) == EXPECTED
    for f in EXPECTED:
        text = (out / f).read_text()
        assert "{{" not in text and "cookiecutter" not in text, f
    pyproject = (out / "pyproject.toml").read_text()
    assert '[project.entry-points.aitrados]\ndemo_cross = "aitrados_demo_cross.plugin"' in pyproject
    assert 'name = "Ada"' in pyproject
    strategy = (out / "aitrados_demo_cross/strategy.py").read_text()
    assert 'Field("CRYPTO:GLOBAL:BTCUSD"' in strategy and 'Field("60M"' in strategy
    plugin = (out / "aitrados_demo_cross/plugin.py").read_text()
    assert "def register_strategies" in plugin and "intent." not in plugin  # a strategy, not unread intents
    with pytest.raises(FileExistsError, match="--force"):
        render_plugin("demo_cross", tmp_path)


def test_new_plugin_rejects_bad_names() -> None:
    with pytest.raises(ValueError, match="lower-case letters"):
        template_context("My-Plugin")
    with pytest.raises(ValueError, match="not a valid Python module name"):
        template_context("ok", package_name="bad-name")


def test_new_plugin_command(tmp_path) -> None:
    out = subprocess.run([*AITRADOS, "new-plugin", "demo_cross", "-o", str(tmp_path),
                          "--description", "Demo", "--email", "a@b.c"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert f"created {tmp_path / 'aitrados-demo-cross'}" in out.stdout
    assert 'description = "Demo"' in (tmp_path / "aitrados-demo-cross/pyproject.toml").read_text()


def test_new_plugin_without_cookiecutter_names_the_extra(tmp_path) -> None:
    """cookiecutter is an extra: without it, `new-plugin` fails with the install command, and writes nothing."""
    code = ("import sys; sys.modules['cookiecutter'] = None; from aitrados.cli import main; "
            f"sys.exit(main(['new-plugin', 'demo_cross', '-o', {str(tmp_path)!r}]))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "pip install 'aitrados[template]'" in r.stderr
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------- the wheel in a fresh venv


def _ignore(folder: str, names: list[str]) -> set[str]:
    """What a wheel build must not see from a working copy (venvs, build output, caches)."""
    return {n for n in names if n in {".git", ".venv", "build", "dist", "__pycache__", ".pytest_cache"}
            or n.endswith(".egg-info")}


def run(cmd: list[str], timeout: float = 180, **kw) -> subprocess.CompletedProcess[str]:
    """Run *cmd*; fail the test with its output when it exits non-zero."""
    kw.setdefault("env", clean_environ(drop_pythonpath=True))
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert r.returncode == 0, f"{cmd} exited {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The aitrados wheel, built from a copy of this checkout (so no build output lands in it)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    shutil.copytree(ROOT, src, ignore=_ignore)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
         "-w", str(base / "dist"), str(src)], timeout=300)
    [whl] = (base / "dist").glob("aitrados-*.whl")
    return whl


@pytest.fixture(scope="module")
def fresh(wheel, tmp_path_factory) -> Path:
    """A fresh venv with the wheel installed (not editable), then `aitrados new-plugin` + `pip install` of a plugin.

    The venv's third-party dependencies (pyzmq, pandas, cookiecutter, ...) come from this test
    run's own environment through a plain path line in a .pth file: the path is added without
    running that environment's .pth files, so this checkout's editable `aitrados` stays
    invisible and every `aitrados` import and entry point in the venv is the wheel's. Nothing
    is downloaded.
    """
    base = tmp_path_factory.mktemp("fresh")
    env_dir = base / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(env_dir)], timeout=120)
    py = env_dir / "bin" / "python"
    purelib = run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip()
    Path(purelib, "zz_host_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], timeout=300)
    return env_dir


def test_wheel_carries_the_template_and_a_small_runtime(wheel) -> None:
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = Parser().parsestr(z.read("aitrados-0.1.0.dist-info/METADATA").decode())
    assert "aitrados/plugin_template/cookiecutter.json" in names
    # the bus's C extension is compiled into the wheel (setup.py; this machine has gcc)
    assert any(n.startswith("aitrados/bus/_fastzmq.") and n.endswith(".so") for n in names), sorted(names)[:20]
    assert any(n.endswith("{{cookiecutter.package_name}}/strategy.py") for n in names)
    requires = meta.get_all("Requires-Dist")
    runtime = {r.split(";")[0].split(">")[0].split("=")[0].strip() for r in requires if "extra ==" not in r}
    assert "cookiecutter" not in runtime and "ta" not in runtime
    assert {"pyzmq", "pandas", "pydantic"} <= runtime
    assert any(r.startswith("cookiecutter") and "extra == \"template\"" in r for r in requires), requires
    assert {"template", "test", "bench"} <= set(meta.get_all("Provides-Extra"))


@pytest.mark.timeout(600)
def test_wheel_new_plugin_pip_install_and_run_to_a_report(fresh, tmp_path, ipc_dir) -> None:
    """In the fresh venv: new-plugin from the wheel's template, pip install (not editable), its own
    tests, `aitrados plugins`, then `aitrados run --plugins my_breakout` to a report that equals
    an in-process backtest of the same strategy."""
    py, aitrados = fresh / "bin" / "python", fresh / "bin" / "aitrados"
    where = run([str(py), "-c", "import aitrados, sys; print(aitrados.__file__)"], cwd="/").stdout.strip()
    assert where.startswith(str(fresh)), f"the venv imports aitrados from {where}, not from the wheel"

    made = run([str(aitrados), "new-plugin", PLUGIN, "-o", str(tmp_path)], cwd=tmp_path, timeout=120)
    project = tmp_path / f"aitrados-{PLUGIN.replace('_', '-')}"
    assert f"created {project}" in made.stdout and (project / "pyproject.toml").is_file()
    run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", str(project)],
        timeout=300)

    listed = run([str(aitrados), "plugins", "--json"], cwd="/").stdout
    row = {p["name"]: p for p in json.loads(listed)["plugins"]}[PLUGIN]
    assert (row["distribution"], row["status"], row["strategies"]) == (f"aitrados-{PLUGIN.replace('_', '-')}",
                                                                        "loaded", [PLUGIN])
    assert row["hooks"] == ["register_settings", "register_strategies"]

    # the rendered plugin's own tests pass against the installed plugin (a backtest checked against pandas)
    own = run([str(py), "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], cwd=project, timeout=300)
    assert "4 passed" in own.stdout, own.stdout[-2000:]

    # the run: a finite daily backtest of the bundled S&P 500, then the report
    report = tmp_path / "report"
    env = cli_env(bus_settings(ipc_dir))
    env.pop("PYTHONPATH", None)
    r = run([str(aitrados), "run", "--plugins", PLUGIN, "--report-dir", str(report)], cwd=tmp_path, env=env,
            timeout=400)
    assert "total return" in r.stdout and str(report) in r.stdout
    latest = report / "latest"  # one folder per run; `latest` points at the newest
    metrics = json.loads((latest / "metrics.json").read_text())
    assert (latest / "equity.png").read_bytes()[:4] == b"\x89PNG"
    assert len((latest / "trades.csv").read_text().splitlines()) == metrics["trades"] + 1 > 5
    # the same strategy over the same bars in-process (engine only, no bus): the same result
    code = (f"import json; from {PACKAGE}.strategy import Breakout; "
            "from aitrados.marketdata.loader import bundled_bar_files, load_bars; "
            "from aitrados.trading import build_report; "
            "from aitrados.trading.engine import engine_from_settings; "
            "e = engine_from_settings([Breakout()]); "
            "e.run(load_bars(bundled_bar_files()[('STOCK:US:SPX', 'DAY')]).bars); "
            "m = build_report(e.broker, 'DAY').metrics; print(json.dumps([m.final_equity, m.trades]))")
    equity, trades = json.loads(run([str(py), "-c", code], cwd="/").stdout)
    assert (metrics["final_equity"], metrics["trades"]) == (pytest.approx(equity), trades)
