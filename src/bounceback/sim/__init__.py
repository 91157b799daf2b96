"""The policy simulator: see what retry, breaker, budget and throttle settings do to a service, before using them.

A deterministic, seeded discrete-event simulation (virtual time, no sleeping, no threads) of many clients
calling one service through a policy. Pure standard library plus the core; plots use matplotlib, imported
only when a picture is asked for.

>>> from bounceback import Backoff
>>> from bounceback.sim import Contention, PolicySpec, compare
>>> specs = [PolicySpec(j, Backoff(initial=0.005, max_delay=2, jitter=j), attempts=None) for j in ("none", "full")]
>>> report = compare(Contention(clients=30), specs, seed=3)
>>> report.result("none").calls > report.result("full").calls
True
"""

from bounceback.sim._clock import VirtualClock
from bounceback.sim._compare import COMPARISONS, OLD_DEFAULTS, compare, default_specs, variants
from bounceback.sim._models import Capacity, Contention, Model, Outage, Service, SlowTail
from bounceback.sim._plot import plot
from bounceback.sim._report import PolicyResult, SimReport
from bounceback.sim._run import simulate
from bounceback.sim._spec import (
    BreakerSpec,
    BudgetSpec,
    ConcurrencySpec,
    HedgeSpec,
    PolicySpec,
    RateLimitSpec,
    ThrottleSpec,
)

__all__ = [
    "BreakerSpec",
    "BudgetSpec",
    "COMPARISONS",
    "Capacity",
    "ConcurrencySpec",
    "Contention",
    "HedgeSpec",
    "Model",
    "OLD_DEFAULTS",
    "Outage",
    "PolicyResult",
    "PolicySpec",
    "RateLimitSpec",
    "Service",
    "SimReport",
    "SlowTail",
    "ThrottleSpec",
    "VirtualClock",
    "compare",
    "default_specs",
    "plot",
    "simulate",
    "variants",
]
