"""aitrados.log: where log lines go."""

from __future__ import annotations

import subprocess
import textwrap

import pytest

from conftest import PYTHON, clean_environ

pytestmark = pytest.mark.timeout(60)


def test_log_lines_go_to_the_stderr_of_the_moment_not_a_closed_one() -> None:
    """After ``sys.stderr`` is swapped and the old stream closed (what pytest does between tests,
    or an undone redirect), a line logged from another thread goes to the new stream instead of
    failing with "I/O operation on closed file" as a loguru logging error."""
    code = textwrap.dedent("""
        import io, sys, threading
        from loguru import logger
        from aitrados.log import setup_logging
        real, first, second = sys.stderr, io.StringIO(), io.StringIO()
        sys.stderr = first
        setup_logging("INFO")
        logger.info("line one")
        sys.stderr = second
        first.close()
        t = threading.Thread(target=lambda: logger.info("line two"))
        t.start(); t.join()
        sys.stderr = real
        print(repr(second.getvalue()))
    """)
    p = subprocess.run([PYTHON, "-c", code], capture_output=True, text=True, timeout=50, env=clean_environ())
    assert p.returncode == 0, p.stderr
    assert "line two" in p.stdout and "line one" not in p.stdout
    for out in (p.stdout, p.stderr):  # loguru reports a failing sink on the sys.stderr of the moment
        assert "Logging error" not in out and "closed file" not in out, out
