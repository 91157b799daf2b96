"""Shared limits when their store goes away (``store.on_unavailable``) and a release on an event loop.

A real redis-server is started for each test and killed mid-run; time on the limiter's side is a
FakeClock (the store is asked again ``RECHECK_SECONDS`` after a failure, on that clock).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence

import pytest

from bounceback import ConcurrencyLimiter, RateLimiter
from bounceback.core.strategies import MemorySharedLimits
from bounceback.core.strategies._shared import RECHECK_SECONDS
from bounceback.errors import ConcurrencyLimitExceeded, ConfigError, RateLimitExceeded
from bounceback.stores import RedisSharedLimits, SqliteSharedLimits, shared_limits_from_settings
from bounceback.testing import FakeClock
from tests.redis_server import RedisServer


def test_fail_open_concurrency_runs_under_the_local_limit_and_rejoins_the_fleet(
    own_redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    store = RedisSharedLimits(own_redis_server.url, timeout=0.5)
    limiter = ConcurrencyLimiter(2, name="db", shared=store, clock=clock)
    with limiter:
        assert store.holders("db") == 1
    own_redis_server.kill()
    with caplog.at_level(logging.WARNING, "bounceback.limits"):
        for _ in range(5):  # one warning per outage, not per call
            with limiter:
                assert limiter.in_flight == 1
    assert [r for r in caplog.records if "unavailable" in r.getMessage()].__len__() == 1
    snap = limiter.snapshot()
    assert snap["store_unavailable"] is True and snap["fleet_in_flight"] is None
    # Held locally during the outage: the local limit still bounds the process.
    limiter.acquire()
    limiter.acquire()
    with pytest.raises(ConcurrencyLimitExceeded):
        limiter.acquire()
    limiter.release()
    limiter.release()
    own_redis_server.restart()
    clock.advance(RECHECK_SECONDS)
    with limiter:
        assert store.holders("db") == 1  # back in the fleet: a lease again
    assert limiter.snapshot()["store_unavailable"] is False
    store.close()


def test_fail_closed_concurrency_refuses_while_the_store_is_away(own_redis_server: RedisServer) -> None:
    clock = FakeClock()
    store = shared_limits_from_settings(
        {
            "store.backend": "redis",
            "store.redis_url": own_redis_server.url,
            "store.on_unavailable": "fail-closed",
        }
    )
    limiter = ConcurrencyLimiter(2, name="db", shared=store, clock=clock)
    with limiter:
        pass
    own_redis_server.kill()
    for _ in range(3):  # the failing call, then calls while the store is left alone
        with pytest.raises(ConcurrencyLimitExceeded) as caught:
            limiter.acquire()
        assert caught.value.reason == "store unavailable"
        assert "fail-closed" in str(caught.value)
        assert limiter.in_flight == 0  # the local slot went back
    assert limiter.rejected == 3
    own_redis_server.restart()
    clock.advance(RECHECK_SECONDS)
    with limiter:
        assert store.holders("db") == 1
    store.close()


def test_fail_closed_rate_limit_refuses_with_the_time_until_the_store_is_asked_again(
    own_redis_server: RedisServer,
) -> None:
    clock = FakeClock()
    store = RedisSharedLimits(own_redis_server.url, timeout=0.5, on_unavailable="fail-closed", clock=clock)
    limiter = RateLimiter(100, burst=5, name="api", shared=store, clock=clock)
    limiter.acquire()
    assert limiter.snapshot()["fleet_tokens"] == 4.0  # read from the store: the fleet's bucket
    own_redis_server.kill()
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.acquire()
    assert caught.value.reason == "store unavailable"
    assert caught.value.retry_after == pytest.approx(RECHECK_SECONDS)
    clock.advance(0.25)
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.acquire()
    assert caught.value.retry_after == pytest.approx(RECHECK_SECONDS - 0.25)
    assert limiter.snapshot()["fleet_tokens"] is None
    own_redis_server.restart()
    clock.advance(RECHECK_SECONDS)
    limiter.acquire()  # the new server's bucket is full
    assert limiter.snapshot()["store_unavailable"] is False
    store.close()


def test_fail_open_rate_limit_uses_the_local_bucket(own_redis_server: RedisServer) -> None:
    clock = FakeClock()
    store = RedisSharedLimits(own_redis_server.url, timeout=0.5)
    limiter = RateLimiter(10, burst=2, name="api", shared=store, clock=clock)
    own_redis_server.kill()
    limiter.acquire()
    limiter.acquire()
    with pytest.raises(RateLimitExceeded) as caught:
        limiter.acquire()
    assert caught.value.reason == "no token"  # this process's own bucket, burst 2
    store.close()


def test_an_explicit_choice_overrides_the_store_and_bad_values_name_the_field(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="store_unavailable"):
        ConcurrencyLimiter(2, shared=MemorySharedLimits(), store_unavailable="closed")
    with pytest.raises(ConfigError, match=r"store\.on_unavailable"):
        shared_limits_from_settings({"store.backend": "memory", "store.on_unavailable": "nope"})
    store = SqliteSharedLimits(f"{tmp_path}/x.db", on_unavailable="fail-closed")
    assert (
        RateLimiter(1, shared=store, store_unavailable="fail-open").snapshot()["store_unavailable"] is False
    )
    store.close()


class _SlowGiveBack(MemorySharedLimits):
    """A store whose give_back blocks until the test lets it go (a slow round trip)."""

    def __init__(self) -> None:
        super().__init__()
        self.entered = threading.Event()
        self.let_go = threading.Event()
        self.done = threading.Event()
        self.thread: str | None = None

    def give_back(self, key: str, holder: str) -> None:
        self.thread = threading.current_thread().name
        self.entered.set()
        assert self.let_go.wait(10), "the test never let the give-back go"
        super().give_back(key, holder)
        self.done.set()

    def renew(self, key: str, holders: Sequence[str], lease: float) -> int:
        return super().renew(key, holders, lease)


def test_release_on_an_event_loop_hands_the_lease_to_the_keeper_thread() -> None:
    store = _SlowGiveBack()
    limiter = ConcurrencyLimiter(1, name="db", shared=store)

    async def main() -> list[str]:
        seen: list[str] = []
        async with limiter:
            assert store.holders("db") == 1
        seen.append("released")  # reached while the store's give-back is still blocked
        # The loop keeps running other tasks meanwhile.
        await asyncio.sleep(0)
        seen.append(f"entered={store.entered.is_set()} done={store.done.is_set()}")
        return seen

    seen = asyncio.run(main())
    assert seen[0] == "released"
    assert "done=False" in seen[1]
    assert store.holders("db") == 1  # not given back yet: the keeper thread waits on the store
    store.let_go.set()
    assert store.done.wait(10)
    assert store.thread is not None and store.thread.startswith("bounceback-lease-")
    assert store.holders("db") == 0
    assert limiter._keeper is not None and limiter._keeper.given_back == 1


def test_release_off_a_loop_gives_back_at_once() -> None:
    store = MemorySharedLimits()
    limiter = ConcurrencyLimiter(1, name="db", shared=store)
    with limiter:
        assert store.holders("db") == 1
    assert store.holders("db") == 0


def test_prometheus_leaves_out_a_shared_bucket_it_cannot_read(own_redis_server: RedisServer) -> None:
    from prometheus_client import CollectorRegistry

    from bounceback import Policy
    from bounceback.events import EventBus, Registry
    from bounceback.integrations import PrometheusExporter

    clock = FakeClock()
    store = RedisSharedLimits(own_redis_server.url, timeout=0.5, clock=clock)
    reg, named, bus = CollectorRegistry(), Registry(), EventBus()
    limiter = ConcurrencyLimiter(3, name="db", shared=store, clock=clock, bus=bus)
    bucket = RateLimiter(10, burst=5, name="api", shared=store, clock=clock, bus=bus)
    policy = Policy("op", limiter=limiter, rate_limit=bucket, clock=clock, bus=bus)
    named.add_policy(policy)
    exporter = PrometheusExporter(reg, bus=bus, breakers=named)
    bucket.acquire()
    rate, lim = {"limiter": "api", "shared": "true"}, {"limiter": "db", "shared": "true"}
    assert reg.get_sample_value("bounceback_rate_limit_tokens", rate) == 4
    own_redis_server.kill()
    clock.advance(RECHECK_SECONDS)
    assert reg.get_sample_value("bounceback_rate_limit_tokens", rate) is None  # not the local bucket's 5
    assert reg.get_sample_value("bounceback_limiter_fleet_in_flight_calls", {"limiter": "db"}) is None
    assert reg.get_sample_value("bounceback_limiter_max_in_flight", lim) == 3  # the limit is still known
    exporter.close()
    store.close()
