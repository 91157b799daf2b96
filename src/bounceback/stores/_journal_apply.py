"""How the journal writer turns a batch of events into rows: one upsert per run, one row per attempt."""

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
)

__all__: list[str] = []

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
_PUT_ATTEMPT = """
INSERT OR REPLACE INTO journal_attempts (run_id, attempt, operation, at, elapsed, outcome, error_type, error,
    kind, kind_reason, delay, retry_at, breaker_state)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL, ?)
"""


def _apply(conn: sqlite3.Connection, events: Iterable[Event], pid: int, host: str) -> None:
    """Write a batch of events (inside the caller's transaction)."""
    rejections: collections.Counter[tuple[str, int]] = collections.Counter()
    for ev in events:
        if isinstance(ev, AttemptFailed):
            cls = ev.classification
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
