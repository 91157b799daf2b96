"""Retry budgets shared by the processes of one machine, in the home SQLite database.

:class:`SqliteBudgetLedger` implements the :class:`~bounceback.core.retry._budget.BudgetLedger` port: a budget
spent by one worker process is felt by all of them. Each ``settle`` is one ``BEGIN IMMEDIATE``
transaction. The window is a ring of ``slices`` slices, each a row keyed by its absolute index
``floor(now / width)``, so old slices leave with one ``DELETE``.

When the database cannot be used (locked past the busy timeout, corrupt, read-only), budgets count locally
for a while instead of failing the user's call (:class:`~bounceback.stores._ledger_fallback.LedgerFallback`).

Time: the ``now`` a budget passes in is its own process's monotonic clock, which means nothing to other
processes, so the ledger reads the wall clock (``clock.wall()``) itself, inside the transaction: readings
taken under the write lock are in order across the processes of the machine.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

from bounceback.core._events import EventBus
from bounceback.core._time import SYSTEM_CLOCK, Clock
from bounceback.core.retry._budget import BudgetReading, BudgetRule
from bounceback.errors import ConfigError
from bounceback.stores._home import register_migrations
from bounceback.stores._ledger_fallback import LedgerFallback
from bounceback.stores.sqlite._link import DEFAULT_BUSY_TIMEOUT, SqliteLink

__all__ = ["SqliteBudgetLedger", "spread"]

COMPONENT = "budgets"

register_migrations(
    COMPONENT,
    [
        """
        CREATE TABLE budget_windows (
            key     TEXT    PRIMARY KEY,
            width   REAL    NOT NULL,
            head    INTEGER NOT NULL,
            calls   REAL    NOT NULL DEFAULT 0,
            retries REAL    NOT NULL DEFAULT 0
        );
        CREATE TABLE budget_slices (
            key     TEXT    NOT NULL,
            slot    INTEGER NOT NULL,
            calls   REAL    NOT NULL DEFAULT 0,
            retries REAL    NOT NULL DEFAULT 0,
            PRIMARY KEY (key, slot)
        ) WITHOUT ROWID;
        """,
        # 2: the last batch each process sent per budget (settle_many), so a resent batch is added once.
        """
        CREATE TABLE budget_batches (
            key      TEXT    NOT NULL,
            producer TEXT    NOT NULL,
            seq      INTEGER NOT NULL,
            PRIMARY KEY (key, producer)
        ) WITHOUT ROWID;
        """,
    ],
)

_ADD = (
    "INSERT INTO budget_slices (key, slot, calls, retries) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key, slot) DO UPDATE SET calls = calls + excluded.calls, retries = retries + excluded.retries"
)


def spread(
    calls: int, now: float, span: float, head: int, slices: int, width: float
) -> list[tuple[int, float]]:
    """Share ``calls`` made evenly over ``(now - span, now]`` among the slices still in the window.

    Returns ``(slot, part)`` pairs; the part of the span older than the window is dropped, as in
    :class:`~bounceback.core.retry._budget.LocalLedger`.

    >>> spread(10, now=10.0, span=2.0, head=10, slices=10, width=1.0)
    [(8, 5.0), (9, 5.0)]
    >>> spread(3, now=10.5, span=0.0, head=10, slices=10, width=1.0)
    [(10, 3.0)]
    """
    start = now - span
    if span <= 0 or start >= head * width:
        return [(head, float(calls))]
    rate = calls / span
    oldest = (head - slices + 1) * width
    start = max(start, oldest)
    first = max(math.floor(start / width), head - slices + 1)
    out = []
    for i in range(first, head + 1):
        part = rate * (min(now, (i + 1) * width) - max(start, i * width))
        if part > 0:
            out.append((i, part))
    return out


def _settle(
    conn: sqlite3.Connection,
    key: str,
    rule: BudgetRule,
    slices: int,
    wall: float,
    calls: int,
    span: float,
    spend: bool,
    add: int,
) -> BudgetReading:
    """One settle inside a write transaction: expire, deposit ``calls``, add ``add`` granted retries, spend."""
    width = rule.window / slices
    index = math.floor(wall / width)
    row = conn.execute(
        "SELECT width, head, calls, retries FROM budget_windows WHERE key = ?", (key,)
    ).fetchone()
    if row is None or row[0] != width or index - row[1] >= slices:
        # New, reshaped (the window setting changed) or idle for a whole window: start empty.
        conn.execute("DELETE FROM budget_slices WHERE key = ?", (key,))
        head, total_calls, total_retries = index, 0.0, 0.0
    else:
        head, total_calls, total_retries = row[1], row[2], row[3]
        if index > head:
            for c, r in conn.execute(
                "DELETE FROM budget_slices WHERE key = ? AND slot <= ? RETURNING calls, retries",
                (key, index - slices),
            ).fetchall():
                total_calls -= c
                total_retries -= r
            # Repeated subtraction of fractions must not leave a negative crumb behind.
            total_calls, total_retries = max(0.0, total_calls), max(0.0, total_retries)
            head = index
    if calls:
        for slot, part in spread(calls, max(wall, head * width), span, head, slices, width):
            conn.execute(_ADD, (key, slot, part, 0.0))
            total_calls += part
    if add > 0:
        conn.execute(_ADD, (key, head, 0.0, float(add)))
        total_retries += add
    allowance = rule.allowance(total_calls)
    granted = spend and total_retries + 1.0 <= allowance + 1e-9
    if granted:
        conn.execute(_ADD, (key, head, 0.0, 1.0))
        total_retries += 1.0
    conn.execute(
        "INSERT OR REPLACE INTO budget_windows (key, width, head, calls, retries) VALUES (?, ?, ?, ?, ?)",
        (key, width, head, total_calls, total_retries),
    )
    return BudgetReading(granted, total_calls, total_retries, allowance)


class SqliteBudgetLedger:
    """A :class:`~bounceback.core.retry._budget.BudgetLedger` in a SQLite file (default: the home database).

    >>> import tempfile, pathlib
    >>> from bounceback.core.retry._budget import RetryBudget
    >>> ledger = SqliteBudgetLedger(pathlib.Path(tempfile.mkdtemp()) / "bounceback.db")
    >>> budget = RetryBudget(0.5, min_per_second=0, name="payments", ledger=ledger)
    >>> for _ in range(4):
    ...     budget.record_call("pay")
    >>> [budget.try_spend("pay") for _ in range(3)]
    [True, True, False]
    >>> ledger.close()
    """

    __slots__ = ("_clock", "_fallback", "_link", "name", "slices")

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        slices: int = 10,
        clock: Clock | None = None,
        timeout: float = DEFAULT_BUSY_TIMEOUT,
        bus: EventBus | None = None,
        retry_seconds: float = 5.0,
    ) -> None:
        if isinstance(slices, bool) or not isinstance(slices, int) or not 1 <= slices <= 1000:
            raise ConfigError("slices", slices, "a whole number from 1 to 1000")
        self.slices = slices
        self._clock = clock or SYSTEM_CLOCK
        self._link = SqliteLink(path, components=[COMPONENT], timeout=timeout)
        self.name = self._link.name
        """``sqlite:/path/to/bounceback.db``."""
        self._fallback = LedgerFallback(self.name, self._clock, bus, retry_seconds)

    @property
    def available(self) -> bool:
        """False while the database cannot be used and budgets count locally (see ``LedgerFallback``)."""
        return self._fallback.available

    def settle(
        self,
        key: str,
        rule: BudgetRule,
        now: float,  # noqa: ARG002 - a process-local monotonic reading; the wall clock is used instead
        calls: int,
        span: float,
        spend: bool,
    ) -> BudgetReading:
        """Record ``calls`` made over the last ``span`` seconds; spend one retry if ``spend`` and allowed."""

        def body(conn: sqlite3.Connection) -> BudgetReading:
            return _settle(conn, key, rule, self.slices, self._clock.wall(), calls, span, spend, 0)

        def shared() -> BudgetReading:
            return self._link.write(f"settle the retry budget {key!r}", body)

        return self._fallback.settle(shared, key, rule, calls, span, spend)

    def settle_many(
        self, key: str, rule: BudgetRule, calls: int, span: float, retries: int, batch: tuple[str, int] | None
    ) -> BudgetReading:
        """Add a process's batch in one transaction: ``calls`` over ``span`` seconds and ``retries`` it granted.

        No fallback here: a failure raises :class:`~bounceback.errors.StoreError` and the batching ledger keeps
        the batch and resends it under the same ``batch`` id (``(producer, seq)``), which is added once.
        """

        def body(conn: sqlite3.Connection) -> BudgetReading:
            add_calls, add = calls, retries
            if batch is not None:
                producer, seq = batch
                row = conn.execute(
                    "SELECT seq FROM budget_batches WHERE key = ? AND producer = ?", (key, producer)
                ).fetchone()
                if row is not None and seq <= row[0]:
                    add_calls, add = 0, 0  # a resent batch that landed the first time
                else:
                    conn.execute(
                        "INSERT OR REPLACE INTO budget_batches (key, producer, seq) VALUES (?, ?, ?)",
                        (key, producer, seq),
                    )
            return _settle(conn, key, rule, self.slices, self._clock.wall(), add_calls, span, False, add)

        return self._link.write(f"send a batch to the retry budget {key!r}", body)

    def close(self) -> None:
        """Close the connection; the ledger reopens it if used again."""
        self._link.close()

    def __repr__(self) -> str:
        return f"SqliteBudgetLedger({str(self._link.path)!r}, slices={self.slices})"
