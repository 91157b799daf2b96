"""A shared breaker on a real 3-primary Redis Cluster with replicas, through a CLUSTER FAILOVER and a killed primary."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bounceback import CircuitBreaker, CircuitOpenError, StoreError
from bounceback.core._events import StoreRecovered, StoreUnavailable
from bounceback.core.breaker._batched import BatchedBreakerStore
from bounceback.core.breaker._store import SharedState, WindowSpec
from bounceback.events import EventBus
from bounceback.stores import RedisBreakerStore, breaker_store_from_settings
from bounceback.testing import FakeClock, RecordingSink
from tests.redis_cluster import RedisCluster

SPEC = WindowSpec("count", 1000)


def _down() -> None:
    raise ConnectionError("down")


def test_a_batched_breaker_works_on_a_cluster_and_through_a_failover(redis_cluster: RedisCluster) -> None:
    clock = FakeClock()
    store = breaker_store_from_settings({"store.backend": "redis", "store.redis_url": redis_cluster.url})
    assert isinstance(store, BatchedBreakerStore) and store.name.startswith("redis+cluster://")
    store.close()  # this test drives the flushes itself
    inner = RedisBreakerStore(redis_cluster.url)
    batched = BatchedBreakerStore(inner, monotonic=clock.monotonic, background=False)
    brk = CircuitBreaker(
        "orders api", store=batched, clock=clock, bus=EventBus(), timers=False, window=1000, min_calls=50,
        failure_rate=50, half_open_calls=1, open_seconds=10,
    )  # fmt: skip
    for _ in range(300):
        brk.call(lambda: None)
    batched.flush()
    assert inner.counts("orders api", SPEC, clock.wall()).calls == 300

    # A coordinated failover of the primary that holds the breaker's slot (all its keys share one slot).
    primary = redis_cluster.primary_of("bounceback:breaker:{orders api}")
    replica = redis_cluster.replica_of(primary)
    redis_cluster.failover(replica)
    assert redis_cluster.role(replica) == "master"  # the old primary follows it as a replica

    for _ in range(200):
        brk.call(lambda: None)
    for _ in range(3):  # the first call after the move may fail (the client then re-reads the slot map)
        try:
            batched.flush()
            break
        except StoreError:  # retried, as the flusher would
            continue
    assert batched.pending("orders api") == 0
    assert inner.counts("orders api", SPEC, clock.wall()).calls == 500  # nothing lost, nothing twice

    # Still a breaker: it opens, lets exactly one probe through, and closes, on the new primary.
    for _ in range(600):
        try:
            brk.call(_down)
        except ConnectionError:
            pass
        except CircuitOpenError:
            break
    assert brk.state_name == "open"
    clock.advance(10)
    assert brk.call(lambda: "probe") == "probe"
    assert brk.state_name == "closed"
    state = inner.load("orders api")
    assert state is not None and state.state == "closed" and state.version == 3


def test_a_cluster_url_is_checked() -> None:
    with pytest.raises(ValueError, match=r"store\.redis_url"):
        RedisBreakerStore("redis+cluster://127.0.0.1")


def test_a_killed_primary_costs_nothing_acknowledged_and_the_breaker_and_push_go_on(
    redis_cluster: RedisCluster,
) -> None:
    clock, bus = FakeClock(), EventBus()
    events = RecordingSink(bus)
    inner = RedisBreakerStore(redis_cluster.url, timeout=0.3)
    batched = BatchedBreakerStore(inner, monotonic=clock.monotonic, background=False, staleness=1.0)
    brk = CircuitBreaker(
        "ledger api", store=batched, clock=clock, bus=bus, timers=False, window=1000, min_calls=50,
        failure_rate=50, store_retry_seconds=5, store_unavailable="fail-open",
    )  # fmt: skip
    # Another process's view of the same breaker, kept fresh by push only (no flusher, time stands still).
    watcher_store = BatchedBreakerStore(
        RedisBreakerStore(redis_cluster.url, timeout=0.3), monotonic=clock.monotonic, background=False,
        staleness=3600,
    )  # fmt: skip
    watcher = CircuitBreaker("ledger api", store=watcher_store, clock=clock, bus=EventBus(), timers=False)
    try:
        for _ in range(300):
            brk.call(lambda: None)
        watcher.call(lambda: None)
        batched.flush()
        primary = redis_cluster.primary_of("bounceback:breaker:{ledger api}")
        replica = redis_cluster.replica_of(primary)
        # Replication is asynchronous: a batch the replica had not received when its primary died is lost
        # (at most the last flush). The test waits for it, so the count below is exact.
        redis_cluster.client(primary).execute_command("WAIT", 1, 2000)
        redis_cluster.kill(primary)

        for _ in range(200):  # within store.staleness: calls go on from the cache, none waits on Redis
            brk.call(lambda: None)
        assert not _flushed(batched)  # the batch is kept for later
        clock.advance(1.5)  # past store.staleness: the breaker is told and fails open
        ran = []
        for _ in range(100):
            brk.call(lambda: ran.append(1))
        assert len(ran) == 100 and len(events.of(StoreUnavailable)) == 1

        redis_cluster.wait_promoted(replica, primary)
        clock.advance(5)  # store_retry_seconds later the breaker asks the store again ...
        # The client re-reads the slot map after a failed call: the flusher's next rounds find the new primary.
        _wait_until(lambda: _flushed(batched), "the kept batch to reach the promoted replica")
        brk.call(lambda: None)  # ... and finds a cache the flusher has just refreshed: it rejoins the store
        assert len(events.of(StoreRecovered)) == 1
        batched.flush()
        # 300 replicated + 200 kept while no primary answered + 1 after; the 100 made while the breaker ran
        # on local state stayed local (documented: not merged back). Nothing counted twice.
        assert inner.counts("ledger api", SPEC, clock.wall()).calls == 501

        # The state still reaches the other process by push, through its re-made subscription.
        feed: Any = watcher_store._feed
        brk.force_open("after the failover")
        _wait_until(
            lambda: (
                (watcher_store.load("ledger api") or SharedState("closed", 0, 0.0)).state == "forced_open"
            ),
            "the force-open to be pushed to the other process",
        )
        assert feed.subscriptions >= 1 and watcher_store.flushes == 0
        clock.advance(1)
        with pytest.raises(CircuitOpenError):
            watcher.call(lambda: None)
    finally:
        batched.close()
        watcher_store.close()


def _flushed(store: BatchedBreakerStore) -> bool:
    try:
        store.flush()
    except StoreError:
        return False
    return True


def _wait_until(check: Any, what: str, timeout: float = 60.0) -> None:
    """Poll ``check`` while real server processes elect a new primary (bounded; never a timing assert)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)
