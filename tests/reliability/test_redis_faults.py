"""The Redis breaker store under faults: behind the fault proxy, and a real server killed with SIGKILL.

What must hold: a caller only ever sees its own function's errors (and the breaker's own refusals), never a
store error; the breaker says once that it runs on local state and once that the store is back; after the
store returns, every breaker sharing it agrees with what the store holds.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from bounceback import CircuitBreaker, CircuitOpenError
from bounceback.core._events import StoreRecovered, StoreUnavailable
from bounceback.events import EventBus
from bounceback.stores import RedisBreakerStore
from bounceback.testing import FakeClock, RecordingSink
from tests.redis_server import RedisServer
from tests.reliability.conftest import Figures, soak_size
from tests.reliability.faultproxy import Fault, FaultProxy


class Boom(Exception):
    """The protected function's own error."""


@pytest.fixture
def redis_proxy(redis_server: RedisServer) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", redis_server.port)) as proxy:
        yield proxy


def _converged(breaker: CircuitBreaker, store: RedisBreakerStore) -> bool:
    stored = store.load(breaker.name)
    return stored is not None and stored.state == breaker.state_name and stored.version == breaker._epoch


def test_proxy_faults_fall_back_to_local_state_and_resynchronise(
    redis_server: RedisServer, redis_proxy: FaultProxy, figures: Callable[[str], Figures]
) -> None:
    fig = figures("redis-proxy-faults")
    clock, bus = FakeClock(), EventBus()
    sink = RecordingSink(bus)
    store = RedisBreakerStore(f"redis://127.0.0.1:{redis_proxy.port}/0", timeout=0.2)
    breaker = CircuitBreaker(
        "redis-faults", store=store, window=10, min_calls=10, open_seconds=30, clock=clock, bus=bus
    )
    direct = RedisBreakerStore(redis_server.url)
    seen: list[str] = []
    tries = 0

    def call(fail: bool) -> None:
        nonlocal tries
        tries += 1

        def work() -> str:
            if fail:
                raise Boom("the function's own failure")
            return "ok"

        try:
            assert breaker.call(work) == "ok"
            seen.append("ok")
        except Boom:
            seen.append("boom")
        except CircuitOpenError:
            seen.append("refused")
        # Anything else (StoreError, redis errors, timeouts) escapes and fails the test.

    for _ in range(5):
        call(False)
    assert _converged(breaker, direct)
    for fault in (Fault.stall(), Fault.reset(), Fault.refuse()):
        redis_proxy.set(fault)
        started = time.monotonic()
        for _ in range(5):
            call(False)
        # Only the first call after the fault waits for the store (0.2 s timeout); the rest run locally.
        assert time.monotonic() - started < 2.0
        assert len(sink.of(StoreUnavailable)) == 1, fault
        redis_proxy.set(Fault.passing())
    # A failure streak while the store is away opens the breaker locally.
    redis_proxy.set(Fault.stall())
    for _ in range(12):
        call(True)
    assert breaker.state_name == "open"
    assert seen[-1] == "refused"
    redis_proxy.set(Fault.passing())
    clock.advance(30)  # past store_retry_seconds and the open time
    for _ in range(5):
        call(False)
    assert len(sink.of(StoreRecovered)) == 1
    assert _converged(breaker, direct)
    assert set(seen) <= {"ok", "boom", "refused"}
    store.close()
    direct.close()
    fig.tries = tries
    fig.result = (
        "stall, reset and refuse each announced once (StoreUnavailable), calls kept their own results; "
        "store back: StoreRecovered once, breaker and store agree"
    )


@pytest.mark.soak
def test_redis_sigkill_and_restart_under_load(
    own_redis_server: RedisServer, figures: Callable[[str], Figures]
) -> None:
    fig = figures("redis-sigkill-under-load")
    threads_n = 8
    calls_each = soak_size(1500, 15000)
    bus = EventBus()
    sink = RecordingSink(bus)
    # One store (one client, one pool) per breaker: as separate processes would have.
    stores = [RedisBreakerStore(own_redis_server.url, timeout=0.2) for _ in range(threads_n)]
    breakers = [
        CircuitBreaker(
            "redis-kill",
            store=stores[i],
            window=100,
            min_calls=20,
            failure_rate=50,
            open_seconds=0.2,
            store_retry_seconds=0.05,
            sync_seconds=0.05,
            bus=bus,
            timers=False,
        )
        for i in range(threads_n)
    ]
    outcomes = {"ok": 0, "boom": 0, "refused": 0}
    leaked: list[BaseException] = []
    lock = threading.Lock()
    progress = [0]

    def worker(index: int) -> None:
        rng = random.Random(index)
        breaker = breakers[index]
        local = {"ok": 0, "boom": 0, "refused": 0}
        for _ in range(calls_each):
            fail = rng.random() < 0.1

            def work(fail: bool = fail) -> None:
                if fail:
                    raise Boom("own error")

            try:
                breaker.call(work)
                local["ok"] += 1
            except Boom:
                local["boom"] += 1
            except CircuitOpenError:
                local["refused"] += 1
            except BaseException as exc:
                with lock:
                    leaked.append(exc)
            with lock:
                progress[0] += 1
        with lock:
            for k, v in local.items():
                outcomes[k] += v

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads_n)]
    for t in workers:
        t.start()
    total = threads_n * calls_each
    kills = 0
    for fraction in (0.25, 0.6):
        deadline = time.monotonic() + 60
        while progress[0] < total * fraction and time.monotonic() < deadline:
            time.sleep(0.005)  # waiting on real threads: a short, bounded poll
        own_redis_server.kill()
        kills += 1
        time.sleep(0.1)  # the server stays dead for a moment of real load
        own_redis_server.start()
    for t in workers:
        t.join(120)
    assert not any(t.is_alive() for t in workers)
    assert leaked == [], leaked[:3]
    assert sum(outcomes.values()) == total
    assert outcomes["boom"] > 0 and outcomes["ok"] > 0
    assert len(sink.of(StoreUnavailable)) >= 1
    # After the storm: keep calling (bounded) until every breaker is back on the store and agrees with it.
    check = RedisBreakerStore(own_redis_server.url)
    deadline = time.monotonic() + 10
    while True:
        for b in breakers:
            try:
                b.call(lambda: None)
            except CircuitOpenError:
                pass
        states = {(b.state_name, b._epoch) for b in breakers}
        if (
            all(b.metrics().store_available for b in breakers)
            and len(states) == 1
            and _converged(breakers[0], check)
        ):
            break
        assert time.monotonic() < deadline, (states, [not b.metrics().store_available for b in breakers])
        time.sleep(0.02)
    for s in [*stores, check]:
        s.close()
    fig.tries = total
    fig.result = (
        f"{kills} SIGKILLs + restarts during {total} calls on {threads_n} threads: only own errors "
        f"({outcomes['boom']}) and refusals ({outcomes['refused']}) seen; all breakers converged"
    )
    fig.note(
        store_unavailable_events=len(sink.of(StoreUnavailable)),
        store_recovered_events=len(sink.of(StoreRecovered)),
    )
