"""The outcome of a ``check_order`` hook, and how a hook's return value becomes one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class OrderCheck:
    """The outcome of ``check_order``: accepted or not, why, and which plugin decided."""

    accepted: bool
    reason: str = ""
    plugin: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for the bus)."""
        return {"accepted": self.accepted, "reason": self.reason, "plugin": self.plugin}


def decision_of(plugin: str, result: Any) -> OrderCheck | None:
    """Turn one ``check_order`` result into a decision (None = no opinion)."""
    if result is None:
        return None
    if isinstance(result, OrderCheck):
        return result
    if result is True:
        return OrderCheck(True, "", plugin)
    if result is False:
        return OrderCheck(False, f"rejected by plugin {plugin!r}", plugin)
    if isinstance(result, str):
        return OrderCheck(False, result, plugin)
    if isinstance(result, dict) and "accepted" in result:
        return OrderCheck(bool(result["accepted"]), str(result.get("reason", "")), result.get("plugin") or plugin)
    return OrderCheck(False, f"plugin {plugin!r} returned {type(result).__name__} from check_order; "
                             "expected None, True, False or a reason string", plugin)


__all__ = ["OrderCheck", "decision_of"]
