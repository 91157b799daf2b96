"""How a Policy reads its limits from a settings source: the retry limits (live), and the limiter, rate
limit and throttle an operation's settings turn on (at creation)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bounceback.core._pools import shared_instance as _shared
from bounceback.core._time import Clock, to_seconds
from bounceback.core.retry._backoff import Backoff
from bounceback.core.retry._state import RetryConfig
from bounceback.core.settings._layers import DEFAULTS
from bounceback.core.settings._schema import SCHEMA
from bounceback.core.strategies._limiter import ConcurrencyLimiter
from bounceback.core.strategies._rate import RateLimiter
from bounceback.core.strategies._throttle import AdaptiveThrottle
from bounceback.errors import ConfigError

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


_DEFAULT_BACKOFF = Backoff()  # immutable, so every policy without its own shares this one


_LIMITS: dict[tuple[object, ...], RetryConfig] = {}


def read_limits(settings: Any, operation: str | None, explicit: Mapping[str, Any]) -> RetryConfig:
    """The retry limits in force: the built-in defaults < the settings of ``operation`` < ``explicit``
    (the arguments given in code), validated. Raises ConfigError naming the bad field.

    Without a settings source the answer depends on ``explicit`` alone, and a RetryConfig is immutable: the
    policies given the same arguments share one (the types are in the key: ``attempts=True`` is refused).
    """
    if settings is None:
        if not explicit:  # the common case, kept short: the defaults' limits, once made
            built_in = _LIMITS.get(())
            if built_in is not None:
                return built_in
        key = tuple([(k, type(v), v) for k, v in explicit.items()])
        try:
            return _LIMITS[key]
        except TypeError:  # an unhashable argument: not shared
            return _read(None, operation, explicit)
        except KeyError:
            cfg = _read(None, operation, explicit)
            if len(_LIMITS) < 256:
                _LIMITS[key] = cfg
            return cfg
    return _read(settings, operation, explicit)


def _read(settings: Any, operation: str | None, explicit: Mapping[str, Any]) -> RetryConfig:
    values: dict[str, Any] = dict(_from_settings(settings, operation))
    values.update(explicit)
    return RetryConfig(
        attempts=values.get("attempts", SCHEMA["retry.max_attempts"].default),
        deadline=to_seconds(
            values.get("deadline", SCHEMA["retry.deadline"].default),
            "deadline",
            allow_none=True,
            allow_zero=False,
        ),
        attempt_timeout=to_seconds(
            values.get("attempt_timeout"), "attempt_timeout", allow_none=True, allow_zero=False
        ),
        backoff=values.get("backoff") or _DEFAULT_BACKOFF,
        max_retry_after=to_seconds(
            values.get("max_retry_after", SCHEMA["retry.max_retry_after"].default), "max_retry_after"
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
    shared by the policies of the operation in this process (one set of slots per operation), and with
    ``concurrency.shared`` on by every process that shares ``store.backend`` (leases in the store)."""
    values = DEFAULTS if settings is None else {**DEFAULTS, **settings.effective(operation)}
    if not values["concurrency.max_in_flight"]:
        return None
    name = operation or "anonymous"
    store = _shared_store(settings, "concurrency.shared") if values["concurrency.shared"] else None
    rule = (
        values["concurrency.max_in_flight"],
        values["concurrency.max_waiting"],
        values["concurrency.queue_timeout"],
        values["concurrency.lease"],
    )
    return _shared(
        clock,
        ("limiter", name, rule, id(store)),
        lambda: ConcurrencyLimiter(
            rule[0],
            max_waiting=rule[1],
            queue_timeout=rule[2],
            name=name,
            clock=clock,
            shared=store,
            lease=rule[3],
        ),
    )


def _shared_store(settings: Any, key: str) -> Any:
    """The store that shares limits among processes (per ``store.backend``), from the settings source's
    ``shared_limits()`` (``SqliteSettings`` has one); None when the store settings are unusable."""
    source = getattr(settings, "shared_limits", None)
    if source is None:
        raise ConfigError(
            key,
            True,
            "false, or settings from a source that knows the shared store (bounceback.stores.SqliteSettings)",
            hint=f"{type(settings).__name__} cannot share a limit among processes",
        )
    return source()


def _rate_limit_from_settings(
    settings: Any, operation: str | None, clock: Clock | None
) -> RateLimiter | None:
    """The operation's rate limiter when ``rate_limit.rate`` is above 0, read at creation; one token bucket
    per operation in this process, shared by its policies, or one in the store for every process when
    ``rate_limit.shared`` is on."""
    values = DEFAULTS if settings is None else {**DEFAULTS, **settings.effective(operation)}
    if not values["rate_limit.rate"]:
        return None
    name = operation or "anonymous"
    store = _shared_store(settings, "rate_limit.shared") if values["rate_limit.shared"] else None
    rule = (values["rate_limit.rate"], values["rate_limit.burst"] or None, values["rate_limit.max_wait"])
    return _shared(
        clock,
        ("rate_limit", name, rule, id(store)),
        lambda: RateLimiter(rule[0], burst=rule[1], max_wait=rule[2], name=name, clock=clock, shared=store),
    )
