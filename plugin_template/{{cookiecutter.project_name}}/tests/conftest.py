"""The plugin's tests read none of the caller's settings: every ``AITRADOS_*`` variable is removed around each test."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def _no_aitrados_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """Drop ``AITRADOS_*`` variables so an exported setting cannot change what a test sees."""
    for key in [k for k in os.environ if k.startswith("AITRADOS_")]:
        monkeypatch.delenv(key)
