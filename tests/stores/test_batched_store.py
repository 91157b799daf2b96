"""The batching store decorator, over the in-memory, SQLite and Redis stores (real file, real server)."""

from __future__ import annotations

import contextlib
import itertools
import threading
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounceback import CircuitBreaker, CircuitOpenError, StoreError
from bounceback.core._events import StoreRecovered, StoreUnavailable
from bounceback.core._flusher import Flusher
from bounceback.core.breaker._batched import BatchedBreakerStore
from bounceback.core.breaker._store import (
    NO_OUTCOME,
    BreakerStore,
    MemoryBreakerStore,
    SharedState,
    WindowSpec,
)
from bounceback.core.breaker._window import FAILED, OK, SLOW, WindowCounts
from bounceback.errors import ConfigError
from bounceback.events import EventBus
from bounceback.stores import RedisBreakerStore, SqliteBreakerStore, breaker_store_from_settings
from bounceback.testing import FakeClock, RecordingSink
from tests.conftest import leaked_store_threads
from tests.redis_server import RedisServer
from tests.stores.shared_scenarios import wait_for
from tests.stores.store_contract import EXAMPLES, OPS, SPECS, WALL0, WINDOW_OPS, run_contract

_keys = itertools.count()
_SLOW = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


class Flushed:
    """A batched store seen through the port, flushed after every record: it must answer like the reference.

    ``record`` answers with the store's counts read after the flush (exact), and the cached state.
    """

    def __init__(self, inner: BreakerStore) -> None:
        self.store = BatchedBreakerStore(inner, monotonic=lambda: 0.0, background=False)
        self.name = inner.name
        self.shared = inner.shared

    def record(
        self, key: str, spec: WindowSpec, successes: int, outcome: int, now: float
    ) -> tuple[WindowCounts, SharedState | None]:
        self.store.record(key, spec, successes, outcome, now)
        self.store._flush_key(key, refresh=True)  # what the flusher does: send, or refresh the cache
        return self.store.counts(key, spec, now), self.store.load(key)

    def close(self) -> None:
        self.store.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.store, name)


class Grouped:
    """Records are held and sent with ``record_many`` in groups of three: the answers must not change."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.name = inner.name
        self.shared = inner.shared
        self.runs: list[tuple[int, int, float]] = []
        self.seq = itertools.count(1)

    def record(
        self, key: str, spec: WindowSpec, successes: int, outcome: int, now: float
    ) -> tuple[WindowCounts, SharedState | None]:
        self.runs.append((successes, outcome, now))
        runs, self.runs = self.runs, []
        counts, state = self.inner.record_many(key, spec, runs, now, ("test", next(self.seq)))
        return counts, state

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@given(base=st.integers(0, len(SPECS) - 1), ops=OPS)
@settings(max_examples=60, deadline=None)
def test_batched_memory_store_answers_like_the_reference(base: int, ops: list[tuple[object, ...]]) -> None:
    with closing(Flushed(MemoryBreakerStore(shared=True))) as flushed:
        run_contract(flushed, base, ops, "k")  # type: ignore[arg-type]


@given(base=st.integers(0, len(SPECS) - 1), ops=OPS)
@_SLOW
def test_batched_sqlite_store_answers_like_the_reference(
    tmp_path: Path, base: int, ops: list[tuple[object, ...]]
) -> None:
    with closing(Flushed(SqliteBreakerStore(tmp_path / "b.db"))) as flushed:  # its feed thread ends with it
        run_contract(flushed, base, ops, f"s{next(_keys)}")  # type: ignore[arg-type]


@given(base=st.integers(0, len(SPECS) - 1), ops=OPS)
@_SLOW
def test_batched_redis_store_answers_like_the_reference(
    redis_server: RedisServer, base: int, ops: list[tuple[object, ...]]
) -> None:
    with closing(Flushed(RedisBreakerStore(redis_server.url))) as flushed:
        run_contract(flushed, base, ops, f"r{next(_keys)}")  # type: ignore[arg-type]


@pytest.mark.parametrize(("base", "ops"), EXAMPLES)
def test_batched_store_on_the_hand_picked_examples(
    redis_server: RedisServer, base: int, ops: list[tuple[object, ...]]
) -> None:
    with closing(Flushed(RedisBreakerStore(redis_server.url))) as flushed:
        run_contract(flushed, base, ops, f"e{next(_keys)}")  # type: ignore[arg-type]


@given(base=st.integers(0, len(SPECS) - 1), ops=WINDOW_OPS, data=st.data())
@_SLOW
def test_record_many_adds_runs_like_single_records(
    redis_server: RedisServer, tmp_path: Path, base: int, ops: list[tuple[Any, ...]], data: st.DataObject
) -> None:
    """A batch of runs in one call (one transaction, one script) leaves what the runs one by one leave."""
    spec = SPECS[base]
    runs = [(op[2], op[3], WALL0 + i * 0.7) for i, op in enumerate(ops) if op[0] == "record"]
    cut = data.draw(st.integers(0, len(runs)))
    ref = MemoryBreakerStore(shared=True)
    want: tuple[WindowCounts, SharedState | None] = (WindowCounts(), None)
    for successes, outcome, at in runs:
        want = ref.record("k", spec, successes, outcome, at)
    now = runs[-1][2] if runs else WALL0
    sqlite = SqliteBreakerStore(tmp_path / f"m{next(_keys)}.db")
    redis_store = RedisBreakerStore(redis_server.url)
    for store in (sqlite, redis_store):
        key = f"m{next(_keys)}"
        store.record_many(
            key, spec, runs[:cut], now if cut == len(runs) else runs[cut - 1][2] if cut else WALL0, ("p", 1)
        )
        got = store.record_many(key, spec, runs[cut:], now, ("p", 2))
        assert got[0] == want[0], f"{store!r}: {got[0]} != {want[0]}"
    sqlite.close()


def test_a_resent_batch_is_counted_once(redis_server: RedisServer) -> None:
    store = RedisBreakerStore(redis_server.url)
    spec = WindowSpec("count", 100)
    runs = [(5, FAILED, WALL0), (3, NO_OUTCOME, WALL0)]
    first = store.record_many("dup", spec, runs, WALL0, ("proc-a", 7))
    again = store.record_many("dup", spec, runs, WALL0, ("proc-a", 7))  # a resend after a timeout
    other = store.record_many("dup", spec, runs, WALL0, ("proc-b", 7))  # another process's batch
    assert first[0] == again[0] == WindowCounts(9, 1, 0, 0)
    assert other[0] == WindowCounts(18, 2, 0, 0)


def test_record_answers_locally_from_the_cache_plus_pending() -> None:
    inner = MemoryBreakerStore(shared=True)
    store = BatchedBreakerStore(inner, background=False, monotonic=lambda: 0.0)
    spec = WindowSpec("count", 10)
    inner.record("k", spec, 4, FAILED, WALL0)  # another process: 5 calls, 1 failure, in the store
    counts, state = store.record("k", spec, 0, OK, WALL0)  # the window is not known yet: pending only
    assert counts == WindowCounts(1, 0, 0, 0) and state == SharedState("closed", 0, 0.0)
    store.flush()  # the reply brings the fleet's window
    counts, _ = store.record("k", spec, 1, FAILED | SLOW, WALL0)
    assert counts == WindowCounts(8, 2, 1, 1)
    assert inner.counts("k", spec, WALL0).calls == 6  # nothing sent since the flush
    assert store.pending("k") == 2
    counts, _ = store.record("k", spec, 4, OK, WALL0)  # overflows the window: the oldest assumed average
    assert counts.calls == 10 and counts.consecutive_failures == 0
    store.flush()
    assert inner.counts("k", spec, WALL0) == WindowCounts(10, 2, 1, 0)
    assert store.pending("k") == 0
    store.close()


def test_settings_are_checked_and_name_the_field() -> None:
    inner = MemoryBreakerStore(shared=True)
    for kwargs, field in [
        ({"flush_seconds": 0}, "store.flush_seconds"),
        ({"flush_seconds": "fast"}, "store.flush_seconds"),
        ({"flush_count": 0}, "store.flush_count"),
        ({"staleness": -1}, "store.staleness"),
        ({"flush_seconds": 1.0, "staleness": 1.0}, "store.staleness"),
    ]:
        with pytest.raises(ConfigError) as err:
            BatchedBreakerStore(inner, **kwargs)
        assert field in str(err.value)


def _breaker(store: BreakerStore, clock: FakeClock, bus: EventBus, **kw: Any) -> CircuitBreaker:
    return CircuitBreaker(
        "batched", store=store, clock=clock, bus=bus, timers=False, window=20, min_calls=4, failure_rate=50,
        sync_seconds=1, store_retry_seconds=5, **kw,
    )  # fmt: skip


def _down() -> None:
    raise ConnectionError("down")


def test_a_breaker_on_a_batched_store_trips_and_the_other_process_follows(redis_server: RedisServer) -> None:
    clock, bus = FakeClock(), EventBus()
    one = BatchedBreakerStore(
        RedisBreakerStore(redis_server.url), monotonic=clock.monotonic, background=False
    )
    two = BatchedBreakerStore(
        RedisBreakerStore(redis_server.url), monotonic=clock.monotonic, background=False
    )
    a, b = _breaker(one, clock, bus), _breaker(two, clock, bus)
    for brk in (a, b, a, b):
        with pytest.raises(ConnectionError):
            brk.call(_down)
    # Neither has seen the other's failures: 2 of 4 is not min_calls yet, nothing has been sent.
    assert a.state_name == b.state_name == "closed"
    one.flush()
    two.flush()
    one._flush_key("batched", refresh=True)  # a's next flush brings the fleet's 4 failures
    with pytest.raises(ConnectionError):
        a.call(_down)  # its record sees 4 failures of 4 (+1 local) and opens the fleet's breaker at once
    assert a.state_name == "open"
    two._flush_key("batched", refresh=True)
    two._round()  # b's next round (if the push has not already) hands the open state to b
    calls: list[int] = []
    assert b.state_name == "open"  # taken at once from the store, before b's next call
    with pytest.raises(CircuitOpenError):
        b.call(lambda: calls.append(1))
    assert calls == []
    two.flush()
    assert RedisBreakerStore(redis_server.url).counts("batched", WindowSpec("count", 20), WALL0).calls == 5
    one.close()
    two.close()


def test_a_store_outage_longer_than_the_staleness_bound_fails_over_and_catches_up(
    own_redis_server: RedisServer,
) -> None:
    clock, bus = FakeClock(), EventBus()
    events = RecordingSink(bus)
    store = BatchedBreakerStore(
        RedisBreakerStore(own_redis_server.url, timeout=0.2), monotonic=clock.monotonic, background=False,
        staleness=1.0,
    )  # fmt: skip
    brk = _breaker(store, clock, bus)
    for _ in range(3):
        brk.call(lambda: None)
    own_redis_server.kill()
    with pytest.raises(StoreError):
        store.flush()  # the flusher's round fails: the three successes are kept
    brk.call(lambda: None)  # within the staleness bound: answered from the cache, no wait
    assert store.pending("batched") == 4 and not events.of(StoreUnavailable)
    clock.advance(1.5)
    brk.call(lambda: None)  # counted for the store; its sync finds the cache too old: the store is away
    assert len(events.of(StoreUnavailable)) == 1
    brk.call(lambda: None)  # on local state now: this success stays local
    own_redis_server.restart()
    clock.advance(5)
    store.flush()  # the flusher's next round: the kept batch lands in the new server, once
    brk.call(lambda: None)  # store_retry_seconds later the breaker asks again, and finds a fresh cache
    assert len(events.of(StoreRecovered)) == 1
    store.flush()
    # 3 + 1 kept while the cache was fresh, + the 1 whose sync found it stale; the two made on local state
    # (the second one counted while the store was away, and the one that reconnected) stayed local.
    assert store.inner.counts("batched", WindowSpec("count", 20), WALL0).calls == 5
    store.close()


def test_settings_wrap_the_shared_stores(tmp_path: Path, redis_server: RedisServer) -> None:
    store = breaker_store_from_settings(
        {"store.backend": "sqlite", "store.flush_seconds": 0.1}, path=tmp_path / "s.db"
    )
    assert isinstance(store, BatchedBreakerStore) and store.flush_seconds == 0.1
    assert isinstance(store.inner, SqliteBreakerStore) and store.keys() == []
    store.close()
    plain = breaker_store_from_settings(
        {"store.backend": "sqlite", "store.flush_seconds": 0}, path=tmp_path / "p.db"
    )
    assert isinstance(plain, SqliteBreakerStore)
    plain.close()
    with pytest.raises(ConfigError, match=r"store\.staleness"):
        breaker_store_from_settings(
            {"store.backend": "redis", "store.redis_url": redis_server.url, "store.staleness": 0.01}
        )


# -- fast-path successes counted by the store (success_counter) ----------------------------------------------


def test_fast_path_successes_from_many_threads_reach_the_store_exactly_once(tmp_path: Path) -> None:
    store = BatchedBreakerStore(SqliteBreakerStore(tmp_path / "tally.db"), flush_seconds=0.01, flush_count=50)
    brk = CircuitBreaker(
        "tally", store=store, bus=EventBus(), timers=False, window=50_000, min_calls=10, failure_rate=90
    )
    assert brk.fast_path  # a shared store, and a success is one bump of the store's counter
    threads, calls = 8, 2000

    def run(worker: int) -> None:
        for i in range(calls):
            if i % 100 == worker:  # a few failures, recorded as runs between the batched successes
                with pytest.raises(ConnectionError):
                    brk.call(_down)
            else:
                brk.call(lambda: None)

    pool = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    store.close()  # the last successes, still in the counter, go with the final flush
    counts = SqliteBreakerStore(tmp_path / "tally.db").counts("tally", WindowSpec("count", 50_000), 0.0)
    assert (counts.calls, counts.failures) == (threads * calls, threads * (calls // 100))
    assert brk.state_name == "closed"


def test_counted_successes_join_the_window_before_the_next_failure_and_a_transition() -> None:
    inner = MemoryBreakerStore(shared=True)
    store = BatchedBreakerStore(inner, background=False)
    spec = WindowSpec("count", 5)
    bump = store.success_counter("k", spec)
    for _ in range(4):
        bump()
    store.record("k", spec, 0, FAILED, 1.0)  # the four successes come first: the failure is the newest
    store.flush()
    assert inner.counts("k", spec, 1.0) == WindowCounts(5, 1, 0, 1)
    bump()
    stored = store.load("k")
    store.transition("k", 0 if stored is None else stored.version, SharedState("open", 1, 1.0, 9.0), False)
    assert (
        inner.counts("k", spec, 1.0).calls == 5
    )  # flushed by the transition: one success pushed the oldest out
    assert inner.counts("k", spec, 1.0).failures == 1 and store.pending("k") == 0
    store.close()


# -- threads of the store end with it -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_a_store_dropped_without_close_ends_its_threads(
    kind: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    before = set(threading.enumerate())
    inner = RedisBreakerStore(redis_server.url) if kind == "redis" else SqliteBreakerStore(tmp_path / "d.db")
    store = BatchedBreakerStore(inner)
    brk = CircuitBreaker(f"dropped-{kind}", store=store, bus=EventBus(), timers=False)
    brk.call(lambda: None)
    running = leaked_store_threads(before, 0.0)  # the check sees them while the store lives
    assert [name.split()[0] for name in running] == ["bounceback-flush", "bounceback-push"]
    del brk, store, inner  # dropped, never closed: nothing holds the store but its own threads (weakly)
    assert leaked_store_threads(before, 30.0) == []


def test_close_is_idempotent_and_stops_a_shared_flusher_thread_once_idle(tmp_path: Path) -> None:
    before = set(threading.enumerate())
    flusher = Flusher(0.01, name="bounceback-flush test")
    one = BatchedBreakerStore(SqliteBreakerStore(tmp_path / "a.db"), flusher=flusher, push=False)
    two = BatchedBreakerStore(SqliteBreakerStore(tmp_path / "b.db"), flusher=flusher, push=False)
    one.load("x")
    two.load("y")
    assert flusher.running
    one.close()
    one.close()  # nothing happens the second time
    assert one.closed and flusher.running  # the other store still uses it
    two.close()
    assert leaked_store_threads(before, 30.0) == []  # no job left: the thread ended ...
    assert not flusher.running
    three = BatchedBreakerStore(SqliteBreakerStore(tmp_path / "c.db"), flusher=flusher, push=False)
    three.load("z")
    assert flusher.running  # ... and starts again for a new store
    three.close()
    assert leaked_store_threads(before, 30.0) == []


def test_two_breakers_of_one_key_take_pushed_changes_while_both_change_it(tmp_path: Path) -> None:
    """Pushes and flusher rounds hand states to the breakers (taking their locks) while both breakers make
    transitions (holding their locks, waiting for the store's): nothing deadlocks, and they end agreeing."""
    db = tmp_path / "two.db"
    store = BatchedBreakerStore(SqliteBreakerStore(db), flush_seconds=0.01)
    elsewhere = BatchedBreakerStore(SqliteBreakerStore(db), flush_seconds=0.01)  # another "process"
    kw: dict[str, Any] = {"bus": EventBus(), "timers": False, "window": 20, "min_calls": 5}
    a, b = CircuitBreaker("both", store=store, **kw), CircuitBreaker("both", store=store, **kw)
    other = CircuitBreaker("both", store=elsewhere, **kw)

    def churn(brk: CircuitBreaker) -> None:
        for i in range(150):
            if i % 3 == 0:
                brk.force_open("drill")
            elif i % 3 == 1:
                brk.force_close("drill over")
            else:
                with contextlib.suppress(CircuitOpenError):
                    brk.call(lambda: None)

    pool = [threading.Thread(target=churn, args=(brk,), daemon=True) for brk in (a, b, other)]
    try:
        for t in pool:
            t.start()
        for t in pool:
            t.join(timeout=120)  # generous: a deadlock never ends, a slow machine does
        assert not any(t.is_alive() for t in pool), "a breaker and the store's threads deadlocked"
        # A force-open while other's cached state is still a stale forced_open (a push on its way) would be
        # a no-op: settle on the store's latest version first (a reset always goes through the store).
        other.reset()
        other.force_open("last word")
        # The push (or the next flusher round) hands it to both breakers of this "process", unasked.
        wait_for(
            lambda: a.state_name == b.state_name == "forced_open", "the last force-open to reach a and b"
        )
        assert a.metrics().state == "forced_open"
    finally:
        elsewhere.close()
        store.close()
