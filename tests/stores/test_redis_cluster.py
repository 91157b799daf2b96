"""A shared breaker on a real 3-primary Redis Cluster with replicas, through a CLUSTER FAILOVER."""

from __future__ import annotations

import pytest

from bounceback import CircuitBreaker, CircuitOpenError, StoreError
from bounceback.core.breaker._batched import BatchedBreakerStore
from bounceback.core.breaker._store import WindowSpec
from bounceback.events import EventBus
from bounceback.stores import RedisBreakerStore, breaker_store_from_settings
from bounceback.testing import FakeClock
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
