"""Load: a soak through policy + breaker + journal (memory stays flat, no journal entry lost), and many
callers at once through one policy (asyncio tasks and threads): every count adds up.

Sizes: ``BOUNCEBACK_SOAK=full`` runs a million calls; the default (CI) size is 100,000.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from bounceback import Backoff, CircuitBreaker, Policy
from bounceback.events import (
    AttemptFailed,
    Event,
    EventBus,
    RecoveryExhausted,
    RecoverySucceeded,
    RetryScheduled,
)
from bounceback.stores.journal._journal import Journal
from bounceback.stores.journal._writer import JournalWriter
from bounceback.testing import FakeClock
from tests.reliability.conftest import Figures, soak_size

NO_WAIT = Backoff(initial=0.001, max_delay=0.01, jitter="none")


class Blip(ConnectionError):
    """A transient failure."""


def _rss_kib() -> int:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


class Tally:
    """A bus subscriber counting events by type (thread-safe)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.counts[type(event).__name__] += 1


@pytest.mark.soak
def test_soak_policy_breaker_journal(home: Path, figures: Callable[[str], Figures]) -> None:
    fig = figures("soak-policy-breaker-journal")
    total = soak_size(100_000, 1_000_000)
    recover_every, give_up_every = 50, 1000  # 2 % of calls fail once; 0.1 % fail for good
    clock, bus = FakeClock(), EventBus()
    tally = Tally()
    bus.subscribe(tally)
    db = home / "bounceback.db"
    breaker = CircuitBreaker("soak-dep", window=100, min_calls=20, failure_rate=50, clock=clock, bus=bus)
    policy = Policy("soak", attempts=3, backoff=NO_WAIT, breaker=breaker, clock=clock, bus=bus, fallback=None)
    state = {"n": 0, "left": 0}

    def work() -> int:
        if state["left"]:
            state["left"] -= 1
            raise Blip("reset by peer")
        return 1

    def one(i: int) -> None:
        if i % give_up_every == 0:
            state["left"] = 3
        elif i % recover_every == 0:
            state["left"] = 1
        policy.call(work)
        state["left"] = 0

    writer = JournalWriter(db, bus=bus, clock=clock, flush_interval=0.02).start()
    try:
        half = total // 2
        gc.collect()
        rss_start = _rss_kib()
        started = time.perf_counter()
        for i in range(1, half + 1):
            one(i)
        plain_seconds = time.perf_counter() - started
        writer.flush()
        gc.collect()
        rss_half = _rss_kib()
        # Second half under tracemalloc: what stays allocated must not grow with the number of calls.
        tracemalloc.start()
        base, _ = tracemalloc.get_traced_memory()
        checkpoints = []
        step = (total - half) // 4
        for i in range(half + 1, total + 1):
            one(i)
            if (i - half) % step == 0:
                writer.flush()
                gc.collect()
                checkpoints.append(tracemalloc.get_traced_memory()[0] - base)
        tracemalloc.stop()
        writer.flush()
        gc.collect()
        rss_end = _rss_kib()
    finally:
        writer.close()
    runs_expected = sum(1 for i in range(1, total + 1) if i % recover_every == 0 or i % give_up_every == 0)
    gave_up_expected = total // give_up_every
    events = sum(
        tally.counts[n] for n in ("AttemptFailed", "RetryScheduled", "RecoverySucceeded", "RecoveryExhausted")
    )
    assert tally.counts["RecoverySucceeded"] == runs_expected - gave_up_expected
    assert tally.counts["RecoveryExhausted"] == gave_up_expected
    assert writer.written >= events  # every event reached the database (breaker events, if any, add)
    journal = Journal(db)
    counts = journal.counts()["soak"]
    journal.close()
    lost = runs_expected - counts.runs
    assert counts.recovered == runs_expected - gave_up_expected
    assert counts.gave_up == gave_up_expected
    assert lost == 0
    growth = max(checkpoints) - checkpoints[0]
    assert growth < 512 * 1024, (
        f"traced memory grew by {growth} bytes over {total - half} calls: {checkpoints}"
    )
    assert rss_end - rss_half < 16 * 1024, (rss_start, rss_half, rss_end)
    throughput = half / plain_seconds
    fig.tries = total
    fig.lost = lost
    fig.result = (
        f"{total:,} calls, {runs_expected:,} recoveries journalled ({gave_up_expected:,} gave up), all found; "
        f"traced memory {growth / 1024:+.0f} KiB over the last {total - half:,} calls, "
        f"RSS {(rss_end - rss_half) / 1024:+.1f} MiB; {throughput:,.0f} calls/s"
    )
    fig.note(
        calls=total,
        runs=runs_expected,
        events_written=writer.written,
        traced_growth_bytes=growth,
        rss_start_kib=rss_start,
        rss_half_kib=rss_half,
        rss_end_kib=rss_end,
        calls_per_second=round(throughput),
    )


@pytest.mark.soak
def test_ten_thousand_concurrent_asyncio_calls(home: Path, figures: Callable[[str], Figures]) -> None:
    fig = figures("concurrency-asyncio")
    tasks_n = 10_000
    clock, bus = FakeClock(), EventBus()
    tally = Tally()
    bus.subscribe(tally)
    breaker = CircuitBreaker("async-dep", window=1000, min_calls=100, clock=clock, bus=bus)
    policy = Policy("async-load", attempts=4, backoff=NO_WAIT, breaker=breaker, clock=clock, bus=bus)
    attempts = Counter[str]()
    in_flight = [0, 0]

    async def work(i: int) -> int:
        attempts["all"] += 1
        in_flight[0] += 1
        in_flight[1] = max(in_flight[1], in_flight[0])
        try:
            await asyncio.sleep(0)  # every call is suspended mid-flight, so all 10,000 overlap
            if i % 7 == 0 and attempts[f"t{i}"] < 1:
                attempts[f"t{i}"] += 1
                raise Blip("reset by peer")
            return i
        finally:
            in_flight[0] -= 1

    async def main() -> list[int]:
        return await asyncio.gather(*(policy.acall(work, i) for i in range(tasks_n)))

    db = home / "bounceback.db"
    with JournalWriter(db, bus=bus, clock=clock, flush_interval=0.02):
        results = asyncio.run(main())
    assert results == list(range(tasks_n))
    flaky = len(range(0, tasks_n, 7))
    assert attempts["all"] == tasks_n + flaky
    assert tally.counts["AttemptFailed"] == flaky
    assert tally.counts["RecoverySucceeded"] == flaky
    assert tally.counts["RecoveryExhausted"] == 0
    assert in_flight[1] >= tasks_n // 2
    journal = Journal(db)
    counts = journal.counts()["async-load"]
    journal.close()
    assert (counts.runs, counts.recovered, counts.failed_attempts) == (flaky, flaky, flaky)
    fig.tries = tasks_n
    fig.result = (
        f"{tasks_n:,} tasks (up to {in_flight[1]:,} in flight): {tasks_n:,} results, {attempts['all']:,} attempts "
        f"= calls + {flaky:,} retries; journal holds all {flaky:,} runs"
    )


@pytest.mark.soak
def test_sixteen_threads_through_one_policy(home: Path, figures: Callable[[str], Figures]) -> None:
    fig = figures("concurrency-threads")
    threads_n, per_thread = 16, soak_size(2_000, 20_000)
    clock, bus = FakeClock(), EventBus()
    tally = Tally()
    bus.subscribe(tally)
    breaker = CircuitBreaker("thread-dep", window=1000, min_calls=100, clock=clock, bus=bus)
    policy = Policy("thread-load", attempts=3, backoff=NO_WAIT, breaker=breaker, clock=clock, bus=bus)
    local = threading.local()
    lock = threading.Lock()
    attempts = [0]
    results: list[int] = []
    errors: list[BaseException] = []

    def work(i: int) -> int:
        with lock:
            attempts[0] += 1
        if i % 10 == 0 and not getattr(local, "failed", False):
            local.failed = True
            raise Blip("reset by peer")
        local.failed = False
        return i

    def worker(t: int) -> None:
        mine = []
        for j in range(per_thread):
            local.failed = False
            try:
                mine.append(policy.call(work, t * per_thread + j))
            except BaseException as exc:
                errors.append(exc)
        with lock:
            results.extend(mine)

    db = home / "bounceback.db"
    with JournalWriter(db, bus=bus, clock=clock, flush_interval=0.02):
        threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    total = threads_n * per_thread
    flaky = total // 10
    assert errors == []
    assert sorted(results) == list(range(total))
    assert attempts[0] == total + flaky
    assert tally.counts["AttemptFailed"] == flaky
    assert tally.counts["RecoverySucceeded"] == flaky
    journal = Journal(db)
    counts = journal.counts()["thread-load"]
    journal.close()
    assert (counts.runs, counts.recovered, counts.failed_attempts) == (flaky, flaky, flaky)
    metrics = breaker.metrics()
    assert metrics.state == "closed" and metrics.calls <= 1000
    fig.tries = total
    fig.result = (
        f"{threads_n} threads x {per_thread:,} calls: {total:,} results, {attempts[0]:,} attempts = "
        f"calls + {flaky:,} retries; {flaky:,} recoveries in events and journal"
    )


# Keep the names used only as types from looking unused to linters.
_ = (AttemptFailed, RecoveryExhausted, RecoverySucceeded, RetryScheduled)
