"""One process of a fleet sharing limits through the home database, for the dashboard's tests.

``python -m tests.web.limit_fleet DB HOLD SPEND`` builds, as a program of the fleet would, a shared
concurrency limit ``payments-db`` (4 for the fleet), a shared rate limit ``quotes-api`` (10/s, burst 20,
for the fleet) and a local concurrency limit ``local-cache`` (5 per process); holds ``HOLD`` slots of
each concurrency limit, spends ``SPEND`` tokens, prints ``{"ready": pid}`` and keeps its journal writer
publishing the readings (once a second) until stdin closes or the process is killed; each line read on
stdin publishes them at once and answers ``{"published": n}``.

The store's clock is frozen (every process the same wall time), so the fleet's bucket does not refill
while the test looks: the tokens left are exact.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bounceback import ConcurrencyLimiter, Policy, RateLimiter
from bounceback.events import EventBus, Registry
from bounceback.stores import JournalWriter, SqliteSharedLimits
from bounceback.testing import FakeClock

FROZEN_WALL = 1_700_000_000.0
ROOT = Path(__file__).resolve().parents[2]
FLEET = ((1, 2), (1, 2), (0, 2))
"""(slots held, tokens spent) per process: 2 slots in flight in the processes, 6 tokens spent."""


@contextmanager
def running_fleet(db: Path) -> Iterator[SqliteSharedLimits]:
    """Three processes of :data:`FLEET` publishing their readings, plus one lease taken by a holder that
    publishes nothing (a process without a journal): the store counts 3 in flight where the processes
    report 2. Yields the store (on the frozen clock); stops the processes at the end."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.web.limit_fleet", str(db), str(hold), str(spend)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for hold, spend in FLEET
    ]
    store = SqliteSharedLimits(db, clock=FakeClock(wall_start=FROZEN_WALL))
    try:
        for proc in procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # bounded: the process prints at once or dies (EOF)
            assert line.startswith('{"ready"'), f"a fleet process failed to start: {line!r}"
        assert store.take("payments-db", 4, "silent-holder", 3600.0)
        for proc in procs:  # publish again now that the whole fleet holds its slots
            assert proc.stdin is not None and proc.stdout is not None
            proc.stdin.write("publish\n")
            proc.stdin.flush()
            assert proc.stdout.readline().startswith('{"published": 3'), "a fleet process did not publish"
        yield store
    finally:
        for proc in procs:
            if proc.stdin is not None:
                proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        store.close()


def main(db: Path, hold: int, spend: int) -> None:
    clock = FakeClock(wall_start=FROZEN_WALL)
    store = SqliteSharedLimits(db, clock=clock)
    bus = EventBus()
    shared = ConcurrencyLimiter(4, name="payments-db", shared=store, clock=clock, bus=bus)
    local = ConcurrencyLimiter(5, name="local-cache", clock=clock, bus=bus)
    rate = RateLimiter(10, burst=20, name="quotes-api", shared=store, clock=clock, bus=bus)
    named = Registry()
    policies = [
        Policy("payments-db", limiter=shared, bus=bus),
        Policy("local-cache", limiter=local, bus=bus),
        Policy("quotes-api", rate_limit=rate, bus=bus),
    ]
    for policy in policies:
        named.add_policy(policy)
    for _ in range(hold):
        shared.acquire()
        local.acquire()
    for _ in range(spend):
        rate.acquire()
    with JournalWriter(db, bus=bus, named=named, limits_interval=1.0) as writer:
        writer.publish_limits()
        print(json.dumps({"ready": os.getpid()}), flush=True)
        for _ in sys.stdin:  # until the test closes our stdin (or kills us)
            print(json.dumps({"published": writer.publish_limits()}), flush=True)
    store.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))
