"""The ``aitrados`` command's process: ``console_main`` returns ``main``'s code and freezes the collector
(after the imports and settings, and at the end, so the exit skips its full collections); an
in-process ``main`` leaves the collector alone."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest

from aitrados import cli

pytestmark = pytest.mark.timeout(120)

_PROBE = """
import gc, sys
from aitrados.cli import console_main
sys.argv = ["aitrados", *sys.argv[1:]]
import aitrados.cli as cli
seen = []
real_config = cli.cmd_config
cli.cmd_config = lambda *a: (seen.append(gc.get_freeze_count()), real_config(*a))[1]
before = gc.get_freeze_count()
code = console_main()
before = f"{before},{seen[0] if seen else 0}"
print("probe", code, before, gc.get_freeze_count(), file=sys.stderr)
sys.exit(code)
"""


def probe(*args: str) -> tuple[int, list[str], str]:
    """Exit code, the probe's ``[code, frozen before, frozen after]`` and stderr of ``console_main`` on *args*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AITRADOS_")}
    r = subprocess.run([sys.executable, "-c", _PROBE, *args], capture_output=True, text=True, timeout=90, env=env)
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("probe "))
    return r.returncode, line.split()[1:], r.stderr


@pytest.mark.parametrize("args, code", [(["config"], 0), (["config", "--set", "log_level=LOUD"], 2)])
def test_console_main_returns_mains_code_and_freezes_the_collector(args: list[str], code: int) -> None:
    rc, (returned, before, after), err = probe(*args)
    assert rc == code and int(returned) == code, err
    assert int(after) > 1000, err  # every object of the command is frozen at its end
    at_start, in_command = (int(x) for x in before.split(","))
    assert at_start == 0, err
    if code == 0:  # the command ran with the imports' and settings' objects already frozen
        assert in_command > 1000, err


def test_main_in_process_leaves_the_collector_as_it_was(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in os.environ if k.startswith("AITRADOS_")]:
        monkeypatch.delenv(k)
    before = gc.get_freeze_count()
    assert cli.main(["config"]) == 0
    assert gc.get_freeze_count() == before
    assert '"log_level"' in capsys.readouterr().out
