"""What a simulation reports: figures per policy, a side-by-side table, and a JSON-ready dict."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PolicyResult", "SimReport", "percentile", "recovery_seconds"]


@dataclass(frozen=True)
class PolicyResult:
    """The figures of one policy's run.

    ``calls`` counts attempts that reached the service (the work it did); attempts an open breaker refused
    are ``rejected`` and never reach it. ``amplification`` is calls per request the clients wanted to
    make: 1.0 means no retries at all. ``recovery_seconds`` is how long after the incident (outage or
    surge) ended new requests went on failing their first attempt: 0 when they succeeded at once, ``inf``
    when they never did before the run ended, None when the model has no incident. Latencies are per
    request, first attempt to final outcome, successful or not.
    """

    label: str
    description: str
    requests: int
    succeeded: int
    calls: int
    rejected: int
    budget_refusals: int
    completion: float
    calls_during_incident: int
    recovery_seconds: float | None
    latency_p50: float
    latency_p99: float
    breaker_openings: int
    bucket_seconds: float
    calls_series: tuple[int, ...]
    requests_during_incident: int = 0
    peak_probes: int = 0
    """Half-open probe calls in the busiest bucket: how many clients probe together."""
    probes: int = 0
    """Half-open probe calls in all."""
    probe_span_buckets: int = 0
    """Buckets from the first probe to the last."""
    shed: int = 0
    """Attempts refused locally by adaptive throttling (never sent)."""
    hedges: int = 0
    """Hedged copies sent (each also counted in ``calls``): the extra load hedging adds."""

    @property
    def amplification(self) -> float:
        """Calls per request (load amplification)."""
        return self.calls / self.requests if self.requests else 0.0

    @property
    def incident_amplification(self) -> float:
        """Calls the service got per request made during the incident (1.0: no retries reached it)."""
        if not self.requests_during_incident:
            return 0.0
        return self.calls_during_incident / self.requests_during_incident

    @property
    def lockstep(self) -> float:
        """Peak over mean probes per bucket while probing went on: 1 is evenly spread, tens is in step."""
        if not self.probes:
            return 0.0
        return self.peak_probes / (self.probes / self.probe_span_buckets)

    @property
    def peak_probes_per_second(self) -> float:
        """The most half-open probes in one second: a fleet probing in lockstep shows a tall spike."""
        return self.peak_probes / self.bucket_seconds

    @property
    def success_rate(self) -> float:
        """The fraction of requests that succeeded in the end."""
        return self.succeeded / self.requests if self.requests else 0.0

    def rates(self) -> list[float]:
        """Calls per second in each bucket of the series."""
        return [n / self.bucket_seconds for n in self.calls_series]

    def to_dict(self, series: bool = True) -> dict[str, Any]:
        """Plain values for JSON (infinity as None, with ``recovered`` false)."""
        out: dict[str, Any] = {
            "label": self.label,
            "policy": self.description,
            "requests": self.requests,
            "succeeded": self.succeeded,
            "success_rate": round(self.success_rate, 6),
            "calls": self.calls,
            "rejected": self.rejected,
            "budget_refusals": self.budget_refusals,
            "shed": self.shed,
            "hedges": self.hedges,
            "amplification": round(self.amplification, 6),
            "completion_seconds": round(self.completion, 6),
            "calls_during_incident": self.calls_during_incident,
            "requests_during_incident": self.requests_during_incident,
            "incident_calls_per_request": round(self.incident_amplification, 6),
            "peak_probes_per_second": round(self.peak_probes_per_second, 6),
            "probe_lockstep": round(self.lockstep, 6),
            "recovery_seconds": _finite(self.recovery_seconds),
            "recovered": self.recovery_seconds is None or math.isfinite(self.recovery_seconds),
            "latency_p50_seconds": round(self.latency_p50, 6),
            "latency_p99_seconds": round(self.latency_p99, 6),
            "breaker_openings": self.breaker_openings,
            "bucket_seconds": self.bucket_seconds,
        }
        if series:
            out["calls_per_bucket"] = list(self.calls_series)
        return out


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(value, 6)


@dataclass(frozen=True)
class SimReport:
    """Several policies run on the same model with the same seed (so with the same arrivals)."""

    model: str
    model_description: str
    seed: int
    clients: int
    incident: tuple[float, float] | None
    results: tuple[PolicyResult, ...]

    def result(self, label: str) -> PolicyResult:
        """The result labelled ``label``."""
        for r in self.results:
            if r.label == label:
                return r
        known = ", ".join(repr(r.label) for r in self.results)
        raise KeyError(f"no policy labelled {label!r} in this report; known: {known}")

    def table(self, markdown: bool = False) -> str:
        """The side-by-side table, as aligned text or as a markdown table."""
        return render_table(self, markdown)

    def to_dict(self, series: bool = True) -> dict[str, Any]:
        """Plain values for JSON."""
        return {
            "model": self.model,
            "description": self.model_description,
            "seed": self.seed,
            "clients": self.clients,
            "incident": list(self.incident) if self.incident is not None else None,
            "results": [r.to_dict(series) for r in self.results],
        }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0..1) of already sorted values; 0.0 when empty.

    >>> percentile([1.0, 2.0, 3.0, 4.0], 0.5), percentile([1.0, 2.0, 3.0, 4.0], 0.99)
    (2.0, 4.0)
    """
    if not sorted_values:
        return 0.0
    rank = max(1, math.ceil(q * len(sorted_values)))
    return sorted_values[rank - 1]


def recovery_seconds(
    started: Sequence[int],
    first_ok: Sequence[int],
    width: float,
    incident: tuple[float, float] | None,
    steady_buckets: int = 5,
    threshold: float = 0.9,
) -> float | None:
    """Seconds after the incident until new requests succeed at their first attempt again, for good.

    ``started[b]`` and ``first_ok[b]`` count the requests that began in bucket ``b`` and those whose first
    attempt succeeded. A bucket is healthy when its ratio reaches ``threshold`` times the ratio seen before
    the incident (1.0 when nothing came before it). Recovery is the end of the last unhealthy bucket after
    the incident ended; ``inf`` when one of the last ``steady_buckets`` buckets with requests is unhealthy
    (the run ended before the service came back).

    >>> recovery_seconds([10] * 12, [10, 10, 0, 0, 0, 3, 10, 10, 9, 10, 10, 10], 1.0, (2, 4), steady_buckets=3)
    2.0
    >>> recovery_seconds([10] * 6, [10, 10, 0, 0, 10, 0], 1.0, (2, 4), steady_buckets=3)
    inf
    """
    if incident is None:
        return None
    start, end = incident
    first = min(len(started), math.ceil(end / width - 1e-9))
    before = range(min(len(started), int(start // width)))
    total = sum(started[b] for b in before)
    baseline = sum(first_ok[b] for b in before) / total if total else 1.0
    need = threshold * baseline
    busy = [b for b in range(first, len(started)) if started[b]]
    bad = [b for b in busy if first_ok[b] < need * started[b]]
    if not bad:
        return 0.0
    if bad[-1] in busy[-steady_buckets:]:
        return math.inf
    return max(0.0, (bad[-1] + 1) * width - end)


_COLUMNS = (
    ("policy", "<"),
    ("calls", ">"),
    ("calls/req", ">"),
    ("ok %", ">"),
    ("done at s", ">"),
    ("calls in incident", ">"),
    ("calls/req in incident", ">"),
    ("recovery s", ">"),
    ("p50 s", ">"),
    ("p99 s", ">"),
    ("breaker opens", ">"),
    ("probe lockstep", ">"),
    ("budget refusals", ">"),
    ("shed", ">"),
    ("hedges", ">"),
)


_INCIDENT = (5, 6, 7)  # "calls in incident", "calls/req in incident" and "recovery s"


def _row(r: PolicyResult) -> list[str]:
    if r.recovery_seconds is None:
        recovery = "-"
    elif math.isinf(r.recovery_seconds):
        recovery = "never"
    else:
        recovery = f"{r.recovery_seconds:.0f}"
    return [
        r.label,
        f"{r.calls:,}",
        f"{r.amplification:.2f}",
        f"{100 * r.success_rate:.1f}",
        f"{r.completion:.2f}" if r.completion < 100 else f"{r.completion:,.0f}",
        "-" if r.recovery_seconds is None else f"{r.calls_during_incident:,}",
        "-" if r.recovery_seconds is None else f"{r.incident_amplification:.2f}",
        recovery,
        _seconds(r.latency_p50),
        _seconds(r.latency_p99),
        f"{r.breaker_openings:,}",
        f"{r.lockstep:.1f}" if r.probes else "-",
        f"{r.budget_refusals:,}",
        f"{r.shed:,}",
        f"{r.hedges:,}",
    ]


def _seconds(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def render_table(report: SimReport, markdown: bool = False) -> str:
    """Render ``report`` as a table, one row per policy."""
    # Without an incident (the contention model) its two columns would only hold dashes.
    keep = [i for i, (name, _) in enumerate(_COLUMNS) if report.incident is not None or i not in _INCIDENT]
    columns = [_COLUMNS[i] for i in keep]
    heads = [name for name, _ in columns]
    rows = [[row[i] for i in keep] for row in (_row(r) for r in report.results)]
    if markdown:
        lines = ["| " + " | ".join(heads) + " |"]
        lines.append("|" + "|".join("---:" if a == ">" else "---" for _, a in columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(heads)]
    out = []
    for cells in [heads, *rows]:
        parts = [
            c.ljust(w) if align == "<" else c.rjust(w)
            for c, w, (_, align) in zip(cells, widths, columns, strict=True)
        ]
        out.append("  ".join(parts).rstrip())
    return "\n".join(out)
