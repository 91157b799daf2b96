"""What a simulated client does: the policy under test, described as plain values.

A :class:`PolicySpec` holds what a :class:`bounceback.Policy` would be built from (backoff, attempts,
deadline, attempt timeout, breaker options, retry budget), so a simulation can build one breaker and one
budget per client on virtual time. :meth:`PolicySpec.from_settings` reads the same ``retry.*``,
``breaker.*`` and ``budget.*`` settings a policy reads, so an operation's current settings can be
simulated before they are changed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bounceback.core._time import to_seconds
from bounceback.core.breaker._config import SETTINGS_KEYS
from bounceback.core.retry._backoff import Backoff
from bounceback.core.retry._budget import BudgetRule
from bounceback.core.settings._layers import defaults
from bounceback.core.strategies._limiter import ConcurrencyLimiter
from bounceback.core.strategies._rate import RateLimiter
from bounceback.core.strategies._throttle import AdaptiveThrottle
from bounceback.errors import ConfigError

__all__ = [
    "BREAKER_KEYS",
    "BreakerSpec",
    "BudgetSpec",
    "ConcurrencySpec",
    "HedgeSpec",
    "PolicySpec",
    "RateLimitSpec",
    "ThrottleSpec",
]

BREAKER_KEYS = tuple(sorted(SETTINGS_KEYS.values()))
"""The breaker options a simulation passes on: the ``breaker.*`` settings, by their keyword names."""


@dataclass(frozen=True)
class BreakerSpec:
    """One circuit breaker per client, built with these options (``bounceback.CircuitBreaker`` keywords).

    >>> BreakerSpec({"open_seconds": 10}).options["open_seconds"]
    10
    """

    options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = sorted(set(self.options) - set(BREAKER_KEYS))
        if unknown:
            raise ConfigError("breaker", unknown[0], "one of " + ", ".join(BREAKER_KEYS))

    def describe(self) -> str:
        """A short summary for tables."""
        opts = self.options
        parts = []
        if "failure_rate" in opts:
            parts.append(f"{opts['failure_rate']:g}%")
        if "open_seconds" in opts:
            parts.append(f"open {opts['open_seconds']:g}s")
        return "breaker" + (f" ({', '.join(parts)})" if parts else "")


@dataclass(frozen=True)
class BudgetSpec:
    """A retry budget (see :class:`bounceback.core.retry._budget.RetryBudget`).

    ``shared`` gives all clients one budget, as the workers of one process share theirs, or as a fleet
    would share one through a store; otherwise each client has its own, and its floor
    (``min_per_second * window``) applies to each client separately.

    >>> BudgetSpec(ratio=0.1).rule.allowance(calls=100)
    110.0
    """

    ratio: float = 0.2
    min_per_second: float = 10.0
    window: float = 10.0
    shared: bool = True

    def __post_init__(self) -> None:
        BudgetRule(self.ratio, self.min_per_second, self.window)  # validates

    @property
    def rule(self) -> BudgetRule:
        """The budget's limits."""
        return BudgetRule(self.ratio, self.min_per_second, self.window)

    def describe(self) -> str:
        """A short summary for tables."""
        scope = "" if self.shared else " per client"
        return f"budget {self.ratio:.0%}{scope}"


@dataclass(frozen=True)
class ThrottleSpec:
    """Adaptive client-side throttling (see :class:`bounceback.AdaptiveThrottle`), one per client.

    Each client keeps its own history, as each process does: a throttle is never shared.

    >>> ThrottleSpec(k=1.5).describe()
    'throttle k=1.5'
    """

    k: float = 2.0
    window: float = 30.0

    def __post_init__(self) -> None:
        AdaptiveThrottle(self.k, window=self.window)  # validates

    def describe(self) -> str:
        """A short summary for tables."""
        return f"throttle k={self.k:g}"


@dataclass(frozen=True)
class ConcurrencySpec:
    """A concurrency limit per client (see :class:`bounceback.ConcurrencyLimiter`): at most
    ``max_in_flight`` attempts of one client at once; a refused attempt is retried like a throttled error.

    Queued waits are not simulated: a client's calls beyond the limit are refused at once.

    >>> ConcurrencySpec(4).describe()
    'concurrency 4'
    """

    max_in_flight: int = 10

    def __post_init__(self) -> None:
        ConcurrencyLimiter(self.max_in_flight)  # validates

    def describe(self) -> str:
        """A short summary for tables."""
        return f"concurrency {self.max_in_flight}"


@dataclass(frozen=True)
class RateLimitSpec:
    """A token bucket per client (see :class:`bounceback.RateLimiter`): ``rate`` attempts per second,
    ``burst`` at once (0: a second's worth), waiting up to ``max_wait`` for a token; a refused request ends
    at once, as a Policy does not retry a rate-limit refusal.

    >>> RateLimitSpec(5, max_wait=0.5).describe()
    'rate 5/s wait<=0.5s'
    """

    rate: float = 10.0
    burst: int = 0
    max_wait: float = 0.0

    def __post_init__(self) -> None:
        self.build()  # validates

    def build(self, clock: Any = None, bus: Any = None) -> RateLimiter:
        """A limiter with these values on ``clock``, emitting to ``bus``."""
        return RateLimiter(self.rate, burst=self.burst or None, max_wait=self.max_wait, clock=clock, bus=bus)

    def describe(self) -> str:
        """A short summary for tables."""
        wait = f" wait<={self.max_wait:g}s" if self.max_wait else ""
        return f"rate {self.rate:g}/s{wait}"


@dataclass(frozen=True)
class HedgeSpec:
    """Hedging (see :class:`bounceback.Hedge`): ``delay`` seconds into an attempt with no answer, send
    another copy of it, up to ``max_hedges`` copies; the first success wins, the other copies are abandoned
    (the service still does their work). ``percentile`` (such as 0.95) takes the delay from the latencies
    seen so far instead, once there are 20; ``delay`` is used until then.

    A hedge spends from the retry budget when the policy has one (a refused hedge is not sent), and is
    sent straight to the service: the gates (rate, concurrency, throttle, breaker) see the first copy only.

    >>> HedgeSpec(0.2).describe(), HedgeSpec(0.2, max_hedges=2, percentile=0.95).describe()
    ('hedge after 0.2s', 'hedge after p95 (0.2s at first) x2')
    """

    delay: float = 0.1
    max_hedges: int = 1
    percentile: float = 0.0

    def __post_init__(self) -> None:
        if (
            isinstance(self.delay, bool)
            or not isinstance(self.delay, (int, float))
            or not 0 < self.delay < math.inf
        ):
            raise ConfigError("delay", self.delay, "seconds above 0 before a hedge is sent, such as 0.1")
        m = self.max_hedges
        if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 10:
            raise ConfigError("max_hedges", m, "a whole number of extra copies from 1 to 10")
        q = self.percentile
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not (q == 0 or 0 < q < 1):
            raise ConfigError("percentile", q, "0 (a fixed delay) or a fraction such as 0.95")

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> HedgeSpec:
        """Hedging as an operation's ``hedge.*`` settings describe it (``hedge.percentile`` is in percent).

        >>> HedgeSpec.from_settings({"hedge.delay": 0.2, "hedge.percentile": 95.0, "hedge.max_hedges": 2})
        HedgeSpec(delay=0.2, max_hedges=2, percentile=0.95)
        """
        values = {**defaults(), **values}
        return cls(
            float(values["hedge.delay"]),
            int(values["hedge.max_hedges"]),
            float(values["hedge.percentile"]) / 100,
        )

    def describe(self) -> str:
        """A short summary for tables."""
        when = (
            f"p{self.percentile * 100:g} ({self.delay:g}s at first)"
            if self.percentile
            else f"{self.delay:g}s"
        )
        copies = f" x{self.max_hedges}" if self.max_hedges > 1 else ""
        return f"hedge after {when}{copies}"


@dataclass(frozen=True)
class PolicySpec:
    """The policy every simulated client uses, and its label in the report.

    ``attempts`` None with an infinite ``deadline`` retries until success (as in Brooker's experiment);
    ``attempt_timeout`` (seconds) replaces the model's client timeout when finite.

    >>> spec = PolicySpec("full", Backoff(initial=0.005, max_delay=2, jitter="full"), attempts=None)
    >>> spec.replace(label="none", backoff=Backoff(initial=0.005, max_delay=2, jitter="none")).label
    'none'
    """

    label: str = "policy"
    backoff: Backoff = field(default_factory=Backoff)
    attempts: int | None = 5
    deadline: float = math.inf
    attempt_timeout: float = math.inf
    max_retry_after: float = 300.0
    breaker: BreakerSpec | None = None
    budget: BudgetSpec | None = None
    throttle: ThrottleSpec | None = None
    concurrency: ConcurrencySpec | None = None
    rate_limit: RateLimitSpec | None = None
    hedge: HedgeSpec | None = None

    def __post_init__(self) -> None:
        a = self.attempts
        if a is not None and (isinstance(a, bool) or not isinstance(a, int) or a < 1):
            raise ConfigError("attempts", a, "a whole number >= 1, or None for no limit")
        for name in ("deadline", "attempt_timeout"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and value > 0):
                raise ConfigError(name, value, "a number of seconds > 0, or math.inf for no limit")
        to_seconds(self.max_retry_after, "max_retry_after")
        if not isinstance(self.backoff, Backoff):
            raise ConfigError("backoff", self.backoff, "a bounceback.Backoff")

    def replace(self, **changes: Any) -> PolicySpec:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """A one-line summary: backoff, limits, breaker and budget."""
        b = self.backoff
        limit = "until success" if self.attempts is None else f"{self.attempts} attempts"
        if self.deadline != math.inf:
            limit += f", deadline {self.deadline:g}s"
        parts = [
            f"{b.kind.value} {b.initial:g}s..{b.max_delay:g}s jitter={b.jitter.value}",
            limit,
        ]
        if self.breaker is not None:
            parts.append(self.breaker.describe())
        if self.budget is not None:
            parts.append(self.budget.describe())
        for extra in (self.throttle, self.concurrency, self.rate_limit, self.hedge):
            if extra is not None:
                parts.append(extra.describe())
        return ", ".join(parts)

    @classmethod
    def from_settings(cls, values: Mapping[str, Any], label: str = "current") -> PolicySpec:
        """The policy an operation's resolved settings describe (``settings.effective(operation)``).

        >>> from bounceback.core.settings._source import StaticSettings
        >>> spec = PolicySpec.from_settings(StaticSettings({"retry.jitter": "equal"}).effective("x"))
        >>> spec.backoff.jitter.value, spec.attempts, spec.breaker is not None, spec.budget is not None
        ('equal', 5, True, True)
        """

        # Keys the values leave out take their built-in defaults, as a Policy's would.
        values = {**defaults(), **values}

        def get(key: str, default: Any) -> Any:
            value = values.get(key, default)
            return default if value is None and default is not None else value

        backoff = Backoff(
            get("retry.backoff", "exponential"),
            initial=get("retry.initial_delay", 0.2),
            max_delay=get("retry.max_delay", 30.0),
            multiplier=get("retry.multiplier", 2.0),
            jitter=get("retry.jitter", "full"),
        )
        breaker = None
        if get("breaker.enabled", False):
            breaker = BreakerSpec(
                {k: values[f"breaker.{k}"] for k in BREAKER_KEYS if f"breaker.{k}" in values}
            )
        budget = None
        if get("budget.enabled", False):
            budget = BudgetSpec(
                get("budget.ratio", 0.2), get("budget.min_per_second", 10.0), get("budget.window", 10.0)
            )
        throttle = None
        if get("throttle.enabled", False):
            throttle = ThrottleSpec(get("throttle.k", 2.0), get("throttle.window", 30.0))
        concurrency = None
        if get("concurrency.max_in_flight", 0):
            concurrency = ConcurrencySpec(get("concurrency.max_in_flight", 0))
        rate_limit = None
        if get("rate_limit.rate", 0.0):
            rate_limit = RateLimitSpec(
                get("rate_limit.rate", 0.0), get("rate_limit.burst", 0), get("rate_limit.max_wait", 0.0)
            )
        deadline = values.get("retry.deadline")
        timeout = values.get("retry.attempt_timeout")
        return cls(
            label,
            backoff,
            attempts=get("retry.max_attempts", 5),
            deadline=math.inf if deadline is None else to_seconds(deadline, "retry.deadline"),
            attempt_timeout=math.inf if timeout is None else to_seconds(timeout, "retry.attempt_timeout"),
            max_retry_after=to_seconds(get("retry.max_retry_after", 300.0), "retry.max_retry_after"),
            breaker=breaker,
            budget=budget,
            throttle=throttle,
            concurrency=concurrency,
            rate_limit=rate_limit,
        )
