"""Brooker's 2015 jitter experiment, reproduced: the table of docs/simulator.md ("Brooker's experiment").

Clients racing to update one record with optimistic concurrency, base 5 ms, cap 2 s, retrying until their
write lands; the work (calls) and the time until every client is done, per jitter kind, as the mean of 10
seeds, with the ratio to full jitter. ``python benchmarks/sim_brooker.py`` (about half a minute).
"""

from __future__ import annotations

import time

from bounceback import Backoff
from bounceback.sim import Contention, PolicySpec, compare, variants

BROOKER = PolicySpec("brooker", Backoff(initial=0.005, max_delay=2.0, jitter="full"), attempts=None)
SEEDS = range(10)


def main() -> None:
    began = time.perf_counter()
    print("| clients | jitter | work (calls) | completion (s) | work vs full | time vs full |")
    print("|---:|---|---:|---:|---:|---:|")
    for clients in (50, 100, 150):
        sums: dict[str, list[float]] = {}
        for seed in SEEDS:
            for r in compare(Contention(clients=clients), variants(BROOKER, "jitter"), seed=seed).results:
                acc = sums.setdefault(r.label, [0.0, 0.0])
                acc[0] += r.calls
                acc[1] += r.completion
        mean = {k: (w / len(SEEDS), t / len(SEEDS)) for k, (w, t) in sums.items()}
        full_work, full_time = mean["full"]
        for label, (work, done) in mean.items():
            print(
                f"| {clients} | {label} | {work:,.0f} | {done:.2f} | {work / full_work:.2f}x | "
                f"{done / full_time:.2f}x |"
            )
    print(f"\n{time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
