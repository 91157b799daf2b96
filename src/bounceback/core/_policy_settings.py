"""How a Policy reads its limits (and a retry budget) from a settings source."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bounceback.core._backoff import Backoff
from bounceback.core._retry import BudgetPort
from bounceback.core._time import Clock

__all__: list[str] = []

_SETTING_KEYS = {
    "retry.max_attempts": "attempts",
    "retry.deadline": "deadline",
    "retry.attempt_timeout": "attempt_timeout",
    "retry.max_retry_after": "max_retry_after",
}


def _from_settings(settings: Any, operation: str | None) -> Mapping[str, Any]:
    if settings is None:
        return {}
    values = settings.effective(operation)
    out: dict[str, Any] = {arg: values[key] for key, arg in _SETTING_KEYS.items() if key in values}
    if "retry.initial_delay" in values:
        out["backoff"] = Backoff(
            values.get("retry.backoff", "exponential"),
            initial=values["retry.initial_delay"],
            max_delay=values.get("retry.max_delay", 30.0),
            multiplier=values.get("retry.multiplier", 2.0),
            jitter=values.get("retry.jitter", "full"),
        )
    return out


def _budget_from_settings(settings: Any, operation: str | None, clock: Clock | None) -> BudgetPort | None:
    """A local retry budget when ``budget.enabled`` is on for the operation (read once, at creation)."""
    values = settings.effective(operation)
    if not values.get("budget.enabled", False):
        return None
    from bounceback.core._budget import RetryBudget

    return RetryBudget(
        values.get("budget.ratio", 0.2),
        min_per_second=values.get("budget.min_per_second", 10.0),
        window=values.get("budget.window", 10.0),
        name=operation or "retry-budget",
        clock=clock,
    )
