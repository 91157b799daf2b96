"""The built-in defaults through an outage and a surge, against the targets they were chosen to meet.

For each model (``outage``, ``capacity``) and seed (0, 1, 2) this runs what ``bounceback simulate --model M
--seed S --json`` runs with no settings stored (the built-in defaults), checks the targets below, and runs
``--compare all`` to see whether the default is beaten on success rate or recovery by any variant. It also
puts the 0.1.0 defaults beside today's. ``python benchmarks/sim_defaults.py`` (about a minute);
``--markdown`` prints the tables for docs/simulator.md.

Targets: recovery within 35 s (outage) / 30 s (capacity) after the incident, at least 37% (outage) / 60%
(capacity) of requests succeeding, p99 latency within 35 s, at most 1.3 calls per request reaching the
service during the incident.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

from bounceback.core.settings._layers import defaults
from bounceback.sim import Capacity, Outage, PolicyResult, PolicySpec, compare, default_specs, variants

TARGETS = {"outage": (35.0, 0.37), "capacity": (30.0, 0.60)}
P99 = 35.0
INCIDENT_CALLS = 1.3


def _recovery(r: PolicyResult) -> float:
    return math.inf if r.recovery_seconds is None else r.recovery_seconds


def _fmt(seconds: float) -> str:
    return "never" if math.isinf(seconds) else f"{seconds:.0f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--markdown", action="store_true", help="also print the --compare tables")
    args = parser.parse_args()
    began = time.perf_counter()
    base = PolicySpec.from_settings(defaults(), label="defaults")
    failures = []
    print("| model | seed | ok % | recovery s | p99 s | calls/req in incident | probe lockstep | beaten by |")
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    for model in (Outage(), Capacity()):
        limit, ok_floor = TARGETS[model.name]
        for seed in args.seeds:
            print(f"  running {model.name} seed {seed} ...", file=sys.stderr, flush=True)
            report = compare(model, [base, *variants(base, "all")], seed=seed)
            mine, others = report.results[0], report.results[1:]
            beaten = [
                o.label
                for o in others
                if o.success_rate > mine.success_rate + 1e-9 or _recovery(o) < _recovery(mine)
            ]
            cells = [
                model.name,
                str(seed),
                f"{100 * mine.success_rate:.1f}",
                _fmt(_recovery(mine)),
                f"{mine.latency_p99:.1f}",
                f"{mine.incident_amplification:.2f}",
                f"{mine.lockstep:.1f}",
                ", ".join(beaten) or "none",
            ]
            print("| " + " | ".join(cells) + " |", flush=True)
            checks = {
                f"recovery <= {limit:g} s": _recovery(mine) <= limit,
                f"ok >= {ok_floor:.0%}": mine.success_rate >= ok_floor,
                f"p99 <= {P99:g} s": mine.latency_p99 <= P99,
                f"incident calls/req <= {INCIDENT_CALLS}": mine.incident_amplification <= INCIDENT_CALLS,
            }
            failures += [f"{model.name} seed {seed}: {name}" for name, ok in checks.items() if not ok]
            if args.markdown and seed == args.seeds[0]:
                print(f"\n`bounceback simulate --model {model.name} --compare all --seed {seed}`:\n")
                print(report.table(markdown=True))
                print()
    print("\n0.1.0 defaults beside today's (`--compare defaults`, seed 0):\n")
    for model in (Outage(), Capacity()):
        print(compare(model, default_specs(), seed=0).table(markdown=True))
        print()
    print(f"targets missed: {', '.join(failures) or 'none'}; {time.perf_counter() - began:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
