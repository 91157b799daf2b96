"""Side-by-side runs: several policies on one model with one seed, and the usual sets of variants."""

from __future__ import annotations

from collections.abc import Iterable

from bounceback.core._backoff import Backoff, Jitter
from bounceback.errors import ConfigError
from bounceback.sim._models import Model
from bounceback.sim._report import SimReport
from bounceback.sim._run import simulate
from bounceback.sim._spec import BreakerSpec, BudgetSpec, PolicySpec

__all__ = ["COMPARISONS", "compare", "variants"]

COMPARISONS = ("all", "breaker", "budget", "jitter")
"""The sets :func:`variants` knows."""


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

    >>> [s.label for s in variants(PolicySpec(), "all")]  # doctest: +NORMALIZE_WHITESPACE
    ['none', 'full', 'equal', 'decorrelated', 'full + breaker', 'full + budget', 'full + breaker + budget']
    """
    breaker = base.breaker or BreakerSpec()
    budget = base.budget or BudgetSpec()
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
    if by == "all":
        plain = base.replace(breaker=None, budget=None)
        return [
            *(_with_jitter(plain, j).replace(label=j.value) for j in Jitter),
            plain.replace(label=f"{jitter} + breaker", breaker=breaker),
            plain.replace(label=f"{jitter} + budget", budget=budget),
            plain.replace(label=f"{jitter} + breaker + budget", breaker=breaker, budget=budget),
        ]
    raise ConfigError("compare", by, "one of " + ", ".join(repr(c) for c in COMPARISONS))


def compare(model: Model, specs: Iterable[PolicySpec], *, seed: int = 0) -> SimReport:
    """Run every policy in ``specs`` on ``model`` with the same ``seed``; one report, one row each.

    Labels must be unique (they name the rows and the plot's lines).
    """
    specs = list(specs)
    labels = [s.label for s in specs]
    dupes = sorted({label for label in labels if labels.count(label) > 1})
    if dupes:
        raise ConfigError("label", dupes[0], "a label used by one policy only (each names a row)")
    if not specs:
        raise ConfigError("specs", specs, "at least one PolicySpec")
    results = tuple(simulate(model, spec, seed=seed) for spec in specs)
    return SimReport(model.name, model.describe(), seed, model.clients, model.incident, results)
