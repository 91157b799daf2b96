"""Retry budgets batched like breaker outcomes: decided in the process, counted in the store exactly once.

Real stores (a SQLite file, a redis-server process); virtual time (the ledgers read ``FakeClock.wall``, the
batching ledgers measure staleness on ``FakeClock.monotonic``), and the tests drive the flush rounds.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounceback.core._flusher import Flusher
from bounceback.core.retry._batched_ledger import BatchedLedger
from bounceback.core.retry._budget import BudgetRule, RetryBudget
from bounceback.errors import StoreError
from bounceback.stores import RedisBudgetLedger, SqliteBudgetLedger, budget_ledger_from_settings
from bounceback.testing import FakeClock
from tests.redis_server import RedisServer

RULE = BudgetRule(0.2, 0.0, 10.0)
_names = itertools.count()


def _inner(kind: str, target: str, clock: FakeClock) -> Any:
    if kind == "redis":
        return RedisBudgetLedger(target, clock=clock)
    return SqliteBudgetLedger(target, clock=clock)


@pytest.fixture(params=["sqlite", "redis"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        return "redis", server.url
    return "sqlite", str(tmp_path / "budget.db")


def test_a_process_decides_locally_and_sends_one_batch_per_round(backend: tuple[str, str]) -> None:
    kind, target = backend
    clock = FakeClock()
    ledger = BatchedLedger(_inner(kind, target, clock), monotonic=clock.monotonic, background=False)
    name = f"api-{next(_names)}"
    budget = RetryBudget(0.2, min_per_second=0, name=name, clock=clock, ledger=ledger)
    try:
        for _ in range(1000):
            budget.record_call()
        granted = sum(budget.try_spend("op") for _ in range(500))
        # The first settle read the fleet's (empty) window once; every decision after it was local.
        assert ledger.flushes == 1
        assert granted == 200  # 20% of 1,000 calls, decided from the local counts
        ledger.flush()
        assert ledger.flushes == 2  # one batch carried 1,000 calls and 200 retries
        reading = ledger.inner.settle_many(name, RULE, 0, 0.0, 0, None)
        assert (reading.calls, reading.retries) == (1000.0, 200.0)
    finally:
        ledger.close()


def test_a_resent_batch_is_counted_once(backend: tuple[str, str]) -> None:
    kind, target = backend
    clock = FakeClock()
    inner = _inner(kind, target, clock)
    name = f"resend-{next(_names)}"
    try:
        first = inner.settle_many(name, RULE, 50, 0.0, 3, ("p1", 1))
        again = inner.settle_many(name, RULE, 50, 0.0, 3, ("p1", 1))  # a timeout made the sender retry
        other = inner.settle_many(name, RULE, 10, 0.0, 1, ("p2", 1))  # another process's first batch
        assert (first.calls, first.retries) == (50.0, 3.0)
        assert (again.calls, again.retries) == (50.0, 3.0)
        assert (other.calls, other.retries) == (60.0, 4.0)
    finally:
        inner.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    steps=st.lists(
        st.tuples(st.integers(0, 2), st.sampled_from(["calls", "spend", "flush"]), st.integers(1, 40)),
        min_size=1,
        max_size=60,
    )
)
def test_every_call_and_granted_retry_lands_once_and_overspend_is_bounded(
    tmp_path: Path, steps: list[tuple[int, str, int]]
) -> None:
    clock = FakeClock()
    path = tmp_path / f"prop-{next(_names)}.db"
    ledgers = [
        BatchedLedger(SqliteBudgetLedger(path, clock=clock), monotonic=clock.monotonic, background=False)
        for _ in range(3)
    ]
    made = granted = 0
    try:
        for who, action, n in steps:
            ledger = ledgers[who]
            if action == "calls":
                ledger.settle("pool", RULE, 0.0, n, 0.0, False)
                made += n
            elif action == "spend":
                before = [lg.settle("pool", RULE, 0.0, 0, 0.0, False) for lg in ledgers]
                left = max(b.available for b in before)  # the most any process believes is left
                got = sum(ledger.settle("pool", RULE, 0.0, 0, 0.0, True).granted for _ in range(n))
                granted += got
                assert got <= max(0.0, left) + 1e-9  # one process never grants past what it believes is left
            else:
                ledger.flush()
        for ledger in ledgers:
            ledger.flush()
        final = ledgers[0].inner.settle_many("pool", RULE, 0, 0.0, 0, None)  # the store's own count
        assert (final.calls, final.retries) == (float(made), float(granted))  # each exactly once
        # Each of the 3 processes grants at most the allowance from its own view: the fleet at most 3x it.
        assert granted <= 3 * RULE.allowance(made) + 1e-9
    finally:
        for ledger in ledgers:
            ledger.close()


def test_while_the_store_is_away_budgets_count_locally_and_send_it_later(
    own_redis_server: RedisServer,
) -> None:
    clock = FakeClock()
    ledger = BatchedLedger(
        RedisBudgetLedger(own_redis_server.url, clock=clock, timeout=0.3),
        monotonic=clock.monotonic, background=False, staleness=1.0,
    )  # fmt: skip
    try:
        assert not ledger.settle("away", RULE, 0.0, 100, 0.0, False).granted
        ledger.flush()
        own_redis_server.kill()
        with pytest.raises(StoreError):
            ledger.flush()  # nothing to send, but a refresh: fails
        ledger.settle("away", RULE, 0.0, 50, 0.0, False)
        with pytest.raises(StoreError):
            ledger.flush()  # the batch is kept
        clock.advance(1.5)  # past store.staleness: decisions come from this process's own counts
        assert not ledger.available
        local = ledger.settle("away", RULE, 0.0, 0, 0.0, True)
        assert local.granted and local.calls == 150.0  # this process's own calls of the window
        own_redis_server.start()  # an empty server: the window starts afresh with what was kept
        ledger.flush()
        assert ledger.available and ledger.pending("away") == (0, 0)
        reading = ledger.inner.settle_many("away", RULE, 0, 0.0, 0, None)
        assert (reading.calls, reading.retries) == (50.0, 1.0)  # the kept batch and the local grant, once
    finally:
        ledger.close()


def test_settings_give_budgets_and_breakers_one_flusher(redis_server: RedisServer) -> None:
    from bounceback.stores import breaker_store_from_settings

    values = {"store.backend": "redis", "store.redis_url": redis_server.url, "store.flush_seconds": 0.07}
    ledger = budget_ledger_from_settings(values)
    store = breaker_store_from_settings(values)
    try:
        assert isinstance(ledger, BatchedLedger)
        flusher = ledger._flusher
        assert isinstance(flusher, Flusher) and store._flusher is flusher  # type: ignore[attr-defined]
        assert flusher.interval == 0.07
        assert isinstance(
            budget_ledger_from_settings({**values, "store.flush_seconds": 0}), RedisBudgetLedger
        )
    finally:
        ledger.close()  # type: ignore[attr-defined]
        store.close()  # type: ignore[attr-defined]
