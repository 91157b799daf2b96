"""Concurrency and rate limits shared by processes, on a real SQLite file and a real redis-server.

Real worker processes (spawned) share one store; the test checks, from outside, what the issue asks:
never more than N calls in flight across the fleet, a SIGKILLed holder's slots back after its lease, and
a fleet's admitted calls never above ``rate x time + burst``.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounceback import ConcurrencyLimiter, Policy, RateLimiter
from bounceback.core.strategies import MemorySharedLimits
from bounceback.errors import ConcurrencyLimitExceeded, ConfigError, RateLimitExceeded
from bounceback.stores import (
    RedisSharedLimits,
    SqliteSettings,
    SqliteSharedLimits,
    shared_limits_from_settings,
)
from bounceback.testing import FakeClock
from tests.redis_server import RedisServer
from tests.stores import limit_workers as lw
from tests.stores.shared_scenarios import CTX, wait_for
from tests.stores.shared_workers import SharedClock

Maker = Callable[[Any], Any]


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """``(kind, target)``: a SQLite file, or the URL of a running redis-server (flushed)."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "limits.db")
    server: RedisServer = request.getfixturevalue("redis_server")
    return "redis", server.url


def test_a_fleet_never_has_more_than_the_limit_in_flight(backend: tuple[str, str]) -> None:
    kind, target = backend
    limit, procs_n, calls = 3, 4, 15
    gauge, peak, out = CTX.Value("i", 0), CTX.Value("i", 0), CTX.Queue()
    procs = [
        CTX.Process(target=lw.concurrency_worker, args=(kind, target, limit, calls, gauge, peak, out))
        for _ in range(procs_n)
    ]
    for p in procs:
        p.start()
    try:
        reports = [out.get(timeout=120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in reports if "error" in r]
    assert not errors, errors[0]
    assert sum(r["rejected"] for r in reports) == 0  # every call waited its turn and ran
    assert 1 <= peak.value <= limit, peak.value  # 8 threads in 4 processes, never more than 3 inside
    assert gauge.value == 0
    assert lw.make_limits(kind, target).holders("fleet") == 0  # every lease given back


def test_a_killed_holders_slots_come_back_when_its_lease_runs_out(backend: tuple[str, str]) -> None:
    kind, target = backend
    ready = CTX.Event()
    holder = CTX.Process(target=lw.holder_worker, args=(kind, target, 2, ready))
    holder.start()
    try:
        assert ready.wait(60), "the holder process did not take its slots"
        assert holder.pid is not None
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(timeout=30)
    finally:
        if holder.is_alive():
            holder.kill()
    assert holder.exitcode == -signal.SIGKILL
    clock = FakeClock(wall_start=time.time())  # virtual time from now on: the lease runs out when we say
    limits = lw.make_limits(kind, target, clock)
    limiter = ConcurrencyLimiter(2, name="fleet", shared=limits, clock=clock, lease=lw.LEASE)
    with pytest.raises(ConcurrencyLimitExceeded) as refused:
        limiter.acquire()
    assert refused.value.reason == "full" and limiter.in_flight == 0  # the local slot was given back
    clock.advance(lw.LEASE - 1.0)
    with pytest.raises(ConcurrencyLimitExceeded):
        limiter.acquire()  # still within the dead holder's lease
    clock.advance(1.0)
    limiter.acquire()
    limiter.acquire()
    assert limits.holders("fleet") == 2
    limiter.release()
    limiter.release()
    assert limits.holders("fleet") == 0


def _limits(kind: str, target: str, clock: FakeClock) -> Any:
    return lw.make_limits(kind, target, clock)


def test_a_long_call_keeps_its_slot_by_renewing_its_lease(backend: tuple[str, str]) -> None:
    kind, target = backend
    clock = FakeClock()
    limits = _limits(kind, target, clock)
    long_call = ConcurrencyLimiter(1, name="renew", shared=limits, clock=clock, lease=3.0)
    other = ConcurrencyLimiter(1, name="renew", shared=_limits(kind, target, clock), clock=clock, lease=3.0)
    long_call.acquire()
    clock.advance(2.0)
    assert long_call.renew_leases() == 1
    clock.advance(2.0)  # 4 s after it was taken, 2 s after its renewal: still held
    with pytest.raises(ConcurrencyLimitExceeded):
        other.acquire()
    clock.advance(1.5)  # a stall longer than the lease: the slot goes to whoever asks
    other.acquire()
    assert long_call.renew_leases() == 0  # a lost lease is not brought back
    other.release()
    long_call.release()  # gives back a lease that is gone: harmless
    assert limits.holders("renew") == 0


def test_a_waiting_call_gets_the_fleet_slot_freed_meanwhile(backend: tuple[str, str]) -> None:
    kind, target = backend
    clock = FakeClock()
    first = ConcurrencyLimiter(1, name="q", shared=_limits(kind, target, clock), clock=clock)
    second = ConcurrencyLimiter(
        1, max_waiting=1, queue_timeout=1.0, name="q", shared=_limits(kind, target, clock), clock=clock
    )
    first.acquire()
    clock.on_sleep = lambda seconds: first.release() if clock.monotonic() >= 0.02 else None
    second.acquire()  # polls the store on the virtual clock until the first gives its slot back
    assert clock.sleeps and sum(clock.sleeps) < 1.0
    clock.on_sleep = None
    third = ConcurrencyLimiter(
        1, max_waiting=1, queue_timeout=0.5, name="q", shared=_limits(kind, target, clock), clock=clock
    )
    with pytest.raises(ConcurrencyLimitExceeded) as timed_out:
        third.acquire()
    assert timed_out.value.reason == "queue timeout"
    second.release()


def test_the_renewing_thread_renews_while_a_lease_is_held_and_ends_after() -> None:
    class Counting(MemorySharedLimits):
        renewals = 0

        def renew(self, key: str, holders: Any, lease: float) -> int:
            Counting.renewals += 1
            return super().renew(key, holders, lease)

    limits = Counting()
    limiter = ConcurrencyLimiter(1, name="thread", shared=limits, lease=0.15)
    with limiter:
        wait_for(lambda: Counting.renewals >= 2, "the lease to be renewed twice")
    assert limits.holders("thread") == 0
    wait_for(
        lambda: not any(t.name == "bounceback-lease-thread" for t in threading.enumerate()),
        "the renewing thread to end once nothing is held",
    )


def test_the_fleets_admitted_calls_never_exceed_rate_times_time_plus_burst(backend: tuple[str, str]) -> None:
    kind, target = backend
    rate, burst, step, steps, procs_n = 10.0, 5, 0.5, 6, 4
    cell, admitted, stop = CTX.RawValue("d", 0.0), CTX.Value("i", 0), CTX.Event()
    tries = CTX.Array("i", procs_n, lock=False)
    clock = SharedClock(cell)
    procs = [
        CTX.Process(target=lw.rate_worker, args=(kind, target, cell, rate, burst, admitted, tries, i, stop))
        for i in range(procs_n)
    ]
    for p in procs:
        p.start()
    try:
        wait_for(lambda: admitted.value == burst, "the fleet to take the burst", timeout=60)
        for n in range(1, steps + 1):
            clock.advance(step)
            due = burst + rate * step * n
            wait_for(lambda due=due: admitted.value >= due, "the fleet to take the new tokens")
        # Every process keeps trying a while longer: nobody may find a token the bucket does not have.
        seen = list(tries)
        wait_for(lambda: all(t >= s + 50 for t, s in zip(tries, seen, strict=True)), "more attempts")
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    assert admitted.value == burst + rate * step * steps  # exactly rate x time + burst, never more


def test_a_shared_rate_limit_refuses_with_the_fleets_hint_and_waits_in_order(
    backend: tuple[str, str],
) -> None:
    kind, target = backend
    clock = FakeClock()
    one = RateLimiter(2, burst=1, name="hint", clock=clock, shared=_limits(kind, target, clock))
    two = RateLimiter(2, burst=1, max_wait=1.0, name="hint", clock=clock, shared=_limits(kind, target, clock))
    one.try_acquire()
    with pytest.raises(RateLimitExceeded) as refused:
        one.try_acquire()
    assert refused.value.retry_after == pytest.approx(0.5)
    assert two.reserve(1.0) == pytest.approx(0.5)  # reserved: the next token is two's
    assert two.reserve(1.0) == pytest.approx(1.0)  # and the one after
    with pytest.raises(RateLimitExceeded) as later:
        one.try_acquire()
    assert later.value.retry_after == pytest.approx(1.5)
    assert (one.rejected, two.rejected) == (2, 0)


def test_a_store_that_fails_leaves_the_local_limits_in_charge(own_redis_server: RedisServer) -> None:
    limits = RedisSharedLimits(own_redis_server.url, timeout=0.5)
    limiter = ConcurrencyLimiter(1, name="down", shared=limits)
    rate = RateLimiter(1, burst=1, name="down", shared=limits, clock=FakeClock())
    own_redis_server.kill()
    with limiter:  # no store: the local slot alone
        with pytest.raises(ConcurrencyLimitExceeded):
            limiter.acquire()
    rate.try_acquire()
    with pytest.raises(RateLimitExceeded):
        rate.try_acquire()  # the local bucket


def test_settings_select_the_shared_limits_of_the_store_backend(tmp_path: Path) -> None:
    path = tmp_path / "bounceback.db"
    with SqliteSettings(path) as settings:
        settings.set("concurrency.max_in_flight", 1, operation="db")
        settings.set("concurrency.shared", True, operation="db")
        settings.set("rate_limit.rate", 5, operation="db")
        settings.set("rate_limit.shared", "on", operation="db")
        settings.set("concurrency.max_in_flight", 1, operation="local")
        policy = Policy("db", settings=settings, budget=None)
        local = Policy("local", settings=settings, budget=None)
        assert policy(lambda: SqliteSharedLimits(path).holders("db"))() == 1  # the lease is in the file
        assert local(lambda: SqliteSharedLimits(path).holders("local"))() == 0  # not shared
    with pytest.raises(ConfigError, match=r"concurrency\.shared"):
        Policy("db", settings=_Plain({"concurrency.max_in_flight": 1, "concurrency.shared": True}))


class _Plain:
    """A settings source without a shared store."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values

    def effective(self, operation: str | None = None) -> dict[str, Any]:
        return dict(self.values)

    def subscribe(self, fn: Any) -> Any:
        return lambda: None


_OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("take"), st.integers(0, 5), st.sampled_from([1, 2, 3]), st.sampled_from([1.0, 2.5])
        ),
        st.tuples(st.just("renew"), st.lists(st.integers(0, 5), max_size=3), st.sampled_from([1.0, 4.0])),
        st.tuples(st.just("give_back"), st.integers(0, 5)),
        st.tuples(st.just("advance"), st.sampled_from([0.25, 0.5, 1.0, 3.0])),
        st.tuples(
            st.just("reserve"),
            st.sampled_from([0.5, 2.0, 10.0]),
            st.integers(1, 3),
            st.sampled_from([0.0, 1.0]),
        ),
        st.tuples(st.just("holders")),
        st.tuples(st.just("tokens"), st.sampled_from([0.5, 2.0, 10.0]), st.integers(1, 3)),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_sqlite_and_redis_agree_with_the_in_memory_reference(
    ops: list[tuple[Any, ...]], tmp_path: Path, redis_server: RedisServer
) -> None:
    """Every store gives the reference's answers, step by step: leases, expiry, renewal, the bucket (and
    its tokens read for displays)."""
    clock = FakeClock()
    key = f"k{next(_runs)}"  # hypothesis reuses the fixtures: a fresh key per example
    stores: list[Any] = [
        MemorySharedLimits(clock=clock),
        SqliteSharedLimits(tmp_path / "agree.db", clock=clock),
        RedisSharedLimits(redis_server.url, clock=clock),
    ]
    try:
        for op in ops:
            if op[0] == "advance":
                clock.advance(op[1])
                continue
            answers = [_apply(store, key, op) for store in stores]
            assert answers[1] == answers[0], (op, answers)
            assert answers[2] == pytest.approx(answers[0]), (op, answers)
    finally:
        stores[1].close()
        stores[2].close()


_runs = itertools.count()


def _apply(store: Any, key: str, op: tuple[Any, ...]) -> Any:
    name = op[0]
    if name == "take":
        return store.take(key, op[2], f"h{op[1]}", op[3])
    if name == "renew":
        return store.renew(key, [f"h{h}" for h in dict.fromkeys(op[1])], op[2])
    if name == "give_back":
        return store.give_back(key, f"h{op[1]}")
    if name == "reserve":
        return store.reserve(key, op[1], op[2], op[3])
    if name == "tokens":
        return store.tokens(key, op[1], op[2])
    return store.holders(key)


def test_async_callers_queue_for_fleet_slots_and_tokens(backend: tuple[str, str]) -> None:
    kind, target = backend
    clock = FakeClock()
    holder = ConcurrencyLimiter(1, name="aio", shared=lw.make_limits(kind, target, clock), clock=clock)
    waiter = ConcurrencyLimiter(
        1,
        max_waiting=1,
        queue_timeout=30,
        name="aio",
        shared=lw.make_limits(kind, target, clock),
        clock=clock,
    )
    rate = RateLimiter(
        1000, burst=1, max_wait=1.0, name="aio", shared=lw.make_limits(kind, target, clock), clock=clock
    )
    # Another process finishes its call while the waiter polls the store (on the virtual clock).
    clock.on_sleep = lambda seconds: holder.release() if holder.in_flight else None

    async def main() -> str:
        holder.acquire()
        async with waiter:  # polls the store without blocking the loop, until the slot is free
            assert holder.in_flight == 0
        await rate.acquire_async()
        await rate.acquire_async()  # waits its 1 ms for the fleet's next token
        return "done"

    assert asyncio.run(main()) == "done"
    assert (waiter.rejected, rate.rejected) == (0, 0)
    assert clock.sleeps[-1] == pytest.approx(0.001)
    assert lw.make_limits(kind, target, clock).holders("aio") == 0


def test_bad_shared_arguments_name_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shared"):
        ConcurrencyLimiter(2, shared=object())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="shared"):
        RateLimiter(2, shared="redis://127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="lease"):
        ConcurrencyLimiter(2, shared=MemorySharedLimits(), lease=0.01)
    with pytest.raises(ConfigError, match=r"store\.redis_url") as missing:
        shared_limits_from_settings({"store.backend": "redis", "store.redis_url": ""})
    assert "bounceback settings set store.redis_url" in str(missing.value)
    with pytest.raises(ConfigError, match=r"store\.backend"):
        shared_limits_from_settings({"store.backend": "etcd"})
    assert isinstance(
        shared_limits_from_settings({"store.backend": "sqlite"}, path=tmp_path / "x.db"), SqliteSharedLimits
    )


def test_the_memory_backend_shares_limits_within_the_process(tmp_path: Path) -> None:
    settings = SqliteSettings(tmp_path / "bounceback.db")
    settings.set("store.backend", "memory")
    limits = settings.shared_limits()
    assert isinstance(limits, MemorySharedLimits) and settings.shared_limits() is limits
    settings.close()  # closes what it made, whichever backend
