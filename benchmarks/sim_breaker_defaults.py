"""The evidence behind the default open time of a circuit breaker: a grid of start and cap, simulated.

Every cell runs the outage and the capacity models (``bounceback.sim``) with the built-in defaults except
``breaker.open_seconds`` (the first open time) and ``breaker.open_seconds_max`` (the cap it grows to), and
prints one markdown row per pair: success rate, recovery after the incident, p99 latency, and calls per
request during the incident, each as the worst of the seeds. ``python benchmarks/sim_breaker_defaults.py``
(about a minute); ``--seeds 0 1 2`` for more seeds.
"""

from __future__ import annotations

import argparse
import math
import time

from bounceback.core.settings._source import StaticSettings
from bounceback.sim import Capacity, Outage, PolicySpec, simulate

STARTS = (1.0, 2.0, 5.0, 10.0, 30.0)
CAPS = (5.0, 15.0, 30.0, 60.0, 300.0)


def cell(
    model: Outage | Capacity, start: float, cap: float, seeds: list[int]
) -> tuple[float, float, float, float]:
    """Worst ok %, recovery s, p99 s and incident calls per request over ``seeds``."""
    values = dict(
        StaticSettings({"breaker.open_seconds": start, "breaker.open_seconds_max": cap}).effective("x")
    )
    spec = PolicySpec.from_settings(values, label=f"{start:g}..{cap:g}")
    ok, rec, p99, cpr = 100.0, 0.0, 0.0, 0.0
    for seed in seeds:
        r = simulate(model, spec, seed=seed)
        ok = min(ok, 100 * r.success_rate)
        rec = max(rec, math.inf if r.recovery_seconds is None else r.recovery_seconds)
        p99 = max(p99, r.latency_p99)
        cpr = max(cpr, r.incident_amplification)
    return ok, rec, p99, cpr


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    args = parser.parse_args()
    began = time.perf_counter()
    print(
        "| open_seconds | open_seconds_max | outage ok % | outage recovery s | outage p99 s | outage calls/req | "
        "capacity ok % | capacity recovery s | capacity p99 s | capacity calls/req |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for start in STARTS:
        for cap in CAPS:
            if cap < start:
                continue
            o = cell(Outage(), start, cap, args.seeds)
            c = cell(Capacity(), start, cap, args.seeds)
            cells = [f"{start:g}", f"{cap:g}"]
            for ok, rec, p99, cpr in (o, c):
                cells += [
                    f"{ok:.1f}",
                    "never" if math.isinf(rec) else f"{rec:.0f}",
                    f"{p99:.1f}",
                    f"{cpr:.2f}",
                ]
            print("| " + " | ".join(cells) + " |", flush=True)
    print(f"\nseeds {args.seeds}; {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
