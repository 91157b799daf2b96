"""The recovery journal in the home database: what the CLI, the dashboard and the tickets read.

:class:`Journal` answers queries (runs since a time, the attempts of a run, active runs, counts per
operation, breaker changes) and writes the one thing a reader may write: a **cancel request** for a run,
which the journal writer of the process that owns the run picks up (see ``JournalWriter``).

The rows themselves are written by ``JournalWriter``, a subscriber of the event bus that batches on a
background thread.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from bounceback.core._time import SYSTEM_CLOCK, Clock
from bounceback.errors import ConfigError
from bounceback.stores._component import HomeComponent
from bounceback.stores._home import transaction, translate_errors
from bounceback.stores.journal._schema import (
    AttemptEntry,
    BreakerChange,
    CancelRequest,
    LimitReading,
    OperationCounts,
    RunEntry,
)
from bounceback.stores.settings._rows import current_user

__all__ = ["HOST", "Journal", "is_process_alive"]

HOST = socket.gethostname()
"""This machine's name, as written in the journal next to the process id."""

_RUN_COLUMNS = (
    "run_id, operation, started_at, updated_at, ended_at, outcome, reason, attempts, max_attempts, "
    "deadline_at, next_try_at, last_error_type, last_error, last_kind, breaker_state, pid, host"
)
_ATTEMPT_COLUMNS = (
    "run_id, attempt, operation, at, elapsed, outcome, error_type, error, kind, kind_reason, delay, "
    "retry_at, breaker_state"
)


def is_process_alive(pid: int, host: str = HOST) -> bool:
    """True unless process ``pid`` on ``host`` is known to be gone.

    A process on another host cannot be checked from here and counts as alive.

    >>> is_process_alive(os.getpid())
    True
    """
    if host != HOST:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it just belongs to someone else
    except OSError:
        return False
    return True


class Journal(HomeComponent):
    """Read the journal of the home database (``path``, default ``<home>/bounceback.db``).

    >>> import tempfile, pathlib
    >>> journal = Journal(pathlib.Path(tempfile.mkdtemp()) / "bounceback.db")
    >>> journal.runs(), journal.active_runs()
    ([], [])
    >>> journal.close()
    """

    component = "journal"

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        home: str | Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
        timeout: float = 5.0,
    ) -> None:
        super().__init__(path, home=home, timeout=timeout)
        self._clock = clock

    def __enter__(self) -> Journal:
        return self

    def _query(self, action: str, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._connection()
            with translate_errors(self.path, action):
                return list(conn.execute(sql, tuple(params)))

    # -- runs and attempts ---------------------------------------------------------------------------

    def runs(
        self,
        *,
        since: float | None = None,
        operation: str | None = None,
        until: float | None = None,
        limit: int | None = 1000,
    ) -> list[RunEntry]:
        """Runs active at or after wall time ``since`` (and started before ``until``), oldest first.

        A run counts when it ended (or was last heard of) at or after ``since``, so a run that started
        before the window and is still going appears too. ``limit`` keeps the newest runs.
        """
        where = ["coalesce(ended_at, updated_at) >= ?"]
        params: list[Any] = [since if since is not None else -1e300]
        if until is not None:
            where.append("started_at <= ?")
            params.append(until)
        if operation is not None:
            where.append("operation = ?")
            params.append(operation)
        sql = f"SELECT {_RUN_COLUMNS} FROM journal_runs WHERE {' AND '.join(where)} ORDER BY started_at DESC"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        rows = self._query("read the journal runs", sql, params)
        return [_run(row) for row in reversed(rows)]

    def run(self, run_id: str) -> RunEntry | None:
        """One run by its id, or None."""
        rows = self._query(
            "read a journal run", f"SELECT {_RUN_COLUMNS} FROM journal_runs WHERE run_id = ?", [run_id]
        )
        return _run(rows[0]) if rows else None

    def attempts(self, run_id: str) -> list[AttemptEntry]:
        """The attempts of one run, in order."""
        rows = self._query(
            "read the attempts of a run",
            f"SELECT {_ATTEMPT_COLUMNS} FROM journal_attempts WHERE run_id = ? ORDER BY attempt",
            [run_id],
        )
        return [AttemptEntry(*row) for row in rows]

    def attempts_of(self, run_ids: Iterable[str]) -> dict[str, list[AttemptEntry]]:
        """The attempts of several runs at once, by run id (each list in order)."""
        ids = list(dict.fromkeys(run_ids))
        found: dict[str, list[AttemptEntry]] = {run_id: [] for run_id in ids}
        # SQLite limits bound parameters per statement; ask in slices.
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._query(
                "read the attempts of runs",
                f"SELECT {_ATTEMPT_COLUMNS} FROM journal_attempts WHERE run_id IN ({marks}) "
                "ORDER BY run_id, attempt",
                chunk,
            )
            for row in rows:
                found[row[0]].append(AttemptEntry(*row))
        return found

    def active_runs(self, *, operation: str | None = None) -> list[RunEntry]:
        """Runs without an outcome whose process is alive, oldest first."""
        sql = f"SELECT {_RUN_COLUMNS} FROM journal_runs WHERE outcome IS NULL"
        params: list[Any] = []
        if operation is not None:
            sql += " AND operation = ?"
            params.append(operation)
        rows = self._query("read the active runs", sql + " ORDER BY started_at", params)
        return [entry for entry in map(_run, rows) if entry.status == "running"]

    def operations(self) -> list[str]:
        """Every operation the journal has runs, breaker changes or rejections for, sorted."""
        rows = self._query(
            "read the journal operations",
            "SELECT operation FROM journal_runs UNION SELECT name FROM journal_breaker_changes "
            "UNION SELECT operation FROM journal_rejections ORDER BY 1",
        )
        return [str(row[0]) for row in rows]

    def counts(self, *, since: float | None = None) -> dict[str, OperationCounts]:
        """Per operation: runs by outcome, failed attempts and rejections since wall time ``since``."""
        start = since if since is not None else -1e300
        with self._lock:
            conn = self._connection()
            with translate_errors(self.path, "count the journal entries"):
                conn.execute("BEGIN")  # one snapshot for the three reads
                try:
                    runs = list(
                        conn.execute(
                            "SELECT operation, outcome, pid, host, coalesce(ended_at, updated_at) "
                            "FROM journal_runs WHERE coalesce(ended_at, updated_at) >= ?",
                            (start,),
                        )
                    )
                    failed = dict(
                        conn.execute(
                            "SELECT operation, count(*) FROM journal_attempts WHERE outcome = 'failed' "
                            "AND at >= ? GROUP BY operation",
                            (start,),
                        ).fetchall()
                    )
                    rejected = dict(
                        conn.execute(
                            "SELECT operation, sum(count) FROM journal_rejections WHERE minute >= ? "
                            "GROUP BY operation",
                            (int(start // 60) if since is not None else -(2**62),),
                        ).fetchall()
                    )
                finally:
                    conn.execute("COMMIT")
        tally: dict[str, list[Any]] = {}
        for op, outcome, pid, host, last in runs:
            row = tally.setdefault(op, [0, 0, 0, 0, 0, None])
            row[0] += 1
            if outcome == "recovered":
                row[1] += 1
            elif outcome == "gave-up":
                row[2] += 1
            elif is_process_alive(pid, host):
                row[3] += 1
            else:
                row[4] += 1
            row[5] = last if row[5] is None else max(row[5], last)
        names = sorted(set(tally) | set(failed) | set(rejected))
        out: dict[str, OperationCounts] = {}
        for name in names:
            runs_n, ok, gave_up, running, abandoned, last = tally.get(name, [0, 0, 0, 0, 0, None])
            out[name] = OperationCounts(
                name,
                runs_n,
                ok,
                gave_up,
                running,
                abandoned,
                int(failed.get(name, 0)),
                int(rejected.get(name, 0) or 0),
                last,
            )
        return out

    def breaker_changes(self, *, since: float | None = None, name: str | None = None) -> list[BreakerChange]:
        """Breaker state changes at or after wall time ``since``, oldest first."""
        sql = (
            "SELECT name, at, old_state, new_state, reason, open_until, pid, host "
            "FROM journal_breaker_changes WHERE at >= ?"
        )
        params: list[Any] = [since if since is not None else -1e300]
        if name is not None:
            sql += " AND name = ?"
            params.append(name)
        rows = self._query("read the breaker changes", sql + " ORDER BY at, id", params)
        return [BreakerChange(*row) for row in rows]

    def limits(self, *, since: float | None = None) -> list[LimitReading]:
        """The latest limiter readings taken at or after wall time ``since``, by name, kind and process."""
        rows = self._query(
            "read the limiters",
            "SELECT name, kind, pid, host, at, used, waiting, capacity, rejected, shared, fleet_used "
            "FROM journal_limits "
            "WHERE at >= ? ORDER BY name, kind, host, pid",
            [since if since is not None else -1e300],
        )
        return [LimitReading(*row) for row in rows]

    # -- cancel requests ------------------------------------------------------------------------------

    def current_run_id(self, run_id: str) -> str:
        """The id run ``run_id`` goes by now: a command announced as ``PREFIX-cN`` continues under its
        recovery's id once its first attempt fails; any other id is returned as it is."""
        with self._lock:
            return _current_id(self._connection(), run_id)

    def request_cancel(
        self, run_id: str, *, reason: str = "cancelled by a person", requested_by: str | None = None
    ) -> bool:
        """Ask the process that owns run ``run_id`` to stop its automatic recovery.

        Returns True when the request was written (or one was already pending), False when the run has
        already ended. Raises ConfigError for an unknown run id. The owning process's journal writer
        sees the request within about 200 ms and cancels the run; :meth:`cancel_request` tells when.
        """
        with self._lock:
            conn = self._connection()
            with transaction(conn, self.path, f"request the cancellation of run {run_id}"):
                row = conn.execute(
                    "SELECT outcome, pid, host FROM journal_runs WHERE run_id = ?", (run_id,)
                ).fetchone()
                run_id = _current_id(conn, run_id)
                row = conn.execute(
                    "SELECT outcome, pid, host FROM journal_runs WHERE run_id = ?", (run_id,)
                ).fetchone()
                if row is None:
                    raise ConfigError(
                        "run_id",
                        run_id,
                        "the id of a run in the journal",
                        hint="`bounceback status` lists the active runs",
                    )
                if row[0] is not None or not is_process_alive(row[1], row[2]):
                    return False
                conn.execute(
                    "INSERT INTO journal_cancel_requests (run_id, requested_at, requested_by, reason) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
                    (run_id, self._clock.wall(), requested_by or current_user(), reason),
                )
        return True

    def cancel_request(self, run_id: str) -> CancelRequest | None:
        """The cancel request for ``run_id``, if any."""
        rows = self._query(
            "read a cancel request",
            "SELECT run_id, requested_at, requested_by, reason, handled_at, handled_pid "
            "FROM journal_cancel_requests WHERE run_id = ?",
            [run_id],
        )
        return CancelRequest(*rows[0]) if rows else None

    # -- retention ------------------------------------------------------------------------------------

    def prune(self, retention: float) -> int:
        """Delete what ended more than ``retention`` seconds ago; returns the number of runs deleted."""
        if not retention > 0:
            raise ConfigError("retention", retention, "a number of seconds > 0")
        with self._lock:
            return prune(self._connection(), self.path, self._clock.wall() - retention)


def prune(conn: sqlite3.Connection, path: str | Path, cutoff: float) -> int:
    """Delete journal rows older than wall time ``cutoff`` in one transaction; returns runs deleted."""
    with transaction(conn, path, "prune the journal"):
        # Limiter readings of processes long gone (the dashboard shows only fresh ones).
        conn.execute("DELETE FROM journal_limits WHERE at < ?", (cutoff,))
        # Attempts go first: deleting them explicitly is faster than a cascade row by row.
        conn.execute(
            "DELETE FROM journal_attempts WHERE run_id IN (SELECT run_id FROM journal_runs "
            "WHERE coalesce(ended_at, updated_at) < ?)",
            (cutoff,),
        )
        deleted = conn.execute(
            "DELETE FROM journal_runs WHERE coalesce(ended_at, updated_at) < ?", (cutoff,)
        ).rowcount
        conn.execute("DELETE FROM journal_breaker_changes WHERE at < ?", (cutoff,))
        conn.execute("DELETE FROM journal_rejections WHERE minute < ?", (int(cutoff // 60),))
        conn.execute("DELETE FROM journal_cancel_requests WHERE requested_at < ?", (cutoff,))
    return int(deleted)


def _run(row: tuple[Any, ...]) -> RunEntry:
    outcome = row[5]
    if outcome is not None:
        status = str(outcome)
    else:
        status = "running" if is_process_alive(row[15], row[16]) else "abandoned"
    # The row holds exactly the 17 stored columns, in field order; mypy cannot count a tuple[Any, ...].
    return RunEntry(*row, status)  # type: ignore[call-arg]


def _current_id(conn: sqlite3.Connection, run_id: str) -> str:
    if (
        "-c" not in run_id
        or conn.execute("SELECT 1 FROM journal_runs WHERE run_id = ?", (run_id,)).fetchone()
    ):
        return run_id
    # Gone from the journal under its announced id: the same process's newest unfinished run is where it went
    # (an announced command and its recovery share the process's run-id prefix; `bounceback run` runs one).
    prefix = run_id.split("-c", 1)[0].replace("%", "").replace("_", "")
    moved = conn.execute(
        "SELECT run_id FROM journal_runs WHERE run_id LIKE ? AND ended_at IS NULL ORDER BY started_at DESC LIMIT 1",
        (prefix + "-%",),
    ).fetchone()
    return str(moved[0]) if moved is not None else run_id
