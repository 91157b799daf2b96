"""A fleet of processes on one batched shared breaker: exact counts, a fleet-wide trip within two flush rounds.

Sizes: 8 processes x 2,000 successes (then failures until refused) in CI; ``BOUNCEBACK_SOAK=full`` runs
the issue's 32 x 20,000.

Real worker processes (spawn) on a real redis-server (and a real SQLite file); each flushes its outcomes in
batches, in rounds the test drives (one tick = one flush interval, see :mod:`tests.stores.fleet_workers`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bounceback.core.breaker._store import WindowSpec
from bounceback.stores import RedisBreakerStore, SqliteBreakerStore
from tests.redis_server import RedisServer
from tests.stores import fleet_workers as fw
from tests.stores import shared_workers as w
from tests.stores.shared_scenarios import CTX, collect, wait_for

N_PROCS = 32 if fw.FULL else 8
N_OK = 20_000 if fw.FULL else 2_000
SPEC = WindowSpec(fw.WINDOW_TYPE, float(fw.WINDOW) if fw.FULL else fw.WINDOW)


def run_fleet(kind: str, target: str) -> None:
    cell = CTX.RawValue("d", 0.0)
    clock = w.SharedClock(cell)
    tick = CTX.RawValue("i", 0)
    rounds = CTX.Value("i", 0)
    shared: dict[str, Any] = {
        "phase": CTX.RawValue("i", 1),
        "ready": CTX.RawArray("i", N_PROCS),
        "seen_open": CTX.RawArray("i", [-1] * N_PROCS),
        "pending": CTX.RawArray("i", [-1] * N_PROCS),
        "ran": CTX.Value("i", 0),
        "release": CTX.Event(),
    }
    out = CTX.Queue()
    procs = [
        CTX.Process(
            target=fw.fleet_worker, args=(kind, target, cell, tick, rounds, i, N_OK, shared, out), daemon=True
        )
        for i in range(N_PROCS)
    ]
    for p in procs:
        p.start()
    # The test's own reads may queue behind the fleet's batches on a busy machine: a patient client.
    store = (
        RedisBreakerStore(target, timeout=10.0)
        if kind == "redis"
        else SqliteBreakerStore(target, timeout=10.0)
    )

    def alive() -> bool:
        return all(p.is_alive() for p in procs)

    def next_round() -> None:
        """One flush interval: time moves by it, and every process's flusher runs exactly one round."""
        clock.advance(fw.FLUSH_SECONDS)
        tick.value += 1
        goal = N_PROCS * (tick.value + 1)
        wait_for(lambda: rounds.value >= goal or not alive(), f"flush round {tick.value} of every process")
        if not alive():
            reports = []
            while not out.empty():
                reports.append(out.get())
            pytest.fail(f"a worker process died: {reports}")

    try:
        # Every flusher has started (each reported its round 0) before the first tick.
        wait_for(lambda: rounds.value >= N_PROCS or not alive(), "every worker's flusher to start", 60)
        while not all(shared["ready"][i] == 1 for i in range(N_PROCS)):
            next_round()
            assert tick.value < 100_000
        next_round()  # the round after the last success: everything is sent
        counts = store.counts("fleet", SPEC, clock.wall())
        assert (counts.calls, counts.failures) == (N_PROCS * N_OK, 0)  # every success counted once

        shared["phase"].value = 2
        crossed = None
        while not all(shared["ready"][i] == 2 for i in range(N_PROCS)):
            next_round()
            counts = store.counts("fleet", SPEC, clock.wall())
            state = store.load("fleet")
            if crossed is None and (
                (counts.calls >= fw.MIN_CALLS and 2 * counts.failures >= counts.calls)
                or (state is not None and state.state != "closed")
            ):
                crossed = tick.value  # the round after which the store's window (or state) says open
            assert crossed is None or tick.value <= crossed + 10, "the fleet did not stop calling"
        assert crossed is not None
        seen = list(shared["seen_open"])
        # Every process's cache held the open state within two flush rounds of the threshold being crossed.
        if not all(0 <= s <= crossed + 2 for s in seen):
            shared["release"].set()
            shared["phase"].value = 3
            pytest.fail(
                f"crossed after round {crossed}; seen open at rounds {seen}: {collect(out, N_PROCS, procs)}"
            )
        state = store.load("fleet")
        assert state is not None and (state.state, state.version) == ("open", 1)  # opened once
        next_round()  # sends what the processes recorded before they saw the open state
        for _ in range(20):  # a flush that timed out under load is resent in a later round
            if not any(shared["pending"]):
                break
            next_round()
        assert not any(shared["pending"]), list(shared["pending"])
        after_failures = store.counts("fleet", SPEC, clock.wall())

        clock.advance(30.0)  # the open time is over for everyone
        next_round()
        shared["phase"].value = 3
        ran = shared["ran"]
        wait_for(lambda: ran.value % 1000 + ran.value // 1000 == N_PROCS, "every process to try a call")
        assert ran.value % 1000 == fw.HALF_OPEN_CALLS  # exactly half_open_calls probes, fleet-wide
        assert store.probes("fleet", clock.wall()) == fw.HALF_OPEN_CALLS
        shared["release"].set()  # the workers close their stores: a last flush each, without a tick
        results = collect(out, N_PROCS, procs)
    finally:
        shared["release"].set()
        for p in procs:
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in results if "error" in r]
    assert not errors, errors[0]
    assert all(r["refused"] == "open" for r in results), [r["refused"] for r in results]
    assert sum(r["own_opens"] for r in results) == 1  # one process opened it; the others adopted it
    # Exactly once: the window holds every outcome every process recorded, no more, no less.
    assert after_failures.calls == sum(r["phase2"][0] for r in results)
    assert after_failures.failures == sum(r["phase2"][1] for r in results)
    assert 2 * after_failures.failures >= after_failures.calls
    assert sorted(r["outcome"] for r in results).count("probe") == fw.HALF_OPEN_CALLS
    # Store calls follow flush rounds, not calls: one per round, more only to slice a flood of failures
    # (one run per failure, MAX_RUNS a call); a call that timed out under load was resent, not lost.
    calls_made = sum(r["phase2"][0] for r in results)
    flushes = sum(r["flushes"] for r in results)
    assert flushes < calls_made / 100, (flushes, calls_made)


@pytest.mark.soak
def test_a_fleet_on_one_redis_breaker_counts_exactly_and_trips_within_two_flushes(
    redis_server: RedisServer,
) -> None:
    run_fleet("redis", redis_server.url)


@pytest.mark.soak
def test_a_fleet_on_one_sqlite_breaker_counts_exactly_and_trips_within_two_flushes(tmp_path: Path) -> None:
    run_fleet("sqlite", str(tmp_path / "fleet.db"))
