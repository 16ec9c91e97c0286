"""Every hook is documented (docstring and docs/plugins.md) and named by a test."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from aitrados.pluginhost import hookspecs
from aitrados.pluginhost.registry import all_hook_names

ROOT = Path(__file__).resolve().parent.parent
DOC = (ROOT / "docs" / "plugins.md").read_text()
HOOKS = all_hook_names()


def test_the_hook_set_covers_every_concern() -> None:
    assert {"on_startup", "on_shutdown", "register_services", "register_commands", "register_providers", "on_bar",
            "on_chart", "on_mtf", "on_news", "on_calendar_event", "check_order", "register_risk_rules", "on_order",
            "on_fill", "on_position", "register_llm_models"} <= set(HOOKS)
    for name in HOOKS:
        assert re.match(r"^(register|on|check)_[a-z_]+$", name), f"{name}: use the verbs register_, on_, check_"
        spec = getattr(hookspecs, name).aitrados_spec
        assert spec["firstresult"] == name.startswith("check_"), name


@pytest.mark.parametrize("name", HOOKS)
def test_hook_docstring_names_every_argument_and_the_return(name: str) -> None:
    fn = getattr(hookspecs, name)
    doc = inspect.getdoc(fn) or ""
    assert doc.splitlines()[0].endswith("."), f"{name}: start with a one-line summary"
    for arg in inspect.signature(fn).parameters:
        assert f":param {arg}:" in doc, f"{name}: document argument {arg!r}"
    assert ":returns:" in doc, f"{name}: document the return"
    if fn.aitrados_spec["firstresult"]:
        assert "Stops at first non-None result." in doc


@pytest.mark.parametrize("name", HOOKS)
def test_hook_is_in_docs_with_its_signature_and_an_example(name: str) -> None:
    sig = ", ".join(inspect.signature(getattr(hookspecs, name)).parameters)
    heading = f"#### `{name}({sig})`"
    assert heading in DOC, f"docs/plugins.md lacks the heading {heading}"
    section = DOC.split(heading, 1)[1].split("\n#", 1)[0]
    assert "```python" in section and "@hookimpl" in section and f"def {name}(" in section, \
        f"docs/plugins.md: the {name} section needs an example implementation"


def test_every_hook_has_a_test() -> None:
    me = Path(__file__).name
    text = "\n".join(p.read_text() for p in sorted(Path(__file__).parent.glob("test_plugins_*.py")) if p.name != me)
    untested = [h for h in HOOKS if not re.search(rf"(?<![A-Za-z0-9]){h}(?![A-Za-z0-9])", text)]
    assert not untested, f"hooks without a test in tests/test_plugins_*.py: {untested}"


def test_docs_name_the_entry_point_group() -> None:
    assert "Entry-point group: `aitrados`" in DOC and "[project.entry-points.aitrados]" in DOC
