"""``aitrados config --toml``: the effective settings as TOML to paste into ``aitrados.toml``,
optionally with where each value came from (command line, environment, ``.env``, the TOML
file, or the default)."""

from __future__ import annotations

from typing import Any

import tomlkit
from pydantic_settings import DotEnvSettingsSource, EnvSettingsSource

from .settings import Settings, StrictTomlSource, config_path


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    else:
        out[prefix[:-1]] = d
    return out


def origins(command_line: dict[str, Any] | None = None) -> dict[str, str]:
    """Dotted setting key -> where its value came from, for every key a source sets
    (keys no source sets come from their defaults)."""
    layers = [("command line", command_line or {}),
              ("environment", EnvSettingsSource(Settings)()),
              (".env", DotEnvSettingsSource(Settings)()),
              (config_path(), StrictTomlSource(Settings, toml_file=config_path())())]
    out: dict[str, str] = {}
    for name, data in reversed(layers):  # highest priority last: it wins
        for key in _flatten(data):
            out[key] = name
    return out


def _origin_of(key: str, where: dict[str, str]) -> str:
    """The origin of *key*, or of the nearest table above it that a source set as a whole."""
    parts = key.split(".")
    for i in range(len(parts), 0, -1):
        hit = where.get(".".join(parts[:i]))
        if hit:
            return hit
    return "default"


def settings_toml(settings: Settings, show_origin: bool = False,
                  command_line: dict[str, Any] | None = None) -> str:
    """*settings* (secrets masked) as TOML; unset values appear as comments. With *show_origin*
    every value carries a ``# from ...`` comment."""
    data = settings.masked()
    where = origins(command_line) if show_origin else {}
    doc = tomlkit.document()

    def fill(table: Any, values: dict[str, Any], prefix: str) -> None:
        scalars = {k: v for k, v in values.items() if not isinstance(v, dict)}
        tables = {k: v for k, v in values.items() if isinstance(v, dict)}
        for k, v in scalars.items():
            key = prefix + k
            if v is None:
                table.add(tomlkit.comment(f"{k} = (unset)"))
                continue
            item = tomlkit.item(v)
            if show_origin:
                item.comment(f"from {_origin_of(key, where)}")
            table.add(k, item)
        for k, v in tables.items():
            sub = tomlkit.table()
            fill(sub, v, prefix + k + ".")
            table.add(k, sub)

    fill(doc, data, "")
    return tomlkit.dumps(doc)
