"""A batched breaker on a Sentinel-managed Redis whose primary is killed mid-load (real processes)."""

from __future__ import annotations

import pytest

from bounceback import CircuitBreaker, CircuitOpenError, StoreError
from bounceback.core._events import StoreRecovered, StoreUnavailable
from bounceback.core.breaker._batched import BatchedBreakerStore
from bounceback.core.breaker._store import SharedState, WindowSpec
from bounceback.events import EventBus
from bounceback.stores import RedisBreakerStore
from bounceback.testing import FakeClock, RecordingSink
from tests.redis_sentinel import RedisSentinel

SPEC = WindowSpec("count", 10_000)


def _flushed(store: BatchedBreakerStore) -> bool:
    try:
        store.flush()
    except StoreError:
        return False
    return True


def test_a_killed_primary_fails_open_loses_nothing_acknowledged_and_catches_up(
    redis_sentinel: RedisSentinel,
) -> None:
    clock, bus = FakeClock(), EventBus()
    events = RecordingSink(bus)
    inner = RedisBreakerStore(redis_sentinel.url, timeout=0.3)
    assert inner.name == "redis+sentinel://bbprimary"
    batched = BatchedBreakerStore(inner, monotonic=clock.monotonic, background=False, staleness=1.0)

    def make() -> CircuitBreaker:
        return CircuitBreaker(
            "payments", store=batched, clock=clock, bus=bus, timers=False, window=10_000, min_calls=50,
            store_retry_seconds=5, store_unavailable="fail-open",
        )  # fmt: skip

    brk = make()
    # Another process's view, kept fresh by push alone (no flusher, virtual time): its feed must follow the
    # Sentinels to the promoted replica.
    other = BatchedBreakerStore(
        RedisBreakerStore(redis_sentinel.url, timeout=0.3), monotonic=clock.monotonic, background=False,
        staleness=3600,
    )  # fmt: skip
    watcher = CircuitBreaker(
        "payments", store=other, clock=clock, bus=EventBus(), timers=False, sync_seconds=1
    )
    watcher.call(lambda: None)
    for _ in range(1000):
        brk.call(lambda: None)
    batched.flush()
    old = redis_sentinel.primary()
    # Replication is asynchronous: what the replica has not received when the primary dies is lost. Here
    # the test waits for it, so the count below is exact; in production that is at most the last flush.
    redis_sentinel.client(old).execute_command("WAIT", 1, 2000)
    assert redis_sentinel.kill_primary() == old

    for _ in range(500):  # within store.staleness: calls go on from the cache, nothing waits on Redis
        brk.call(lambda: None)
    assert not _flushed(batched)  # the flusher cannot reach a primary: the batch is kept
    assert not events.of(StoreUnavailable)
    clock.advance(1.5)  # older than store.staleness: the breaker is told, and fails open
    ran = []
    for _ in range(200):
        brk.call(lambda: ran.append(1))
    assert len(ran) == 200 and len(events.of(StoreUnavailable)) == 1

    redis_sentinel.wait(lambda: redis_sentinel.primary() != old, "the Sentinels to promote the replica")
    clock.advance(5)  # store_retry_seconds later the breaker asks again ...
    redis_sentinel.wait(lambda: _flushed(batched), "the kept batch to reach the new primary")
    brk.call(lambda: None)  # ... and finds a cache the flusher has just refreshed
    assert len(events.of(StoreRecovered)) == 1
    batched.flush()
    # 1000 replicated + 500 kept while the primary was gone + 1 after; the 200 made while the breaker ran
    # on local state stayed local (documented: not merged back).
    assert inner.counts("payments", SPEC, clock.wall()).calls == 1501

    # State caught up: a change made through the new primary is pushed to the other process.
    brk.force_open("failover drill")
    redis_sentinel.wait(
        lambda: (other.load("payments") or SharedState("closed", 0, 0.0)).state == "forced_open",
        "the force-open to be pushed to the other process through the new primary",
    )
    assert other.flushes == 0  # no flush or refresh brought it: the push did
    with pytest.raises(CircuitOpenError) as refused:
        watcher.call(lambda: None)  # its next call refuses: the push handed the state to the breaker
    assert refused.value.state == "forced_open"
    other.close()
    batched.close()
