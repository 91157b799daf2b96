"""The limits of a circuit breaker, validated once, and their mapping to the settings keys.

A :class:`BreakerConfig` is immutable: reconfiguring a breaker builds a new one and swaps it in whole,
so a call never sees half of an old configuration and half of a new one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from bounceback.core._time import to_seconds
from bounceback.core.breaker._window import WindowCounts
from bounceback.errors import ConfigError

__all__ = ["BreakerConfig", "SETTINGS_KEYS", "STORE_KEYS", "build_config", "trip_reason"]

SETTINGS_KEYS: dict[str, str] = {
    "breaker.failure_rate": "failure_rate",
    "breaker.slow_call_rate": "slow_call_rate",
    "breaker.slow_call_duration": "slow_call_duration",
    "breaker.window_type": "window_type",
    "breaker.window": "window",
    "breaker.min_calls": "min_calls",
    "breaker.consecutive_failures": "consecutive_failures",
    "breaker.open_seconds": "open_seconds",
    "breaker.open_seconds_max": "open_seconds_max",
    "breaker.open_jitter": "open_jitter",
    "breaker.half_open_calls": "half_open_calls",
    "breaker.max_in_flight": "max_in_flight",
}

STORE_KEYS: dict[str, str] = {"store.on_unavailable": "store_unavailable"}
"""Settings outside ``breaker.*`` that a breaker follows too: what to do while its shared store is away."""
"""Settings key → :class:`BreakerConfig` field."""

_MAX_COUNT = 1_000_000


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """Every limit of a breaker. Build it with :func:`build_config`, which validates.

    Rates are percentages. ``slow_call_rate`` 100 (the default) switches the slow-call rule off: timing
    every call costs a clock read, and "every call in the window is slow" is better caught by timeouts.
    ``consecutive_failures`` and ``max_in_flight`` 0 mean off. ``open_seconds`` grows by
    ``open_multiplier`` with every re-open in a row, up to ``open_seconds_max``; each opening then lasts
    a random part of that, down to ``1 - open_jitter`` of it (see :meth:`open_for`).

    >>> cfg = build_config({"failure_rate": 25, "window": 20, "open_seconds_max": 300})
    >>> cfg.failure_rate, cfg.window, cfg.open_for(reopens=3)
    (25.0, 20, 40.0)
    """

    failure_rate: float = 50.0
    slow_call_rate: float = 100.0
    slow_call_duration: float = 60.0
    window_type: str = "count"
    window: float = 100
    min_calls: int = 10
    consecutive_failures: int = 0
    open_seconds: float = 5.0
    open_seconds_max: float = 15.0
    open_multiplier: float = 2.0
    open_jitter: float = 0.5
    half_open_calls: int = 3
    max_in_flight: int = 0
    half_open: str = "lazy"
    health_check_seconds: float = 5.0
    probe_lease_seconds: float = 60.0
    record_permanent: bool = False
    sync_seconds: float = 1.0
    store_retry_seconds: float = 5.0
    store_unavailable: str = "fail-open"

    @property
    def timed(self) -> bool:
        """True when calls must be timed (the slow-call rule is on)."""
        return self.slow_call_rate < 100.0

    @property
    def min_calls_in_window(self) -> int:
        """``min_calls``, but never more than a count window holds."""
        if self.window_type == "count":
            return min(self.min_calls, int(self.window))
        return self.min_calls

    def open_for(self, reopens: int, draw: float = 0.0, checked: bool = False) -> float:
        """Seconds to stay open when the breaker already opened ``reopens`` times in a row.

        The grown time (``open_seconds * open_multiplier ** reopens``, capped at ``open_seconds_max``) is
        the longest; ``draw`` (uniform in [0, 1), one per opening) takes up to ``open_jitter`` of it away,
        so breakers that opened together probe at different times and the cap stays a hard upper bound.
        A breaker with a health check (``checked``) stays open for the cap: its check, run every
        ``health_check_seconds``, finds the recovery, and the timer is only the backstop.

        >>> cfg = BreakerConfig()
        >>> cfg.open_for(0), cfg.open_for(1), cfg.open_for(5), cfg.open_for(5, draw=0.5)
        (5.0, 10.0, 15.0, 11.25)
        """
        if checked:
            longest = self.open_seconds_max
        else:
            # Cap the exponent first: a long outage must not overflow the float.
            grown = self.open_seconds * self.open_multiplier ** min(max(reopens, 0), 64)
            longest = min(grown, self.open_seconds_max)
        return longest * (1.0 - self.open_jitter * draw)


_FIELDS = {f.name for f in fields(BreakerConfig)}


def _percent(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(name, value, "a percentage from 1 to 100")
    if not 1 <= value <= 100:
        raise ConfigError(
            name, value, "a percentage from 1 to 100", hint="50 opens at half the calls failing"
        )
    return float(value)


def _count(name: str, value: Any, low: int, hint: str | None = None) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= _MAX_COUNT:
        raise ConfigError(name, value, f"a whole number from {low} to {_MAX_COUNT:_}", hint=hint)
    return value


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise ConfigError(name, value, "one of " + ", ".join(repr(a) for a in allowed))
    return str(value)


def build_config(values: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> BreakerConfig:
    """Validate ``values`` (field name → value) into a :class:`BreakerConfig`.

    ``labels`` maps a field to the name to show in errors (a settings key such as ``breaker.window``),
    so an error names what the user actually wrote.

    >>> build_config({"half_open_calls": 0})
    Traceback (most recent call last):
    ...
    bounceback.errors.ConfigError: half_open_calls: got 0; expected a whole number from 1 to 1_000_000
    """
    if not values:
        return _DEFAULT  # immutable: every breaker left at the defaults shares one
    unknown = set(values) - _FIELDS
    if unknown:
        name = sorted(unknown)[0]
        raise ConfigError(name, values[name], "a breaker parameter: " + ", ".join(sorted(_FIELDS)))

    def label(name: str) -> str:
        return (labels or {}).get(name, name)

    base = BreakerConfig()
    v = {f: values.get(f, getattr(base, f)) for f in _FIELDS}
    out: dict[str, Any] = {}
    out["failure_rate"] = _percent(label("failure_rate"), v["failure_rate"])
    out["slow_call_rate"] = _percent(label("slow_call_rate"), v["slow_call_rate"])
    for name in ("slow_call_duration", "open_seconds", "open_seconds_max", "health_check_seconds"):
        out[name] = to_seconds(v[name], label(name), allow_zero=False)
    for name in ("probe_lease_seconds", "sync_seconds", "store_retry_seconds"):
        out[name] = to_seconds(v[name], label(name), allow_zero=False)
    if "open_seconds_max" not in values:
        # Only the default cap: a longer open time given alone raises the cap with it.
        out["open_seconds_max"] = max(out["open_seconds_max"], out["open_seconds"])
    if out["open_seconds_max"] < out["open_seconds"]:
        raise ConfigError(
            label("open_seconds_max"),
            v["open_seconds_max"],
            f"seconds >= open_seconds ({out['open_seconds']:g})",
            hint="the cap on the grown open time cannot be below its start",
        )
    mult = v["open_multiplier"]
    if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not 1 <= mult <= 100:
        raise ConfigError(label("open_multiplier"), mult, "a number from 1 (no growth) to 100")
    out["open_multiplier"] = float(mult)
    jitter = v["open_jitter"]
    if isinstance(jitter, bool) or not isinstance(jitter, (int, float)) or not 0 <= jitter <= 0.95:
        raise ConfigError(
            label("open_jitter"),
            jitter,
            "a fraction from 0 (every opening lasts exactly the open time) to 0.95",
            hint="0.5 spreads each opening over the last half of its open time",
        )
    out["open_jitter"] = float(jitter)
    out["window_type"] = _choice(label("window_type"), v["window_type"], ("count", "time"))
    if out["window_type"] == "count":
        out["window"] = _count(label("window"), v["window"], 1, hint="the number of recent calls judged")
    else:
        seconds = to_seconds(v["window"], label("window"), allow_zero=False)
        if seconds > 86_400 * 7:
            raise ConfigError(label("window"), v["window"], "seconds from 1 ms to 7 days")
        out["window"] = seconds
    out["min_calls"] = _count(label("min_calls"), v["min_calls"], 1)
    out["consecutive_failures"] = _count(
        label("consecutive_failures"), v["consecutive_failures"], 0, hint="0 switches the rule off"
    )
    out["half_open_calls"] = _count(label("half_open_calls"), v["half_open_calls"], 1)
    out["max_in_flight"] = _count(label("max_in_flight"), v["max_in_flight"], 0, hint="0 means no limit")
    out["half_open"] = _choice(label("half_open"), v["half_open"], ("lazy", "timer"))
    out["store_unavailable"] = _choice(
        label("store_unavailable"), v["store_unavailable"], ("fail-open", "fail-closed")
    )
    if not isinstance(v["record_permanent"], bool):
        raise ConfigError(label("record_permanent"), v["record_permanent"], "True or False")
    out["record_permanent"] = v["record_permanent"]
    return BreakerConfig(**out)


_DEFAULT = BreakerConfig()


def trip_reason(cfg: BreakerConfig, counts: WindowCounts) -> str | None:
    """Why the window's ``counts`` open a breaker with limits ``cfg``, or None when they do not."""
    limit = cfg.consecutive_failures
    if limit and counts.consecutive_failures >= limit:
        return f"{counts.consecutive_failures} failures in a row (limit {limit})"
    calls = counts.calls
    if calls and calls >= cfg.min_calls_in_window:
        if counts.failures * 100 >= cfg.failure_rate * calls:
            return f"failure rate {counts.failure_rate:.3g}% of {calls} calls >= {cfg.failure_rate:g}%"
        if cfg.timed and counts.slow * 100 >= cfg.slow_call_rate * calls:
            return f"slow-call rate {counts.slow_call_rate:.3g}% of {calls} calls >= {cfg.slow_call_rate:g}%"
    return None
