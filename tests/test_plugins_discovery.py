"""Discovery through real entry points: broken plugins are reported and the rest run; strict mode; selection; settings."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from fixtures.plugin_env import install

from aitrados.pluginhost.settings import PluginHostSettings
from aitrados.pluginhost.errors import PluginLoadError, UnknownPluginError
from aitrados.pluginhost.registry import ENTRY_POINT_GROUP, PluginRegistry, resolve_selection
from aitrados.settings import load_settings

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def installed(tmp_path, monkeypatch):
    return install(tmp_path, monkeypatch)


def registry(plugins: dict | None = None, **host) -> PluginRegistry:
    # the two sections the registry reads (Settings gains `plugin_host` when the lead wires it)
    return PluginRegistry(SimpleNamespace(plugins=plugins or {}, plugin_host=PluginHostSettings(**host)))


def test_entry_point_group_name_and_distribution_metadata(installed) -> None:
    assert ENTRY_POINT_GROUP == "aitrados"
    reg = registry()
    info = reg.infos["recorder"]
    assert (info.dist, info.version, info.value) == ("aitrados-testplugins", "0.1.0", "aitrados_testplugins.recorder")


@pytest.mark.parametrize("name,reason", [
    ("import_error", "import of 'aitrados_testplugins.import_error' failed: ModuleNotFoundError"),
    ("bad_signature", "bad hook signature"),
    ("unknown_hook", "unknown hook 'on_barr' (did you mean 'on_bar'?)"),
    ("duplicate_service", "service 'greeter' is already registered by plugin 'configured'"),
    ("lax_settings", "must set model_config = ConfigDict(extra='forbid')"),
])
def test_a_broken_plugin_is_reported_with_its_reason_and_the_rest_load(installed, name, reason) -> None:
    reg = registry()
    infos = {i.name: i for i in reg.load(["configured", name, "recorder"])}
    assert infos[name].status == "failed" and reason in (infos[name].reason or "")
    assert infos["configured"].status == "loaded" and infos["recorder"].status == "loaded"
    assert reg.loaded() == ["configured", "recorder"]
    # a failed plugin leaves no hooks and no contributions behind
    assert all(impl.plugin_name != name for h in ("on_bar", "register_services")
               for impl in getattr(reg.pm.hook, h).get_hookimpls())
    assert set(reg.services) == {"greeter"}


def test_strict_mode_makes_a_failure_fatal(installed) -> None:
    with pytest.raises(PluginLoadError, match="plugin 'unknown_hook' failed to load: "):
        registry(strict=True).load(["recorder", "unknown_hook"])
    with pytest.raises(PluginLoadError, match="import_error"):
        PluginRegistry(load_settings(), strict=True).load(["import_error"])


def test_selection_unknown_name_lists_the_installed_ones(installed) -> None:
    reg = registry()
    with pytest.raises(UnknownPluginError) as e:
        reg.select(["recorder", "nope"])
    msg = str(e.value)
    assert msg.startswith("unknown plugin(s): nope; installed: ") and "recorder" in msg and "crasher" in msg


def test_selection_default_always_and_explicit() -> None:
    inst = ["a", "b", "c"]
    assert resolve_selection(inst, None, PluginHostSettings()) == []  # default: none (the middleware alone)
    assert resolve_selection(inst, None, PluginHostSettings(default=None)) == ["a", "b", "c"]
    assert resolve_selection(inst, None, PluginHostSettings(default=["b"])) == ["b"]
    assert resolve_selection(inst, ["c", "c"], PluginHostSettings(always=["a"])) == ["a", "c"]
    with pytest.raises(UnknownPluginError, match="unknown plugin\\(s\\): z; installed: a, b, c"):
        resolve_selection(inst, None, PluginHostSettings(default=["z"]))


def test_plugin_settings_are_validated_naming_plugin_and_field(installed) -> None:
    reg = registry({"configured": {"threshold": "many", "colour": "red"}})
    info = reg.load(["configured"])[0]
    assert info.status == "failed"
    assert "invalid settings for plugin 'configured'" in info.reason
    assert "field 'threshold'" in info.reason and "field 'colour': Extra inputs are not permitted" in info.reason
    ok = registry({"configured": {"threshold": 4}})
    ok.load(["configured"])
    assert ok.plugin_settings["configured"].model_dump() == {"threshold": 4, "label": "x"}
    # settings for a plugin without a model are an error too
    bad = registry({"recorder": {"x": 1}})
    assert "takes no settings but plugins.recorder sets x" in bad.load(["recorder"])[0].reason


def test_plugin_settings_come_from_the_environment(installed, monkeypatch) -> None:
    monkeypatch.setenv("AITRADOS_PLUGINS__CONFIGURED__THRESHOLD", "11")
    reg = PluginRegistry(load_settings())
    reg.load(["configured"])
    assert reg.plugin_settings["configured"].threshold == 11


def test_a_module_attribute_spec_loads_without_a_distribution(installed) -> None:
    reg = registry()
    name = "aitrados_testplugins.broken:UnknownHook"
    assert reg.select([name]) == [name]
    assert "unknown hook" in reg.load([name])[0].reason


def test_aitrados_plugins_lists_installed_plugins_as_json(installed) -> None:
    out = subprocess.run([sys.executable, "-m", "aitrados.pluginhost.cli", "plugins", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["group"] == "aitrados"
    by = {p["name"]: p for p in data["plugins"]}
    assert by["recorder"]["status"] == "loaded" and by["recorder"]["distribution"] == "aitrados-testplugins"
    assert by["recorder"]["version"] == "0.1.0" and "on_news" in by["recorder"]["hooks"]
    assert by["import_error"]["status"] == "failed" and "aitrados_no_such_module" in by["import_error"]["reason"]
    text = subprocess.run([sys.executable, "-m", "aitrados.pluginhost.cli", "plugins"], capture_output=True,
                          text=True, timeout=60).stdout
    assert "recorder  [aitrados-testplugins 0.1.0]  loaded" in text
    assert "unknown_hook  [aitrados-testplugins 0.1.0]  FAILED: unknown hook 'on_barr'" in text


def test_plugin_commands_appear_on_the_command_line(installed) -> None:
    out = subprocess.run([sys.executable, "-m", "aitrados.pluginhost.cli", "double", "21"],
                         capture_output=True, text=True, timeout=60)
    assert (out.returncode, out.stdout.strip()) == (0, "42"), out.stderr


def test_run_flags_build_the_host(installed) -> None:
    import argparse

    from aitrados.pluginhost.cli import add_run_arguments, host_from_args

    p = argparse.ArgumentParser()
    add_run_arguments(p)
    args = p.parse_args(["--plugins", "recorder, risk", "--isolate", "crasher", "--isolate", "risk", "--strict"])
    h = host_from_args(args, load_settings())
    assert h.selected == ["recorder", "risk", "crasher"] and sorted(h.isolated) == ["crasher", "risk"] and h.strict
    with pytest.raises(UnknownPluginError, match="unknown plugin\\(s\\): nope"):
        host_from_args(p.parse_args(["--plugins", "nope"]), load_settings())
    with pytest.raises(Exception, match="--isolate nope: not installed"):
        host_from_args(p.parse_args(["--plugins", "recorder", "--isolate", "nope"]), load_settings())
