"""The Redis breaker store and budget ledger, against a real redis-server process on 127.0.0.1."""

from __future__ import annotations

import itertools
import multiprocessing
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bounceback import CircuitBreaker, CircuitOpenError, StoreError
from bounceback.core._events import StoreRecovered, StoreUnavailable
from bounceback.core.breaker._store import WindowSpec
from bounceback.core.breaker._window import FAILED, OK
from bounceback.core.retry._batched_ledger import BatchedLedger
from bounceback.core.retry._budget import RetryBudget
from bounceback.events import EventBus
from bounceback.stores import (
    RedisBreakerStore,
    RedisBudgetLedger,
    breaker_store_from_settings,
    budget_ledger_from_settings,
    redis_client,
    store_options,
)
from bounceback.testing import FakeClock, RecordingSink
from tests.redis_server import RedisServer
from tests.stores import shared_scenarios
from tests.stores import shared_workers as w
from tests.stores.store_contract import (
    BUDGET_OPS,
    EXAMPLES,
    OPS,
    SPECS,
    WINDOW_OPS,
    run_budget_contract,
    run_contract,
)

_keys = itertools.count()


def _examples(test: Any) -> Any:
    for base, ops in EXAMPLES:
        test = example(base=base, ops=ops)(test)
    return test


@given(base=st.integers(0, len(SPECS) - 1), ops=OPS)
@_examples
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_answers_like_the_memory_store(
    redis_server: RedisServer, base: int, ops: list[tuple[object, ...]]
) -> None:
    run_contract(RedisBreakerStore(redis_server.url), base, ops, f"k{next(_keys)}")


@given(base=st.integers(0, len(SPECS) - 1), ops=WINDOW_OPS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_windows_fill_wrap_and_age_like_the_memory_store(
    redis_server: RedisServer, base: int, ops: list[tuple[object, ...]]
) -> None:
    run_contract(RedisBreakerStore(redis_server.url), base, ops, f"w{next(_keys)}")


@given(ops=BUDGET_OPS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_budget_ledger_answers_like_the_local_ledger(
    redis_server: RedisServer, ops: list[tuple[float, int, float, bool]]
) -> None:
    run_budget_contract(
        lambda clock: RedisBudgetLedger(redis_server.url, clock=clock), ops, f"b{next(_keys)}"
    )


def test_one_round_trip_per_recorded_outcome(redis_server: RedisServer) -> None:
    store = RedisBreakerStore(redis_server.url)
    spec = WindowSpec("count", 100)
    store.record("db", spec, 0, OK, 1.0)  # first use loads the script (NOSCRIPT, SCRIPT LOAD, EVALSHA)
    admin, marker = redis_server.client(), redis_server.client()
    marker.ping()  # connected before watching, so its handshake is not counted
    with admin.monitor() as monitor:  # type: ignore[no-untyped-call]
        for _ in range(50):
            store.record("db", spec, 0, FAILED, 1.0)
        marker.echo("done")
        sent = []
        while (cmd := monitor.next_command())["command"] != "ECHO done":
            if cmd["client_type"] == "tcp":  # what clients sent, not what scripts ran inside the server
                sent.append(cmd["command"].split(" ", 1)[0].upper())
    assert sent == ["EVALSHA"] * 50


def test_keys_share_one_cluster_slot_and_list_by_name(redis_server: RedisServer) -> None:
    store = RedisBreakerStore(redis_server.url, prefix="app:")
    store.record("payments api", WindowSpec("count", 4), 0, FAILED, 1.0)
    names = sorted(k.decode() if isinstance(k, bytes) else k for k in redis_server.client().keys("app:*"))
    assert names == ["app:{payments api}", "app:{payments api}:ring"]
    assert store.keys() == ["payments api"]


def test_script_cache_loss_is_handled(redis_server: RedisServer) -> None:
    store = RedisBreakerStore(redis_server.url)
    spec = WindowSpec("count", 10)
    store.record("db", spec, 0, FAILED, 1.0)
    redis_server.client().script_flush()
    counts, _ = store.record("db", spec, 0, FAILED, 1.0)
    assert counts.failures == 2
    assert store._script.loads == 2  # once at first use, once after the flush


def test_wrong_url_is_a_config_error() -> None:
    with pytest.raises(ValueError, match=r"store\.redis_url"):
        redis_client("http://127.0.0.1:6379")
    with pytest.raises(ValueError, match=r"store\.redis_url"):
        breaker_store_from_settings({"store.backend": "redis", "store.redis_url": ""})


@pytest.fixture
def black_hole() -> Iterator[tuple[int, list[socket.socket]]]:
    """A TCP port on 127.0.0.1 that accepts connections and never answers (a hung server)."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.05)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            accepted.append(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1], accepted
    stop.set()
    thread.join(5)
    for conn in accepted:
        conn.close()
    listener.close()


def test_client_does_not_retry_on_its_own(black_hole: tuple[int, list[socket.socket]]) -> None:
    port, accepted = black_hole
    store = RedisBreakerStore(f"redis://127.0.0.1:{port}/0", timeout=0.2)
    started = time.monotonic()
    with pytest.raises(StoreError) as caught:
        store.load("db")
    took = time.monotonic() - started
    # Any retry would have dialled before the error was raised; give the accept loop (0.05 s polls) time
    # to take every connection that reached the listener.
    settle = time.monotonic() + 0.3
    while time.monotonic() < settle and len(accepted) < 2:
        time.sleep(0.01)
    # One attempt: one connection and one timeout. redis-py's default (3 retries with backoff) would
    # have dialled four times and taken about a second.
    assert len(accepted) == 1
    assert 0.15 < took < 0.75
    assert caught.value.store == f"redis://127.0.0.1:{port}/0"
    assert "no answer within 0.2 s" in str(caught.value)


def test_server_down_is_a_store_error_that_says_what_to_do(own_redis_server: RedisServer) -> None:
    store = RedisBreakerStore(own_redis_server.url)
    store.record("db", WindowSpec("count", 10), 0, OK, 1.0)
    own_redis_server.kill()
    with pytest.raises(StoreError) as caught:
        store.record("db", WindowSpec("count", 10), 0, OK, 1.0)
    assert "cannot be reached" in str(caught.value)
    assert "store.redis_url" in str(caught.value)


def test_breaker_survives_a_restart_and_hands_its_state_to_the_new_server(
    own_redis_server: RedisServer,
) -> None:
    clock, bus = FakeClock(), EventBus()
    sink = RecordingSink(bus)
    store = RedisBreakerStore(own_redis_server.url)
    brk = CircuitBreaker("restart", store=store, clock=clock, bus=bus, timers=False, store_retry_seconds=5)
    brk.force_open("maintenance")
    own_redis_server.kill()
    with pytest.raises(CircuitOpenError):  # still forced open, on local state
        brk.call(lambda: None)
    clock.advance(1.0)  # a sync is due: it finds the server gone
    with pytest.raises(CircuitOpenError):
        brk.call(lambda: None)
    assert len(sink.of(StoreUnavailable)) == 1
    own_redis_server.start()  # empty: no persistence
    clock.advance(5.0)
    with pytest.raises(CircuitOpenError):
        brk.call(lambda: None)
    assert len(sink.of(StoreRecovered)) == 1
    state = store.load("restart")
    assert state is not None
    assert state.state == "forced_open"  # the breaker handed its state to the empty server
    other = CircuitBreaker(
        "restart", store=RedisBreakerStore(own_redis_server.url), clock=clock, bus=EventBus()
    )
    assert other.state.value == "forced_open"


def test_fail_closed_from_settings_refuses_calls_while_redis_is_down(own_redis_server: RedisServer) -> None:
    values = {
        "store.backend": "redis",
        "store.redis_url": own_redis_server.url,
        "store.on_unavailable": "fail-closed",
        "store.flush_seconds": 0,  # one script per call (the batched store has its own outage test)
    }
    clock = FakeClock()
    store = breaker_store_from_settings(values)
    assert isinstance(store, RedisBreakerStore)
    brk = CircuitBreaker(
        "strict", store=store, clock=clock, bus=EventBus(), timers=False, **store_options(values)
    )
    brk.call(lambda: None)
    own_redis_server.kill()
    brk.call(lambda: None)  # ran; recording its outcome finds the server gone
    with pytest.raises(CircuitOpenError) as refused:
        brk.call(lambda: None)
    assert refused.value.state == "store_unavailable"
    own_redis_server.start()
    clock.advance(5.0)
    assert brk.call(lambda: "back") == "back"


def test_budget_is_shared_through_redis(redis_server: RedisServer) -> None:
    clock = FakeClock()
    ledger = budget_ledger_from_settings({"store.backend": "redis", "store.redis_url": redis_server.url})
    assert isinstance(ledger, BatchedLedger) and isinstance(
        ledger.inner, RedisBudgetLedger
    )  # decided locally, sent in batches
    ledger.close()
    one = RetryBudget(
        0.5,
        min_per_second=0,
        name="api",
        clock=clock,
        ledger=RedisBudgetLedger(redis_server.url, clock=clock),
    )
    two = RetryBudget(
        0.5,
        min_per_second=0,
        name="api",
        clock=clock,
        ledger=RedisBudgetLedger(redis_server.url, clock=clock),
    )
    for _ in range(4):
        one.record_call("fetch")
    assert [one.try_spend("fetch"), two.try_spend("fetch"), two.try_spend("fetch")] == [True, True, False]
    ttl = redis_server.client().pttl("bounceback:budget:{api}")
    assert 0 < ttl <= 21_000  # an idle budget expires by itself after two windows


def test_budget_counts_locally_while_redis_is_down(own_redis_server: RedisServer) -> None:
    clock, bus = FakeClock(), EventBus()
    sink = RecordingSink(bus)
    ledger = RedisBudgetLedger(own_redis_server.url, clock=clock, bus=bus)
    budget = RetryBudget(0.0, min_per_second=0.2, window=10, name="api", clock=clock, ledger=ledger)
    assert budget.try_spend("fetch") is True
    own_redis_server.kill()
    assert [budget.try_spend("fetch") for _ in range(3)] == [True, True, False]  # local floor of 2
    assert [e.operation for e in sink.of(StoreUnavailable)] == ["api"]
    own_redis_server.start()  # empty: the shared window starts over
    clock.advance(5)
    assert [budget.try_spend("fetch") for _ in range(3)] == [True, True, False]
    assert ledger.available is True
    assert len(sink.of(StoreRecovered)) == 1


def test_eight_processes_share_one_breaker_and_one_probe_round(redis_server: RedisServer) -> None:
    shared_scenarios.run_hammer("redis", redis_server.url)


def test_killed_probe_holder_frees_its_permit_after_the_lease(redis_server: RedisServer) -> None:
    shared_scenarios.run_killed_probe("redis", redis_server.url)


def test_eight_processes_share_one_retry_budget(redis_server: RedisServer) -> None:
    shared_scenarios.run_budget_fleet("redis", redis_server.url)


def test_redis_killed_and_restarted_mid_run(own_redis_server: RedisServer) -> None:
    """Eight processes keep calling through a crash and restart; only the user's errors reach them."""
    ctx = shared_scenarios.CTX
    cell = ctx.RawValue("d", 0.0)
    clock = w.SharedClock(cell)
    calls = ctx.RawArray("q", w.N_WORKERS)
    unavailable, recovered = ctx.Value("i", 0), ctx.Value("i", 0)
    stop = ctx.Event()
    out = ctx.Queue()
    url = own_redis_server.url
    procs = [
        ctx.Process(target=w.steady, args=("redis", url, cell, i, calls, unavailable, recovered, stop, out))
        for i in range(w.N_WORKERS)
    ]
    for p in procs:
        p.start()
    wait = shared_scenarios.wait_for
    try:
        wait(lambda: min(calls) >= 50, "every process to make calls")
        own_redis_server.kill()
        wait(lambda: unavailable.value == w.N_WORKERS, "every process to notice the crash")
        during = list(calls)
        wait(
            lambda: all(c >= d + 50 for c, d in zip(calls, during, strict=True)),
            "calls to go on during the outage",
        )
        own_redis_server.start()  # same port, empty
        clock.advance(5.0)  # store_retry_seconds: every breaker asks the store again
        wait(lambda: recovered.value == w.N_WORKERS, "every process to resynchronise")
        # Converged: one breaker forced open by hand reaches every process through the new server.
        CircuitBreaker(
            "steady", store=RedisBreakerStore(url), clock=clock, bus=EventBus(), timers=False
        ).force_open()
        clock.advance(1.0)  # sync_seconds
        reports = shared_scenarios.collect(out, w.N_WORKERS, procs)
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    assert [r["unexpected"] for r in reports] == [[]] * w.N_WORKERS
    assert all(r["user_errors"] > 0 for r in reports)  # the user's own errors did reach the callers
    assert all(r["forced"] for r in reports)
    assert {r["state"] for r in reports} == {"forced_open"}
    assert all(r["store_available"] for r in reports)
    assert unavailable.value == recovered.value == w.N_WORKERS


def test_spawned_workers_use_the_spawn_context() -> None:
    # The scenarios must not fork a process that holds SQLite connections or redis sockets.
    assert shared_scenarios.CTX.get_start_method() == "spawn"
    assert isinstance(shared_scenarios.CTX, type(multiprocessing.get_context("spawn")))
