"""Side-by-side runs: several policies on one model with one seed, and the usual sets of variants."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from bounceback.core.retry._backoff import Backoff, Jitter
from bounceback.core.settings._layers import defaults
from bounceback.errors import ConfigError
from bounceback.sim._models import Model
from bounceback.sim._report import SimReport
from bounceback.sim._run import simulate
from bounceback.sim._spec import BreakerSpec, BudgetSpec, HedgeSpec, PolicySpec, ThrottleSpec

__all__ = ["COMPARISONS", "OLD_DEFAULTS", "compare", "default_specs", "variants"]

COMPARISONS = ("all", "breaker", "budget", "defaults", "hedge", "jitter", "throttle")
"""The sets :func:`variants` knows."""

OLD_DEFAULTS: dict[str, object] = {
    "retry.deadline": None,
    "breaker.open_seconds": 30.0,
    "breaker.open_seconds_max": 300.0,
    "breaker.open_jitter": 0.0,
    "budget.enabled": False,
}
"""What changed in the built-in defaults since 0.1.0 (every other default is the same)."""


def default_specs() -> list[PolicySpec]:
    """The built-in defaults of 0.1.0 and of today, as two policies.

    >>> old, new = default_specs()
    >>> old.budget is None and old.deadline == float("inf"), new.budget is not None and new.deadline
    (True, 30.0)
    """
    built_in = defaults()
    return [
        PolicySpec.from_settings({**built_in, **OLD_DEFAULTS}, label="0.1.0 defaults"),
        PolicySpec.from_settings(built_in, label="defaults now"),
    ]


def _with_jitter(spec: PolicySpec, jitter: Jitter) -> PolicySpec:
    b = spec.backoff
    backoff = Backoff(
        b.kind, initial=b.initial, max_delay=b.max_delay, multiplier=b.multiplier, jitter=jitter
    )
    return spec.replace(backoff=backoff)


def variants(base: PolicySpec, by: str) -> list[PolicySpec]:
    """The policies to compare: ``base`` varied by ``jitter``, ``breaker``, ``budget``, or ``all``.

    ``jitter`` gives the four jitter kinds; ``breaker`` and ``budget`` give ``base`` without and with one
    (the base's own options, or the defaults); ``all`` gives the four jitter kinds with neither, then the
    base's jitter with a breaker, with a budget, and with both.

    ``throttle`` gives ``base`` without and with adaptive throttling, ``hedge`` without and with hedging
    (the base's hedge, or one after the built-in ``hedge.delay``); ``all`` adds the base's jitter with a
    throttle, and with all three; ``defaults`` ignores ``base`` and gives the built-in defaults of 0.1.0 and
    of today.

    >>> [s.label for s in variants(PolicySpec(), "all")]  # doctest: +NORMALIZE_WHITESPACE
    ['none', 'full', 'equal', 'decorrelated', 'full + breaker', 'full + budget', 'full + breaker + budget',
     'full + throttle', 'full + breaker + budget + throttle']
    """
    breaker = base.breaker or BreakerSpec()
    budget = base.budget or BudgetSpec()
    throttle = base.throttle or ThrottleSpec()
    jitter = base.backoff.jitter.value
    if by == "jitter":
        return [_with_jitter(base, j).replace(label=j.value) for j in Jitter]
    if by == "breaker":
        return [
            base.replace(label=f"{jitter}, no breaker", breaker=None),
            base.replace(label=f"{jitter} + breaker", breaker=breaker),
        ]
    if by == "budget":
        return [
            base.replace(label=f"{jitter}, no budget", budget=None),
            base.replace(label=f"{jitter} + budget", budget=budget),
        ]
    if by == "throttle":
        return [
            base.replace(label=f"{jitter}, no throttle", throttle=None),
            base.replace(label=f"{jitter} + throttle", throttle=throttle),
        ]
    if by == "hedge":
        hedge = base.hedge or HedgeSpec.from_settings({})
        return [
            base.replace(label=f"{jitter}, no hedge", hedge=None),
            base.replace(label=f"{jitter} + {hedge.describe()}", hedge=hedge),
        ]
    if by == "defaults":
        return default_specs()
    if by == "all":
        plain = base.replace(breaker=None, budget=None, throttle=None)
        return [
            *(_with_jitter(plain, j).replace(label=j.value) for j in Jitter),
            plain.replace(label=f"{jitter} + breaker", breaker=breaker),
            plain.replace(label=f"{jitter} + budget", budget=budget),
            plain.replace(label=f"{jitter} + breaker + budget", breaker=breaker, budget=budget),
            plain.replace(label=f"{jitter} + throttle", throttle=throttle),
            plain.replace(
                label=f"{jitter} + breaker + budget + throttle",
                breaker=breaker,
                budget=budget,
                throttle=throttle,
            ),
        ]
    raise ConfigError("compare", by, "one of " + ", ".join(repr(c) for c in COMPARISONS))


def compare(
    model: Model,
    specs: Iterable[PolicySpec],
    *,
    seed: int = 0,
    progress: Callable[[int, int, str], None] | None = None,
) -> SimReport:
    """Run every policy in ``specs`` on ``model`` with the same ``seed``; one report, one row each.

    Labels must be unique (they name the rows and the plot's lines). ``progress(done, total, label)`` is
    told before each run and once at the end (``done == total``), for a display of long comparisons.
    """
    specs = list(specs)
    labels = [s.label for s in specs]
    dupes = sorted({label for label in labels if labels.count(label) > 1})
    if dupes:
        raise ConfigError("label", dupes[0], "a label used by one policy only (each names a row)")
    if not specs:
        raise ConfigError("specs", specs, "at least one PolicySpec")
    results = []
    for i, spec in enumerate(specs):
        if progress is not None:
            progress(i, len(specs), spec.label)
        results.append(simulate(model, spec, seed=seed))
    if progress is not None:
        progress(len(specs), len(specs), "")
    return SimReport(model.name, model.describe(), seed, model.clients, model.incident, tuple(results))
