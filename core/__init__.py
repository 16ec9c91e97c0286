"""aitrados: a plugin-based strategy host and trading middleware.

A plugin needs only ``from aitrados import hookimpl``.
"""

from __future__ import annotations

import pluggy

__version__ = "0.1.0"

#: Marker for plugin hook implementations (pluggy project name ``aitrados``).
hookimpl = pluggy.HookimplMarker("aitrados")

__all__ = ["__version__", "hookimpl"]
