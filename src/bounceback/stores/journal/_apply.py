"""How the journal writer turns a batch of events into rows: one upsert per run, one row per attempt.

A command run by ``bounceback run`` is announced before anything failed (``RunStarted``): its row has no
attempt yet (``attempts`` 0) and reads as "attempt 1 running". When that attempt fails, the recovery that
follows has an id of its own (that of ``AttemptFailed``): the row is moved to it, so the run keeps one
row from its start, with the recovery's id that its tickets and attempts use. ``RunEnded`` deletes a row
that is still only an announcement: the first attempt succeeded, and a run without a recovery is not
journaled (as for a library call).
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Iterable

from bounceback.core._events import (
    AttemptFailed,
    BreakerStateChanged,
    CallRejected,
    Event,
    RecoveryExhausted,
    RecoverySucceeded,
    RetryScheduled,
    RunEnded,
    RunStarted,
)

__all__ = ["ApplyState"]


class ApplyState:
    """What the writer remembers between batches: whether this process announced commands at all, so
    a library-only process never looks for an announced row to move (one query per first failure)."""

    __slots__ = ("commands",)

    def __init__(self) -> None:
        self.commands = False


_UPSERT_RUN = """
INSERT INTO journal_runs (run_id, operation, started_at, updated_at, ended_at, outcome, reason, attempts,
    max_attempts, last_error_type, last_error, last_kind, breaker_state, pid, host)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id) DO UPDATE SET
    updated_at = max(updated_at, excluded.updated_at),
    ended_at = coalesce(excluded.ended_at, ended_at),
    outcome = coalesce(excluded.outcome, outcome),
    reason = coalesce(excluded.reason, reason),
    attempts = max(attempts, excluded.attempts),
    max_attempts = coalesce(excluded.max_attempts, max_attempts),
    last_error_type = coalesce(excluded.last_error_type, last_error_type),
    last_error = coalesce(excluded.last_error, last_error),
    last_kind = coalesce(excluded.last_kind, last_kind),
    breaker_state = coalesce(excluded.breaker_state, breaker_state),
    next_try_at = NULL
"""
_ANNOUNCE_RUN = """
INSERT INTO journal_runs (run_id, operation, started_at, updated_at, attempts, max_attempts, deadline_at,
    pid, host)
VALUES (?, ?, ?, ?, 0, ?, ?, ?, ?)
ON CONFLICT (run_id) DO NOTHING
"""
# The announced row of this process for this operation, still at its first attempt, whose start is nearest
# to the recovery's: takes the recovery's id (never over an existing row). A process runs one command at
# a time under `bounceback run`, so there is one candidate; several threads running commands of the same
# operation at once are told apart by their start times.
_MOVE_ANNOUNCED = """
UPDATE journal_runs SET run_id = :new WHERE run_id = (
    SELECT run_id FROM journal_runs
    WHERE outcome IS NULL AND attempts = 0 AND operation = :operation AND pid = :pid AND host = :host
    ORDER BY abs(started_at - :started) LIMIT 1
) AND NOT EXISTS (SELECT 1 FROM journal_runs WHERE run_id = :new)
"""
_PUT_ATTEMPT = """
INSERT OR REPLACE INTO journal_attempts (run_id, attempt, operation, at, elapsed, outcome, error_type, error,
    kind, kind_reason, delay, retry_at, breaker_state)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)
"""


def _apply(
    conn: sqlite3.Connection, events: Iterable[Event], pid: int, host: str, state: ApplyState | None = None
) -> None:
    """Write a batch of events (inside the caller's transaction)."""
    rejections: collections.Counter[tuple[str, int]] = collections.Counter()
    announced = state.commands if state is not None else True
    for ev in events:
        if isinstance(ev, AttemptFailed):
            cls = ev.classification
            if ev.attempt == 1 and announced:
                conn.execute(
                    _MOVE_ANNOUNCED,
                    {
                        "new": ev.run_id,
                        "operation": ev.operation,
                        "pid": pid,
                        "host": host,
                        "started": ev.at - ev.elapsed,
                    },
                )
            conn.execute(
                _UPSERT_RUN,
                (
                    ev.run_id,
                    ev.operation,
                    ev.at - ev.elapsed,
                    ev.at,
                    None,
                    None,
                    None,
                    ev.attempt,
                    ev.max_attempts,
                    ev.error_type,
                    ev.error_message,
                    cls.kind.value,
                    ev.breaker_state,
                    pid,
                    host,
                ),
            )
            conn.execute(
                _PUT_ATTEMPT,
                (
                    ev.run_id,
                    ev.attempt,
                    ev.operation,
                    ev.at,
                    ev.elapsed,
                    "failed",
                    ev.error_type,
                    ev.error_message,
                    cls.kind.value,
                    cls.reason,
                    ev.breaker_state,
                ),
            )
        elif isinstance(ev, RetryScheduled):
            conn.execute(
                "UPDATE journal_attempts SET delay = ?, retry_at = ? WHERE run_id = ? AND attempt = ?",
                (ev.delay, ev.retry_at, ev.run_id, ev.attempt - 1),
            )
            conn.execute(
                "UPDATE journal_runs SET next_try_at = ?, deadline_at = ?, started_at = ?, "
                "max_attempts = ?, updated_at = max(updated_at, ?) WHERE run_id = ?",
                (ev.retry_at, ev.deadline_at, ev.started_at, ev.max_attempts, ev.at, ev.run_id),
            )
        elif isinstance(ev, RecoverySucceeded):
            conn.execute(
                _UPSERT_RUN,
                (
                    ev.run_id,
                    ev.operation,
                    ev.started_at,
                    ev.at,
                    ev.at,
                    "recovered",
                    None,
                    ev.attempts,
                    None,
                    None,
                    None,
                    None,
                    None,
                    pid,
                    host,
                ),
            )
            conn.execute(
                _PUT_ATTEMPT,
                (ev.run_id, ev.attempts, ev.operation, ev.at, ev.elapsed, "succeeded", *(None,) * 5),
            )
        elif isinstance(ev, RecoveryExhausted):
            verdict = ev.classification
            conn.execute(
                _UPSERT_RUN,
                (
                    ev.run_id,
                    ev.operation,
                    ev.started_at,
                    ev.at,
                    ev.at,
                    "gave-up",
                    ev.reason,
                    ev.attempts,
                    None,
                    ev.error_type,
                    ev.error_message,
                    verdict.kind.value if verdict is not None else None,
                    None,
                    pid,
                    host,
                ),
            )
        elif isinstance(ev, RunStarted):
            announced = True
            if state is not None:
                state.commands = True
            conn.execute(
                _ANNOUNCE_RUN,
                (ev.run_id, ev.operation, ev.at, ev.at, ev.attempts, ev.deadline_at, pid, host),
            )
        elif isinstance(ev, RunEnded):
            # Still only an announcement: the first attempt succeeded, no recovery to keep.
            conn.execute(
                "DELETE FROM journal_runs WHERE run_id = ? AND attempts = 0 AND outcome IS NULL", (ev.run_id,)
            )
        elif isinstance(ev, BreakerStateChanged):
            conn.execute(
                "INSERT INTO journal_breaker_changes (name, at, old_state, new_state, reason, open_until, "
                "pid, host) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ev.operation, ev.at, ev.old_state, ev.new_state, ev.reason, ev.open_until, pid, host),
            )
        elif isinstance(ev, CallRejected):
            rejections[(ev.operation, int(ev.at // 60))] += 1
    if rejections:
        conn.executemany(
            "INSERT INTO journal_rejections (operation, minute, count) VALUES (?, ?, ?) "
            "ON CONFLICT (operation, minute) DO UPDATE SET count = count + excluded.count",
            [(op, minute, n) for (op, minute), n in rejections.items()],
        )
