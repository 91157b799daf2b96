"""How a Policy reads its limits (and a retry budget) from a settings source."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from bounceback.core._backoff import Backoff
from bounceback.core._budget import RetryBudget
from bounceback.core._limiter import ConcurrencyLimiter
from bounceback.core._rate import RateLimiter
from bounceback.core._retry import BudgetPort
from bounceback.core._settings_layers import DEFAULTS
from bounceback.core._throttle import AdaptiveThrottle
from bounceback.core._time import SYSTEM_CLOCK, Clock

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
    """The operation's retry budget when ``budget.enabled`` is on (the default), read once at creation.

    Without a settings source, the built-in defaults: one budget per operation in this process, shared by
    every policy of that operation. With one, its ``budget.*`` values; and when the source offers a shared
    ledger (``settings.budget_ledger()``: the home database, or Redis, per ``store.backend``), the budget is
    counted there, so every process of the machine or the fleet spends from one pool per operation.
    """
    values = DEFAULTS if settings is None else {**DEFAULTS, **settings.effective(operation)}
    if not values["budget.enabled"]:
        return None
    ledger_for = getattr(settings, "budget_ledger", None)
    ledger = ledger_for() if callable(ledger_for) else None
    name = operation or "anonymous"
    rule = (values["budget.ratio"], values["budget.min_per_second"], values["budget.window"])
    return _shared(
        clock,
        ("budget", name, rule, ledger),
        lambda: RetryBudget(
            rule[0], min_per_second=rule[1], window=rule[2], name=name, clock=clock, ledger=ledger
        ),
    )


def _throttle_from_settings(
    settings: Any, operation: str | None, clock: Clock | None
) -> AdaptiveThrottle | None:
    """The operation's adaptive throttle when ``throttle.enabled`` is on (off by default), read at creation."""
    values = DEFAULTS if settings is None else {**DEFAULTS, **settings.effective(operation)}
    if not values["throttle.enabled"]:
        return None
    name = operation or "anonymous"
    k, window = values["throttle.k"], values["throttle.window"]
    return _shared(
        clock,
        ("throttle", name, k, window),
        lambda: AdaptiveThrottle(k, window=window, name=name, clock=clock),
    )


def _limiter_from_settings(
    settings: Any, operation: str | None, clock: Clock | None
) -> ConcurrencyLimiter | None:
    """The operation's concurrency limiter when ``concurrency.max_in_flight`` is above 0, read at creation;
    shared by the policies of the operation in this process (one set of slots per operation)."""
    values = DEFAULTS if settings is None else {**DEFAULTS, **settings.effective(operation)}
    if not values["concurrency.max_in_flight"]:
        return None
    name = operation or "anonymous"
    rule = (
        values["concurrency.max_in_flight"],
        values["concurrency.max_waiting"],
        values["concurrency.queue_timeout"],
    )
    return _shared(
        clock,
        ("limiter", name, rule),
        lambda: ConcurrencyLimiter(
            rule[0], max_waiting=rule[1], queue_timeout=rule[2], name=name, clock=clock
        ),
    )


def _rate_limit_from_settings(
    settings: Any, operation: str | None, clock: Clock | None
) -> RateLimiter | None:
    """The operation's rate limiter when ``rate_limit.rate`` is above 0, read at creation; one token bucket
    per operation in this process, shared by its policies."""
    values = DEFAULTS if settings is None else {**DEFAULTS, **settings.effective(operation)}
    if not values["rate_limit.rate"]:
        return None
    name = operation or "anonymous"
    rule = (values["rate_limit.rate"], values["rate_limit.burst"] or None, values["rate_limit.max_wait"])
    return _shared(
        clock,
        ("rate_limit", name, rule),
        lambda: RateLimiter(rule[0], burst=rule[1], max_wait=rule[2], name=name, clock=clock),
    )


# Budgets, throttles and limiters by clock, then by operation and limits: the policies of one operation in a process
# share one. Other clocks than the system's (a test's FakeClock) are held weakly: their pools go with them.
_T = TypeVar("_T")
_system_pool: dict[tuple[Any, ...], Any] = {}
_pools: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


def _shared(clock: Clock | None, key: tuple[Any, ...], make: Callable[[], _T]) -> _T:
    with _pools_lock:
        if clock is None or clock is SYSTEM_CLOCK:
            pool: dict[tuple[Any, ...], Any] | None = _system_pool
        else:
            try:
                pool = _pools.setdefault(clock, {})
            except TypeError:  # a clock that cannot be weakly referenced: each policy gets its own
                pool = None
        if pool is None:
            return make()
        found = pool.get(key)
        if found is None:
            found = pool[key] = make()
        return cast(_T, found)
