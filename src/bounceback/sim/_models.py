"""The services a simulation can put behind a policy, and the demand that calls them.

A model is a frozen description (clients, rates, windows); :meth:`build` makes a fresh mutable
:class:`Service` for one run. A service answers each attempt in two steps: :meth:`Service.begin` when the
attempt reaches it (returns when the client will know the outcome, and a token), and
:meth:`Service.finish` at that time (returns the outcome). Two steps let optimistic concurrency decide at
commit time, after other attempts have had their chance to commit first.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Protocol

from bounceback.errors import ConfigError

__all__ = [
    "CONFLICT",
    "Capacity",
    "Contention",
    "DOWN",
    "Model",
    "OK",
    "OVERLOADED",
    "Outage",
    "Service",
    "SlowTail",
    "TIMED_OUT",
]

OK = 0
"""The attempt succeeded."""
DOWN = 1
"""The service was down (the outage window): a quick failure."""
OVERLOADED = 2
"""The service shed the attempt at the door: its queue was full."""
TIMED_OUT = 3
"""The client stopped waiting: the attempt's answer would have come after its timeout."""
CONFLICT = 4
"""Optimistic concurrency: another writer committed first."""


class Service(Protocol):
    """One run's service: mutable state, driven by the simulation in time order."""

    def begin(self, now: float) -> tuple[float, int]:
        """An attempt reaches the service at ``now``: when the client learns the outcome, and a token."""
        ...

    def finish(self, now: float, token: int) -> int:
        """The outcome (``OK`` or a failure code) of the attempt that got ``token``, decided at ``now``."""
        ...


class Model(Protocol):
    """What the simulation needs from a model."""

    @property
    def clients(self) -> int:
        """How many clients call the service."""
        ...

    @property
    def name(self) -> str:
        """A short name: ``contention``, ``outage`` or ``capacity``."""
        ...

    @property
    def incident(self) -> tuple[float, float] | None:
        """The window of trouble (outage, surge), or None."""
        ...

    @property
    def bucket_seconds(self) -> float:
        """Width of the time buckets of the reported series."""
        ...

    def build(self, attempt_timeout: float) -> Service:
        """A fresh service for one run; ``attempt_timeout`` is the policy's, or ``inf``."""
        ...

    def request_rate(self, now: float) -> float:
        """Requests per second all clients make together at ``now`` (0: no more after ``horizon``)."""
        ...

    @property
    def horizon(self) -> float:
        """When clients stop making new requests (0 for a one-shot burst at time zero)."""
        ...

    def describe(self) -> str:
        """One line for reports."""
        ...


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(name, value, f"a finite number {bound}")


def _clients(value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 1_000_000:
        raise ConfigError("clients", value, "a whole number of clients from 1 to 1,000,000")


# -- optimistic concurrency (Brooker 2015) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Contention:
    """Every client wants one write to the same record, all at time zero, with optimistic concurrency.

    An attempt reads the record's version when it arrives and commits ``latency`` seconds later; the
    commit succeeds only if nobody committed since the read. So overlapping attempts conflict and all but
    the first to commit must retry: the setup of Marc Brooker's 2015 jitter experiment.

    >>> Contention(clients=50).describe()
    'contention: 50 clients, one optimistic write each to one record (commit after 20 ms)'
    """

    clients: int = 100
    latency: float = 0.02

    def __post_init__(self) -> None:
        _clients(self.clients)
        _positive("latency", self.latency)

    @property
    def name(self) -> str:
        """``contention``."""
        return "contention"

    @property
    def incident(self) -> tuple[float, float] | None:
        """None: the trouble is the clients themselves."""
        return None

    @property
    def bucket_seconds(self) -> float:
        """Ten milliseconds: the whole run usually lasts seconds."""
        return 0.01

    @property
    def horizon(self) -> float:
        """Zero: one burst at time zero."""
        return 0.0

    def request_rate(self, now: float) -> float:  # noqa: ARG002 - the Model protocol's signature
        """Zero: no requests after the burst."""
        return 0.0

    def build(self, attempt_timeout: float) -> Service:  # noqa: ARG002 - writes do not time out here
        """A fresh record at version zero."""
        return _Record(self.latency)

    def describe(self) -> str:
        """One line for reports."""
        return (
            f"contention: {self.clients} clients, one optimistic write each to one record "
            f"(commit after {self.latency * 1000:g} ms)"
        )


class _Record:
    __slots__ = ("latency", "version")

    def __init__(self, latency: float) -> None:
        self.latency = latency
        self.version = 0

    def begin(self, now: float) -> tuple[float, int]:
        return now + self.latency, self.version

    def finish(self, now: float, token: int) -> int:  # noqa: ARG002 - events arrive in time order
        if token != self.version:
            return CONFLICT
        self.version += 1
        return OK


# -- a queueing service with a capacity ----------------------------------------------------------------


class _Queue:
    """A service that admits ``capacity`` calls per second, first come first served.

    An attempt waits its turn, then takes ``latency``. The server sheds attempts that would wait more than
    ``max_queue_seconds`` (a quick "overloaded" answer that costs it nothing), but it does the work of every
    attempt it admitted, even when the client stopped waiting at its timeout: wasted work is what lets a
    retry storm outlast its cause. During ``down`` every attempt fails after ``down_latency``.
    """

    __slots__ = (
        "down_end",
        "down_latency",
        "down_start",
        "free_at",
        "gap",
        "latency",
        "max_queue",
        "timeout",
    )

    def __init__(
        self,
        capacity: float,
        latency: float,
        timeout: float,
        max_queue: float,
        down: tuple[float, float] | None,
        down_latency: float,
    ) -> None:
        self.gap = 1.0 / capacity
        self.latency = latency
        self.timeout = timeout
        self.max_queue = max_queue
        self.down_start, self.down_end = down if down is not None else (math.inf, math.inf)
        self.down_latency = down_latency
        self.free_at = 0.0

    def begin(self, now: float) -> tuple[float, int]:
        if self.down_start <= now < self.down_end:
            return now + self.down_latency, DOWN
        start = self.free_at if self.free_at > now else now
        wait = start - now
        if wait > self.max_queue:
            return now + self.down_latency, OVERLOADED
        self.free_at = start + self.gap
        answer = wait + self.latency
        if answer > self.timeout:
            return now + self.timeout, TIMED_OUT
        return now + answer, OK

    def finish(self, now: float, token: int) -> int:  # noqa: ARG002 - decided when the attempt began
        return token


@dataclass(frozen=True, slots=True)
class Outage:
    """Clients call a service at a steady rate; it is down for a while, then comes back.

    ``clients`` each make ``rate_per_client`` requests per second (Poisson arrivals). From
    ``outage_start`` for ``outage_seconds`` every attempt fails quickly; afterwards the service admits
    ``headroom`` times the normal request rate, so a retry storm still waiting when it returns can
    overload it. Clients keep making requests for ``after_seconds`` after the outage ends. Attempts time
    out after ``timeout`` seconds unless the policy sets its own attempt timeout.

    >>> Outage(clients=1000).describe()
    'outage: 1000 clients at 0.1 req/s each; down from 60 s for 600 s; capacity 2x normal load'
    """

    clients: int = 1000
    rate_per_client: float = 0.1
    outage_start: float = 60.0
    outage_seconds: float = 600.0
    after_seconds: float = 300.0
    headroom: float = 2.0
    latency: float = 0.05
    timeout: float = 1.0
    max_queue_seconds: float = 5.0
    fail_latency: float = 0.01

    def __post_init__(self) -> None:
        _clients(self.clients)
        for name in ("rate_per_client", "headroom", "latency", "timeout", "fail_latency"):
            _positive(name, getattr(self, name))
        for name in ("outage_start", "outage_seconds", "after_seconds", "max_queue_seconds"):
            _positive(name, getattr(self, name), allow_zero=True)

    @property
    def name(self) -> str:
        """``outage``."""
        return "outage"

    @property
    def incident(self) -> tuple[float, float] | None:
        """The outage window."""
        return (self.outage_start, self.outage_start + self.outage_seconds)

    @property
    def bucket_seconds(self) -> float:
        """One second."""
        return 1.0

    @property
    def horizon(self) -> float:
        """The end of the outage plus ``after_seconds``."""
        return self.outage_start + self.outage_seconds + self.after_seconds

    def request_rate(self, now: float) -> float:
        """Steady: ``clients * rate_per_client`` until the horizon."""
        return self.clients * self.rate_per_client if now < self.horizon else 0.0

    def build(self, attempt_timeout: float) -> Service:
        """A fresh queue, down during the outage window."""
        timeout = attempt_timeout if math.isfinite(attempt_timeout) else self.timeout
        return _Queue(
            self.headroom * self.clients * self.rate_per_client,
            self.latency,
            timeout,
            self.max_queue_seconds,
            self.incident,
            self.fail_latency,
        )

    def describe(self) -> str:
        """One line for reports."""
        return (
            f"outage: {self.clients} clients at {self.rate_per_client:g} req/s each; down from "
            f"{self.outage_start:g} s for {self.outage_seconds:g} s; capacity {self.headroom:g}x normal load"
        )


@dataclass(frozen=True, slots=True)
class Capacity:
    """Clients call a service with a fixed capacity; for a while they ask for more than it can do.

    The service admits ``headroom`` times the normal request rate; from ``surge_start`` for
    ``surge_seconds`` the clients make ``surge_factor`` times their normal requests. Attempts beyond the
    capacity queue up, time out, or are shed as overloaded; the question is whether retries let the
    service come back once the surge is over.

    >>> Capacity(clients=500).describe()
    'capacity: 500 clients at 0.1 req/s each; 3x surge from 60 s for 60 s; capacity 1.5x normal load'
    """

    clients: int = 1000
    rate_per_client: float = 0.1
    headroom: float = 1.5
    surge_start: float = 60.0
    surge_seconds: float = 60.0
    surge_factor: float = 3.0
    after_seconds: float = 300.0
    latency: float = 0.05
    timeout: float = 1.0
    max_queue_seconds: float = 5.0
    fail_latency: float = 0.01

    def __post_init__(self) -> None:
        _clients(self.clients)
        for name in ("rate_per_client", "headroom", "surge_factor", "latency", "timeout", "fail_latency"):
            _positive(name, getattr(self, name))
        for name in ("surge_start", "surge_seconds", "after_seconds", "max_queue_seconds"):
            _positive(name, getattr(self, name), allow_zero=True)

    @property
    def name(self) -> str:
        """``capacity``."""
        return "capacity"

    @property
    def incident(self) -> tuple[float, float] | None:
        """The surge window."""
        return (self.surge_start, self.surge_start + self.surge_seconds)

    @property
    def bucket_seconds(self) -> float:
        """One second."""
        return 1.0

    @property
    def horizon(self) -> float:
        """The end of the surge plus ``after_seconds``."""
        return self.surge_start + self.surge_seconds + self.after_seconds

    def request_rate(self, now: float) -> float:
        """The normal rate, times ``surge_factor`` during the surge; zero after the horizon."""
        if now >= self.horizon:
            return 0.0
        base = self.clients * self.rate_per_client
        start, end = self.surge_start, self.surge_start + self.surge_seconds
        return base * self.surge_factor if start <= now < end else base

    def build(self, attempt_timeout: float) -> Service:
        """A fresh queue that never goes down: overload is the only trouble."""
        timeout = attempt_timeout if math.isfinite(attempt_timeout) else self.timeout
        return _Queue(
            self.headroom * self.clients * self.rate_per_client,
            self.latency,
            timeout,
            self.max_queue_seconds,
            None,
            self.fail_latency,
        )

    def describe(self) -> str:
        """One line for reports."""
        return (
            f"capacity: {self.clients} clients at {self.rate_per_client:g} req/s each; "
            f"{self.surge_factor:g}x surge from {self.surge_start:g} s for {self.surge_seconds:g} s; "
            f"capacity {self.headroom:g}x normal load"
        )


class _Replicas:
    """Every attempt lands on a replica that is slow with probability ``slow_fraction``, independently."""

    __slots__ = ("latency", "rng", "slow_fraction", "slow_latency", "timeout")

    def __init__(
        self, latency: float, slow_latency: float, slow_fraction: float, timeout: float, seed: int
    ) -> None:
        self.latency = latency
        self.slow_latency = slow_latency
        self.slow_fraction = slow_fraction
        self.timeout = timeout
        self.rng = random.Random(f"{seed}/replicas")

    def begin(self, now: float) -> tuple[float, int]:
        answer = self.slow_latency if self.rng.random() < self.slow_fraction else self.latency
        if answer > self.timeout:
            return now + self.timeout, TIMED_OUT
        return now + answer, OK

    def finish(self, now: float, token: int) -> int:  # noqa: ARG002 - decided when the attempt began
        return token


@dataclass(frozen=True, slots=True)
class SlowTail:
    """Clients call a healthy service whose latency has a tail: a ``slow_fraction`` of attempts, on a slow
    replica, take ``slow_latency`` instead of ``latency``. The model hedging is for: nothing fails, but the
    99th percentile is the slow replica's, unless a second copy is sent elsewhere.

    ``clients`` each make ``rate_per_client`` requests per second for ``seconds``; ``seed`` draws which
    attempts are slow (the same for every policy compared with one seed, until their calls differ).

    >>> SlowTail().describe()
    'slow tail: 100 clients at 1 req/s each for 60 s; 5% of attempts take 1 s instead of 0.02 s'
    """

    clients: int = 100
    rate_per_client: float = 1.0
    seconds: float = 60.0
    latency: float = 0.02
    slow_latency: float = 1.0
    slow_fraction: float = 0.05
    timeout: float = 5.0
    seed: int = 0

    def __post_init__(self) -> None:
        _clients(self.clients)
        for name in ("rate_per_client", "seconds", "latency", "slow_latency", "timeout"):
            _positive(name, getattr(self, name))
        if not 0 <= self.slow_fraction <= 1:
            raise ConfigError("slow_fraction", self.slow_fraction, "a fraction from 0 to 1, such as 0.05")

    @property
    def name(self) -> str:
        """``tail``."""
        return "tail"

    @property
    def incident(self) -> tuple[float, float] | None:
        """None: the tail is always there."""
        return None

    @property
    def bucket_seconds(self) -> float:
        """One second."""
        return 1.0

    @property
    def horizon(self) -> float:
        """``seconds``."""
        return self.seconds

    def request_rate(self, now: float) -> float:
        """Steady: ``clients * rate_per_client`` until the horizon."""
        return self.clients * self.rate_per_client if now < self.horizon else 0.0

    def build(self, attempt_timeout: float) -> Service:
        """Fresh replicas (the slow draws start again from ``seed``)."""
        timeout = attempt_timeout if math.isfinite(attempt_timeout) else self.timeout
        return _Replicas(self.latency, self.slow_latency, self.slow_fraction, timeout, self.seed)

    def describe(self) -> str:
        """One line for reports."""
        return (
            f"slow tail: {self.clients} clients at {self.rate_per_client:g} req/s each for {self.seconds:g} s; "
            f"{self.slow_fraction:.0%} of attempts take {self.slow_latency:g} s instead of {self.latency:g} s"
        )
