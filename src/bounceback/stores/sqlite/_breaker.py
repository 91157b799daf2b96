"""Breaker state in the home SQLite database, shared by every process on one machine.

:class:`SqliteBreakerStore` implements the :class:`~bounceback.core.breaker._store.BreakerStore` port.
Each method is one transaction: ``record``, ``transition``, ``acquire_probe`` and ``finish_probe`` take the
write lock at their start (``BEGIN IMMEDIATE``), so a read-modify-write cannot lose another process's
update; ``load``, ``counts`` and ``probes`` read a snapshot without the write lock. No transaction is open
while the user's call runs.

Times are the wall-clock seconds the breaker passes in (``shared = True``), the same in every process of
the machine. A probe permit is a row in ``breaker_leases`` valid until ``now + lease``: when its holder
dies, the next ``acquire_probe`` that finds every permit taken drops the expired ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bounceback.core.breaker._pending import Deliver
from bounceback.core.breaker._store import SharedState, WindowSpec
from bounceback.core.breaker._window import WindowCounts
from bounceback.stores._home import register_migrations
from bounceback.stores.sqlite._link import DEFAULT_BUSY_TIMEOUT, SqliteLink
from bounceback.stores.sqlite._push import SqliteStateFeed
from bounceback.stores.sqlite._window import (
    SCHEMA,
    Totals,
    clear_window,
    count_window_add,
    time_window_add,
    time_window_counts,
)

__all__ = ["COMPONENT", "SqliteBreakerStore"]

COMPONENT = "breakers"
"""The home database component that owns the ``breaker_*`` tables."""

register_migrations(COMPONENT, SCHEMA)

_ROW = (
    "SELECT state, version, since, open_until, reopens, reason, probe_ok, next_token, kind, size, head, "
    "calls, failures, slow, consecutive FROM breaker_state WHERE key = ?"
)
_SAVE_WINDOW = (
    "UPDATE breaker_state SET kind = ?, size = ?, head = ?, calls = ?, failures = ?, slow = ?, "
    "consecutive = ? WHERE key = ?"
)


def _state(row: tuple[Any, ...]) -> SharedState:
    return SharedState(row[0], row[1], row[2], row[3], row[4], row[5])


def _fits(row: tuple[Any, ...], spec: WindowSpec) -> bool:
    return bool(row[8] == spec.kind and row[9] == float(spec.size))


def _ensure(conn: sqlite3.Connection, key: str) -> tuple[Any, ...]:
    row = conn.execute(_ROW, (key,)).fetchone()
    if row is None:
        conn.execute("INSERT INTO breaker_state (key) VALUES (?)", (key,))
        row = conn.execute(_ROW, (key,)).fetchone()
    return tuple(row)


class SqliteBreakerStore:
    """A :class:`~bounceback.core.breaker._store.BreakerStore` in a SQLite file (default: the home database).

    Every breaker of the same name using a store on the same file shares one window, one state and one
    set of probe permits, across threads and processes. ``timeout`` is how long an update waits for
    another process's lock before the store raises :class:`~bounceback.errors.StoreError` (the breaker then
    runs on local state and resynchronises later).

    >>> import tempfile, pathlib
    >>> from bounceback.core.breaker._store import WindowSpec
    >>> from bounceback.core.breaker._window import FAILED
    >>> store = SqliteBreakerStore(pathlib.Path(tempfile.mkdtemp()) / "bounceback.db")
    >>> counts, state = store.record("db", WindowSpec("count", 10), 3, FAILED, now=1.0)
    >>> counts.calls, counts.failures, state.state
    (4, 1, 'closed')
    >>> store.close()
    """

    __slots__ = ("_link", "name", "shared")

    def __init__(self, path: str | Path | None = None, *, timeout: float = DEFAULT_BUSY_TIMEOUT) -> None:
        self._link = SqliteLink(path, components=[COMPONENT], timeout=timeout)
        self.name = self._link.name
        """``sqlite:/path/to/bounceback.db``, for events and errors."""
        self.shared = True
        """Always true: other processes may change the state."""

    @property
    def path(self) -> Path:
        """The database file."""
        return self._link.path

    def watch(self, deliver: Deliver, keys: Callable[[], list[str]]) -> SqliteStateFeed:
        """Deliver the states of ``keys()`` whenever another connection commits (a ``PRAGMA data_version`` poll).

        Nothing is read on the caller's thread: the feed's own thread opens the file (once it exists).
        """
        return SqliteStateFeed(self.path, deliver, keys)

    def load(self, key: str) -> SharedState | None:
        """The stored state of ``key``, or None when nothing is stored yet."""

        def body(conn: sqlite3.Connection) -> SharedState | None:
            row = conn.execute(_ROW, (key,)).fetchone()
            return None if row is None else _state(row)

        return self._link.read(f"read breaker {key!r}", body)

    def record(
        self, key: str, spec: WindowSpec, successes: int, outcome: int, now: float
    ) -> tuple[WindowCounts, SharedState | None]:
        """Add ``successes`` then one ``outcome`` in one transaction; return the counts and the state."""

        def body(conn: sqlite3.Connection) -> tuple[WindowCounts, SharedState | None]:
            row = _ensure(conn, key)
            if _fits(row, spec):
                t = Totals(row[10], row[11], row[12], row[13])
            else:
                # A reconfigured window starts empty: old outcomes do not fit the new shape.
                clear_window(conn, key)
                t = Totals(None, 0, 0, 0)
            if spec.kind == "count":
                count_window_add(conn, key, int(spec.size), t, successes, outcome)
            else:
                time_window_add(conn, key, spec, t, successes, outcome, now)
            consecutive = row[14]
            if successes > 0:
                consecutive = 0
            if outcome >= 0:
                consecutive = consecutive + 1 if outcome & 1 else 0
            conn.execute(
                _SAVE_WINDOW,
                (spec.kind, float(spec.size), t.head, t.calls, t.failures, t.slow, consecutive, key),
            )
            return WindowCounts(t.calls, t.failures, t.slow, consecutive), _state(row)

        return self._link.write(f"record an outcome of breaker {key!r}", body)

    def record_many(
        self,
        key: str,
        spec: WindowSpec,
        runs: Sequence[tuple[int, int, float]],
        now: float,
        batch: tuple[str, int] | None = None,  # noqa: ARG002 - part of the port; see the docstring
    ) -> tuple[WindowCounts, SharedState | None]:
        """Add ``runs`` (``(successes, outcome, at)`` each, in order) in one transaction; return counts and state.

        With no runs it ages the window to ``now`` and returns it with the state (one transaction, which
        is how a batching process refreshes its cache). ``batch`` is accepted for the port: a SQLite transaction
        either commits or not, so a failed one is resent without any risk of counting it twice.
        """
        if not runs:
            return self.record(key, spec, 0, -1, now)

        def body(conn: sqlite3.Connection) -> tuple[WindowCounts, SharedState | None]:
            row = _ensure(conn, key)
            if _fits(row, spec):
                t = Totals(row[10], row[11], row[12], row[13])
            else:
                clear_window(conn, key)
                t = Totals(None, 0, 0, 0)
            consecutive = row[14]
            for successes, outcome, at in runs:
                if spec.kind == "count":
                    count_window_add(conn, key, int(spec.size), t, successes, outcome)
                else:
                    time_window_add(conn, key, spec, t, successes, outcome, at)
                if successes > 0:
                    consecutive = 0
                if outcome >= 0:
                    consecutive = consecutive + 1 if outcome & 1 else 0
            if spec.kind == "time":
                time_window_add(conn, key, spec, t, 0, -1, now)  # age the window to the flush time
            conn.execute(
                _SAVE_WINDOW,
                (spec.kind, float(spec.size), t.head, t.calls, t.failures, t.slow, consecutive, key),
            )
            return WindowCounts(t.calls, t.failures, t.slow, consecutive), _state(row)

        return self._link.write(f"record {len(runs)} batched outcomes of breaker {key!r}", body)

    def counts(self, key: str, spec: WindowSpec, now: float) -> WindowCounts:
        """The window counts at ``now``, without recording anything."""

        def body(conn: sqlite3.Connection) -> WindowCounts | None:
            row = conn.execute(_ROW, (key,)).fetchone()
            if row is None:
                return WindowCounts()
            if not _fits(row, spec):
                return None  # reconfigured: the window must restart, which is a write
            if spec.kind == "count":
                return WindowCounts(row[11], row[12], row[13], row[14])
            calls, failures, slow = time_window_counts(
                conn, key, spec, Totals(row[10], row[11], row[12], row[13]), now
            )
            return WindowCounts(calls, failures, slow, row[14])

        def reshape(conn: sqlite3.Connection) -> WindowCounts | None:
            row = conn.execute(_ROW, (key,)).fetchone()
            if row is not None and not _fits(row, spec):
                clear_window(conn, key)
                conn.execute(_SAVE_WINDOW, (spec.kind, float(spec.size), None, 0, 0, 0, row[14], key))
                return WindowCounts(0, 0, 0, row[14])
            return body(conn)  # another process reshaped it meanwhile

        counts = self._link.read(f"read the window of breaker {key!r}", body)
        if counts is None:
            # A breaker reads its counts right after a reconfiguration: the shared window starts anew.
            counts = self._link.write(f"restart the window of breaker {key!r}", reshape)
        return counts or WindowCounts()

    def transition(self, key: str, expected: int, new: SharedState, clear: bool) -> SharedState:
        """Write ``new`` (as version ``expected + 1``) if the stored version is ``expected``."""

        def body(conn: sqlite3.Connection) -> SharedState:
            row = _ensure(conn, key)
            if row[1] != expected:
                return _state(row)  # another process got there first: its state wins
            version = expected + 1
            conn.execute(
                "UPDATE breaker_state SET state = ?, version = ?, since = ?, open_until = ?, reopens = ?, "
                "reason = ?, probe_ok = 0 WHERE key = ?",
                (new.state, version, new.since, new.open_until, new.reopens, new.reason, key),
            )
            conn.execute("DELETE FROM breaker_leases WHERE key = ?", (key,))
            if clear:
                clear_window(conn, key)
                conn.execute(
                    "UPDATE breaker_state SET head = NULL, calls = 0, failures = 0, slow = 0, "
                    "consecutive = 0 WHERE key = ?",
                    (key,),
                )
            return SharedState(new.state, version, new.since, new.open_until, new.reopens, new.reason)

        return self._link.write(f"change the state of breaker {key!r}", body)

    def acquire_probe(self, key: str, version: int, limit: int, now: float, lease: float) -> int | None:
        """Reserve one of ``limit`` half-open permits for ``version``, valid until ``now + lease``."""

        def body(conn: sqlite3.Connection) -> int | None:
            row = conn.execute(
                "SELECT state, version, next_token FROM breaker_state WHERE key = ?", (key,)
            ).fetchone()
            if row is None or row[0] != "half_open" or row[1] != version:
                return None
            held = conn.execute("SELECT count(*) FROM breaker_leases WHERE key = ?", (key,)).fetchone()[0]
            if held >= limit:
                # Permits whose holder died (their lease ran out) free themselves here.
                gone = conn.execute("DELETE FROM breaker_leases WHERE key = ? AND until <= ?", (key, now))
                held -= gone.rowcount
                if held >= limit:
                    return None
            token: int = row[2]
            conn.execute(
                "INSERT INTO breaker_leases (key, token, until) VALUES (?, ?, ?)", (key, token, now + lease)
            )
            conn.execute("UPDATE breaker_state SET next_token = ? WHERE key = ?", (token + 1, key))
            return token

        return self._link.write(f"reserve a probe of breaker {key!r}", body)

    def finish_probe(self, key: str, version: int, token: int, success: bool | None) -> int:
        """Give a permit back, count it when ``success``; return the version's successes (-1 if stale)."""

        def body(conn: sqlite3.Connection) -> int:
            row = conn.execute("SELECT version, probe_ok FROM breaker_state WHERE key = ?", (key,)).fetchone()
            if row is None or row[0] != version:
                return -1
            conn.execute("DELETE FROM breaker_leases WHERE key = ? AND token = ?", (key, token))
            ok: int = row[1]
            if success:
                ok += 1
                conn.execute("UPDATE breaker_state SET probe_ok = ? WHERE key = ?", (ok, key))
            return ok

        return self._link.write(f"finish a probe of breaker {key!r}", body)

    def probes(self, key: str, now: float) -> int:
        """Permits held now (leases not yet run out) for the current version."""

        def body(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT count(*) FROM breaker_leases WHERE key = ? AND until > ?", (key, now)
            ).fetchone()
            return int(row[0])

        return self._link.read(f"count the probes of breaker {key!r}", body)

    def keys(self) -> list[str]:
        """The names of every breaker stored in this database (for status output and dashboards)."""

        def body(conn: sqlite3.Connection) -> list[str]:
            return [str(r[0]) for r in conn.execute("SELECT key FROM breaker_state ORDER BY key")]

        return self._link.read("list the breakers", body)

    def close(self) -> None:
        """Close the connection; the store reopens it if used again."""
        self._link.close()

    def __enter__(self) -> SqliteBreakerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SqliteBreakerStore({str(self.path)!r})"
