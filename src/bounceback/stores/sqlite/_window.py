"""The SQL side of a breaker's window in the home database: the ``breakers`` schema and window updates.

A window is a row of running totals in ``breaker_state`` plus rows in ``breaker_window``, and every update
is O(1) statements whatever the window's size:

* **count window** of ``size`` calls: a ring of positions ``head % size``, where ``head`` counts every
  outcome ever recorded. Only failed or slow outcomes have a row (a success is the absence of one), so a
  healthy service writes almost nothing, and an outcome that falls out of the ring is found by position
  with ``DELETE ... RETURNING``.
* **time window** of ``size`` seconds in :func:`~bounceback.core.breaker._window.time_buckets` buckets: one row
  per bucket, keyed by its absolute index ``floor(now / width)``, so forgetting old buckets is one
  ``DELETE ... WHERE slot <= newest - buckets``.

These functions run inside the caller's transaction and never commit.
"""

from __future__ import annotations

import math
import sqlite3
from dataclasses import dataclass

from bounceback.core.breaker._store import WindowSpec
from bounceback.core.breaker._window import time_buckets

__all__ = ["SCHEMA", "Totals", "clear_window", "count_window_add", "time_window_add", "time_window_counts"]

SCHEMA = [
    """
    CREATE TABLE breaker_state (
        key         TEXT    PRIMARY KEY,
        state       TEXT    NOT NULL DEFAULT 'closed',
        version     INTEGER NOT NULL DEFAULT 0,
        since       REAL    NOT NULL DEFAULT 0,
        open_until  REAL,
        reopens     INTEGER NOT NULL DEFAULT 0,
        reason      TEXT    NOT NULL DEFAULT '',
        probe_ok    INTEGER NOT NULL DEFAULT 0,
        next_token  INTEGER NOT NULL DEFAULT 1,
        kind        TEXT    NOT NULL DEFAULT 'count',
        size        REAL    NOT NULL DEFAULT 100,
        head        INTEGER,
        calls       INTEGER NOT NULL DEFAULT 0,
        failures    INTEGER NOT NULL DEFAULT 0,
        slow        INTEGER NOT NULL DEFAULT 0,
        consecutive INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE breaker_window (
        key      TEXT    NOT NULL,
        slot     INTEGER NOT NULL,
        calls    INTEGER NOT NULL,
        failures INTEGER NOT NULL,
        slow     INTEGER NOT NULL,
        PRIMARY KEY (key, slot)
    ) WITHOUT ROWID;
    CREATE TABLE breaker_leases (
        key   TEXT    NOT NULL,
        token INTEGER NOT NULL,
        until REAL    NOT NULL,
        PRIMARY KEY (key, token)
    ) WITHOUT ROWID;
    """
]
"""The ``breakers`` component's migrations (released scripts never change; append new ones)."""


@dataclass(slots=True)
class Totals:
    """The running totals of one window, read from and written back to ``breaker_state``."""

    head: int | None
    calls: int
    failures: int
    slow: int


_TAKE_RANGE = (
    "DELETE FROM breaker_window WHERE key = ? AND slot >= ? AND slot < ? RETURNING calls, failures, slow"
)
_TAKE_OLD = "DELETE FROM breaker_window WHERE key = ? AND slot <= ? RETURNING calls, failures, slow"
_PUT = (
    "INSERT INTO breaker_window (key, slot, calls, failures, slow) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (key, slot) DO UPDATE SET calls = calls + excluded.calls, "
    "failures = failures + excluded.failures, slow = slow + excluded.slow"
)


def clear_window(conn: sqlite3.Connection, key: str) -> None:
    """Forget every outcome of ``key``'s window (the totals are reset by the caller)."""
    conn.execute("DELETE FROM breaker_window WHERE key = ?", (key,))


def _subtract(t: Totals, rows: list[tuple[int, int, int]]) -> None:
    for calls, failures, slow in rows:
        t.calls -= calls
        t.failures -= failures
        t.slow -= slow


def count_window_add(
    conn: sqlite3.Connection, key: str, size: int, t: Totals, successes: int, outcome: int
) -> None:
    """Add ``successes`` then (if ``outcome >= 0``) one outcome to a count window of ``size`` calls."""
    head = t.head or 0
    if successes > 0:
        if successes >= size:
            clear_window(conn, key)
            t.calls, t.failures, t.slow = size, 0, 0
        else:
            start = head % size
            end = start + successes
            # Positions that the batch overwrites: one range, or two when it wraps around the ring.
            ranges = [(start, min(end, size))] + ([(0, end - size)] if end > size else [])
            for low, high in ranges:
                for _, failures, slow in conn.execute(_TAKE_RANGE, (key, low, high)).fetchall():
                    t.failures -= failures
                    t.slow -= slow
            t.calls = min(t.calls + successes, size)
        head += successes
    if outcome >= 0:
        slot = head % size
        old = conn.execute(
            "DELETE FROM breaker_window WHERE key = ? AND slot = ? RETURNING calls, failures, slow",
            (key, slot),
        ).fetchone()
        if t.calls >= size:
            if old is not None:
                t.failures -= old[1]
                t.slow -= old[2]
        else:
            t.calls += 1
        failed, slow = outcome & 1, (outcome >> 1) & 1
        if failed or slow:
            conn.execute(_PUT, (key, slot, 1, failed, slow))
            t.failures += failed
            t.slow += slow
        head += 1
    t.head = head


def _shape(spec: WindowSpec) -> tuple[int, float]:
    buckets = time_buckets(float(spec.size))
    return buckets, float(spec.size) / buckets


def time_window_add(
    conn: sqlite3.Connection, key: str, spec: WindowSpec, t: Totals, successes: int, outcome: int, now: float
) -> None:
    """Expire old buckets of a time window at ``now``, then add ``successes`` and one outcome."""
    buckets, width = _shape(spec)
    index = math.floor(now / width)
    if t.head is None:
        t.head = index
    elif index > t.head:
        if index - t.head >= buckets:
            clear_window(conn, key)
            t.calls = t.failures = t.slow = 0
        else:
            _subtract(t, conn.execute(_TAKE_OLD, (key, index - buckets)).fetchall())
        t.head = index
    calls = max(successes, 0)
    failed = slow = 0
    if outcome >= 0:
        calls += 1
        failed, slow = outcome & 1, (outcome >> 1) & 1
    if calls:
        # A reading that lags the newest bucket (another process's clock) counts in the newest bucket.
        conn.execute(_PUT, (key, t.head, calls, failed, slow))
        t.calls += calls
        t.failures += failed
        t.slow += slow


def time_window_counts(
    conn: sqlite3.Connection, key: str, spec: WindowSpec, t: Totals, now: float
) -> tuple[int, int, int]:
    """The (calls, failures, slow) of a time window at ``now``, without writing."""
    buckets, width = _shape(spec)
    index = math.floor(now / width)
    if t.head is None or index <= t.head:
        return t.calls, t.failures, t.slow
    if index - t.head >= buckets:
        return 0, 0, 0
    row = conn.execute(
        "SELECT coalesce(sum(calls), 0), coalesce(sum(failures), 0), coalesce(sum(slow), 0) "
        "FROM breaker_window WHERE key = ? AND slot <= ?",
        (key, index - buckets),
    ).fetchone()
    return t.calls - row[0], t.failures - row[1], t.slow - row[2]
