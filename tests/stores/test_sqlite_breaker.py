"""The SQLite breaker store and budget ledger, on real database files and with real processes."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from bounceback import CircuitBreaker, CircuitOpenError, StoreError
from bounceback.core._events import StoreRecovered, StoreUnavailable
from bounceback.core.breaker._batched import BatchedBreakerStore
from bounceback.core.breaker._store import SharedState, WindowSpec
from bounceback.core.breaker._window import FAILED, OK
from bounceback.core.retry._batched_ledger import BatchedLedger
from bounceback.core.retry._budget import RetryBudget
from bounceback.events import EventBus
from bounceback.stores import (
    SqliteBreakerStore,
    SqliteBudgetLedger,
    breaker_store_from_settings,
    budget_ledger_from_settings,
    schema_versions,
)
from bounceback.testing import FakeClock, RecordingSink
from tests.stores import shared_scenarios
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


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bounceback.db"


@given(base=st.integers(0, len(SPECS) - 1), ops=OPS)
@_examples
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_answers_like_the_memory_store(tmp_path: Path, base: int, ops: list[tuple[object, ...]]) -> None:
    with SqliteBreakerStore(tmp_path / "contract.db") as store:
        run_contract(store, base, ops, f"k{next(_keys)}")


@given(base=st.integers(0, len(SPECS) - 1), ops=WINDOW_OPS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_windows_fill_wrap_and_age_like_the_memory_store(
    tmp_path: Path, base: int, ops: list[tuple[object, ...]]
) -> None:
    run_contract(SqliteBreakerStore(tmp_path / "windows.db"), base, ops, f"w{next(_keys)}")


@given(ops=BUDGET_OPS)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_budget_ledger_answers_like_the_local_ledger(
    tmp_path: Path, ops: list[tuple[float, int, float, bool]]
) -> None:
    path = tmp_path / "budget.db"
    run_budget_contract(lambda clock: SqliteBudgetLedger(path, clock=clock), ops, f"b{next(_keys)}")


def test_tables_belong_to_the_breakers_component(db: Path) -> None:
    store = SqliteBreakerStore(db)
    assert store.load("x") is None  # first use creates the tables
    store.close()
    conn = sqlite3.connect(db)
    assert schema_versions(conn)["breakers"] == 1
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"breaker_state", "breaker_window", "breaker_leases"} <= tables
    conn.close()


def test_two_stores_on_one_file_share_window_and_state(db: Path) -> None:
    a, b = SqliteBreakerStore(db), SqliteBreakerStore(db)
    spec = WindowSpec("count", 10)
    a.record("db", spec, 0, FAILED, 1.0)
    counts, _ = b.record("db", spec, 0, OK, 1.0)
    assert (counts.calls, counts.failures) == (2, 1)
    opened = a.transition("db", 0, SharedState("open", 1, 2.0, 32.0), False)
    # b lost the race: it gets the winner's state back instead of writing its own.
    assert b.transition("db", 0, SharedState("forced_open", 1, 2.0), False) == opened
    assert b.keys() == ["db"]


def test_a_healthy_count_window_stores_no_rows(db: Path) -> None:
    store = SqliteBreakerStore(db)
    spec = WindowSpec("count", 50)
    store.record("db", spec, 0, FAILED, 1.0)
    for _ in range(60):
        store.record("db", spec, 0, OK, 1.0)
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT count(*) FROM breaker_window").fetchone()[0] == 0  # the failure left the ring
    conn.close()
    assert store.counts("db", spec, 1.0).calls == 50


def test_locked_database_is_a_store_error_and_the_store_heals(db: Path) -> None:
    store = SqliteBreakerStore(db, timeout=0.05)
    spec = WindowSpec("count", 10)
    store.record("db", spec, 0, OK, 1.0)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError) as caught:
        store.record("db", spec, 0, FAILED, 1.0)
    assert caught.value.store == f"sqlite:{db}"
    assert "locked" in str(caught.value)
    assert "busy timeout" in str(caught.value)
    other.execute("ROLLBACK")
    other.close()
    counts, _ = store.record("db", spec, 0, FAILED, 1.0)
    assert (counts.calls, counts.failures) == (2, 1)  # the refused outcome was not half-written


def test_corrupt_file_is_a_store_error_until_it_is_replaced(db: Path) -> None:
    db.write_bytes(b"this is not a database" * 100)
    store = SqliteBreakerStore(db)
    with pytest.raises(StoreError) as caught:
        store.load("db")
    assert "corrupt or not a bounceback database" in str(caught.value)
    db.rename(db.with_suffix(".bad"))  # a person moves it aside
    assert store.load("db") is None  # the same store object reconnects to a fresh database


def test_read_only_database_is_a_store_error(db: Path) -> None:
    store = SqliteBreakerStore(db)
    store.record("db", WindowSpec("count", 10), 0, OK, 1.0)
    store.close()
    readonly = SqliteBreakerStore(db)
    # As the process sees it: root ignores file modes, so make the connection itself read-only.
    readonly._link._connection().execute("PRAGMA query_only = ON")
    with pytest.raises(StoreError) as caught:
        readonly.record("db", WindowSpec("count", 10), 0, OK, 1.0)
    assert "read-only" in str(caught.value)
    assert readonly.load("db") is not None  # reads reconnect and still work


def test_breaker_falls_back_to_local_state_and_resynchronises(db: Path) -> None:
    clock, bus = FakeClock(), EventBus()
    sink = RecordingSink(bus)
    store = SqliteBreakerStore(db, timeout=0.05)
    brk = CircuitBreaker("fallback", store=store, clock=clock, bus=bus, timers=False, store_retry_seconds=5)
    assert brk.call(lambda: 1) == 1
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process keeps the database locked
    assert brk.call(lambda: 2) == 2  # fail-open: the call runs on local state
    assert [e.store for e in sink.of(StoreUnavailable)] == [f"sqlite:{db}"]
    assert brk.metrics().store_available is False
    other.execute("ROLLBACK")
    other.close()
    clock.advance(5)
    assert brk.call(lambda: 3) == 3
    assert len(sink.of(StoreRecovered)) == 1
    assert brk.metrics().store_available is True
    brk.force_open()  # shared again: the state lands in the database
    state = store.load("fallback")
    assert state is not None
    assert state.state == "forced_open"


def test_fail_closed_refuses_calls_while_the_database_is_unusable(db: Path) -> None:
    clock = FakeClock()
    store = SqliteBreakerStore(db, timeout=0.05)
    brk = CircuitBreaker(
        "closed-on-loss", store=store, clock=clock, bus=EventBus(), timers=False,
        store_retry_seconds=5, store_unavailable="fail-closed",
    )  # fmt: skip
    brk.call(lambda: None)
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    brk.call(lambda: None)  # this call ran; its outcome could not be stored: the breaker degrades
    ran = []
    with pytest.raises(CircuitOpenError) as refused:
        brk.call(lambda: ran.append(1))
    assert ran == []
    assert refused.value.state == "store_unavailable"
    other.execute("ROLLBACK")
    other.close()
    clock.advance(5)
    brk.call(lambda: ran.append(1))
    assert ran == [1]


def test_stores_from_settings(db: Path) -> None:
    store = breaker_store_from_settings({"store.backend": "sqlite", "store.flush_seconds": 0}, path=db)
    assert isinstance(store, SqliteBreakerStore)
    assert store.name == f"sqlite:{db}"
    ledger = budget_ledger_from_settings({"store.backend": "sqlite"}, path=db)
    assert isinstance(ledger, BatchedLedger) and isinstance(
        ledger.inner, SqliteBudgetLedger
    )  # decided locally, sent in batches
    ledger.close()
    assert breaker_store_from_settings({"store.backend": "memory"}).shared is False
    default = breaker_store_from_settings()  # store.backend defaults to sqlite, in the home database
    assert isinstance(default, BatchedBreakerStore)  # calls stay local; outcomes are sent in batches
    assert isinstance(default.inner, SqliteBreakerStore)
    assert default.path.name == "bounceback.db"
    default.close()


def test_budget_is_shared_by_two_ledgers_on_one_file(db: Path) -> None:
    clock = FakeClock()
    one = RetryBudget(
        0.5, min_per_second=0, name="api", clock=clock, ledger=SqliteBudgetLedger(db, clock=clock)
    )
    two = RetryBudget(
        0.5, min_per_second=0, name="api", clock=clock, ledger=SqliteBudgetLedger(db, clock=clock)
    )
    for _ in range(4):
        one.record_call("fetch")
    # 4 calls at 50%: two retries for both of them together (calls reach the ledger when `one` settles).
    assert [one.try_spend("fetch"), two.try_spend("fetch"), two.try_spend("fetch")] == [True, True, False]
    assert one.try_spend("fetch") is False
    clock.advance(11)  # the window passed: calls and retries left it
    assert two.reading().retries == 0


def test_budget_counts_locally_while_the_database_is_locked(db: Path) -> None:
    clock, bus = FakeClock(), EventBus()
    sink = RecordingSink(bus)
    ledger = SqliteBudgetLedger(db, clock=clock, timeout=0.05, bus=bus)
    budget = RetryBudget(0.0, min_per_second=0.2, window=10, name="api", clock=clock, ledger=ledger)
    assert budget.try_spend("fetch") is True  # shared: 1 of the 2 floor retries
    other = sqlite3.connect(db, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    # No StoreError reaches the caller: the budget runs on a local window (a fresh floor of 2).
    assert [budget.try_spend("fetch") for _ in range(3)] == [True, True, False]
    assert ledger.available is False
    assert [e.operation for e in sink.of(StoreUnavailable)] == ["api"]
    other.execute("ROLLBACK")
    other.close()
    clock.advance(5)  # retry_seconds: the next settle asks the database again
    assert budget.try_spend("fetch") is True  # the shared window still had one left
    assert budget.try_spend("fetch") is False
    assert ledger.available is True
    assert len(sink.of(StoreRecovered)) == 1


def test_eight_processes_share_one_breaker_and_one_probe_round(db: Path) -> None:
    shared_scenarios.run_hammer("sqlite", str(db))


def test_killed_probe_holder_frees_its_permit_after_the_lease(db: Path) -> None:
    shared_scenarios.run_killed_probe("sqlite", str(db))


def test_eight_processes_share_one_retry_budget(db: Path) -> None:
    shared_scenarios.run_budget_fleet("sqlite", str(db))
