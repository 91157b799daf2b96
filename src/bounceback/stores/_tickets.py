"""Recovery tickets and their outcomes in the home database (component ``tickets``).

``tickets`` holds one row per ticket: the ticket itself as JSON (guidance, choices, attempts, facts) and, in
columns, what changes: the status, the resolution (who, when, which choice) and the outcome of the
follow-up attempt. ``ticket_stats`` keeps counters per operation, topic and item (``step:<key>`` or
``choice:<kind>``): tried, worked, marked not useful. The counters outlive the tickets, so what was
learned survives the retention pruning of old tickets.

A ticket is resolved exactly once: the resolution is a conditional ``UPDATE ... WHERE status = 'open'``
inside one ``BEGIN IMMEDIATE`` transaction, so of two people (or processes) acting at once one wins and the
other is told who resolved it first and when.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from bounceback.core._time import SYSTEM_CLOCK, Clock, to_seconds
from bounceback.core.classify._facts import format_clock_time
from bounceback.core.recovery._ports import already_resolved, outcome_items, unknown_ticket
from bounceback.core.recovery._tickets import Record, Resolution, Ticket, new_ticket_id, rank, step_item
from bounceback.errors import ConfigError
from bounceback.stores._component import HomeComponent
from bounceback.stores._home import (
    register_migrations,
    transaction,
    translate_errors,
)

__all__ = ["SqliteTickets"]

_MIGRATIONS = [
    """
    CREATE TABLE tickets (
        id          TEXT PRIMARY KEY,
        operation   TEXT NOT NULL,
        topic       TEXT NOT NULL,
        status      TEXT NOT NULL CHECK (status IN ('open', 'resolved')),
        created_at  REAL NOT NULL,
        body        TEXT NOT NULL,      -- the ticket as JSON, without status and resolution
        choice      TEXT,               -- retry, retry-adjusted, skip, abort (NULL while open)
        resolved_by TEXT,
        resolved_at REAL,
        resolution  TEXT,               -- the Resolution as JSON
        outcome     TEXT CHECK (outcome IN ('succeeded', 'failed')),
        outcome_at  REAL,
        pid         INTEGER NOT NULL,
        host        TEXT NOT NULL
    );
    CREATE INDEX tickets_status ON tickets (status, created_at);
    CREATE INDEX tickets_operation ON tickets (operation, created_at);
    CREATE INDEX tickets_resolved_at ON tickets (resolved_at) WHERE status = 'resolved';
    CREATE TABLE ticket_stats (
        operation  TEXT    NOT NULL,
        topic      TEXT    NOT NULL,
        item       TEXT    NOT NULL,    -- step:<key> or choice:<kind>
        tried      INTEGER NOT NULL DEFAULT 0,
        worked     INTEGER NOT NULL DEFAULT 0,
        not_useful INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (operation, topic, item)
    );
    """
]
register_migrations("tickets", _MIGRATIONS)

_COLUMNS = "id, status, body, resolution, outcome"
_BUMP = """
INSERT INTO ticket_stats (operation, topic, item, tried, worked, not_useful) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (operation, topic, item) DO UPDATE SET
    tried = tried + excluded.tried,
    worked = worked + excluded.worked,
    not_useful = not_useful + excluded.not_useful
"""
_PRUNE_EVERY = 3600.0
_STATUSES = ("open", "resolved")


class SqliteTickets(HomeComponent):
    """Recovery tickets in the home database (``path``, default ``<home>/bounceback.db``).

    ``retention`` is how long resolved tickets are kept (seconds or a duration text; the setting
    ``manual.ticket_retention``); older ones are pruned when tickets are parked.

    >>> import tempfile, pathlib
    >>> from bounceback.core.retry._engine import GiveUp
    >>> from bounceback.core.recovery._tickets import open_ticket
    >>> store = SqliteTickets(pathlib.Path(tempfile.mkdtemp()) / "bounceback.db")
    >>> info = GiveUp("sync", TimeoutError("no answer"), "attempts", (), None, "r1", 2.0, None)
    >>> ticket = store.park(open_ticket(info, now=1_800_000_000.0))
    >>> done = store.decide(ticket.id, "retry", by="ann")
    >>> done.status, done.resolution.choice.value, store.record_outcome(ticket.id, True)
    ('resolved', 'retry', True)
    >>> store.get(ticket.id).choices[0].record.text()
    'worked 1 of 1 time'
    >>> store.close()
    """

    component = "tickets"

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        home: str | Path | None = None,
        timeout: float = 5.0,
        clock: Clock = SYSTEM_CLOCK,
        retention: Any = 30 * 86400.0,
    ) -> None:
        super().__init__(path, home=home, timeout=timeout)
        self.retention = to_seconds(retention, "manual.ticket_retention", allow_zero=False)
        self._clock = clock
        self._pruned_at = -float("inf")

    def __enter__(self) -> SqliteTickets:
        return self

    # -- writing ---------------------------------------------------------------------------------------

    def park(self, ticket: Ticket) -> Ticket:
        """Keep an open ticket. An id already taken (a one-in-four-billion chance) gets a fresh one."""
        body = _body(ticket)
        with self._lock:
            conn = self._connection()
            for _ in range(5):
                try:
                    with transaction(conn, self.path, "park a ticket"):
                        conn.execute(
                            "INSERT INTO tickets (id, operation, topic, status, created_at, body, pid, host) "
                            "VALUES (?, ?, ?, 'open', ?, ?, ?, ?)",
                            (
                                ticket.id,
                                ticket.operation,
                                ticket.topic,
                                ticket.created_at,
                                body,
                                os.getpid(),
                                socket.gethostname(),
                            ),
                        )
                    break
                except sqlite3.IntegrityError:  # pragma: no cover - needs an id collision
                    ticket = replace(ticket, id=new_ticket_id())
                    body = _body(ticket)
            self._maybe_prune()
        return replace(ticket, status="open", resolution=None)

    def resolve(self, ticket_id: str, resolution: Resolution) -> Ticket:
        """Resolve an open ticket, exactly once; refused (ConfigError) when unknown or already resolved.

        ``resolution`` comes from :meth:`Ticket.decide` (or use :meth:`decide`). Steps marked not useful
        are counted in the same transaction.
        """
        data = json.dumps(resolution.to_dict(), default=str)
        with self._lock:
            conn = self._connection()
            with transaction(conn, self.path, f"resolve ticket {ticket_id}"):
                cur = conn.execute(
                    "UPDATE tickets SET status = 'resolved', choice = ?, resolved_by = ?, resolved_at = ?, "
                    "resolution = ? WHERE id = ? AND status = 'open'",
                    (resolution.choice.value, resolution.by, resolution.at, data, ticket_id),
                )
                row = conn.execute(f"SELECT {_COLUMNS} FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
                if row is None:
                    raise unknown_ticket(ticket_id)
                ticket = _ticket(row)
                if cur.rowcount != 1:
                    at = ticket.resolution.at if ticket.resolution else 0.0
                    raise already_resolved(ticket, format_clock_time(at, self._clock.wall()))
                for key in resolution.not_useful:
                    conn.execute(_BUMP, (ticket.operation, ticket.topic, step_item(key), 0, 0, 1))
        return self.get(ticket_id)

    def decide(self, ticket_id: str, choice: str, *, by: str, **answer: Any) -> Ticket:
        """Check an answer against the stored ticket and resolve it (see :meth:`Ticket.decide`)."""
        ticket = self.get(ticket_id)
        if not ticket.is_open:
            at = ticket.resolution.at if ticket.resolution else 0.0
            raise already_resolved(ticket, format_clock_time(at, self._clock.wall()))
        resolution = ticket.decide(choice, by=by, at=self._clock.wall(), **answer)
        return self.resolve(ticket_id, resolution)

    def record_outcome(self, ticket_id: str, succeeded: bool) -> bool:
        """Record whether the follow-up attempt of a retry choice succeeded; once per ticket.

        Returns False (and changes nothing) when the ticket is open, already has an outcome, or was
        resolved with a choice that runs nothing (skip, abort).
        """
        outcome = "succeeded" if succeeded else "failed"
        with self._lock:
            conn = self._connection()
            with transaction(conn, self.path, f"record the outcome of ticket {ticket_id}"):
                cur = conn.execute(
                    "UPDATE tickets SET outcome = ?, outcome_at = ? WHERE id = ? AND status = 'resolved' "
                    "AND outcome IS NULL AND choice IN ('retry', 'retry-adjusted')",
                    (outcome, self._clock.wall(), ticket_id),
                )
                if cur.rowcount != 1:
                    return False
                row = conn.execute(f"SELECT {_COLUMNS} FROM tickets WHERE id = ?", (ticket_id,)).fetchone()
                ticket = _ticket(row)
                assert ticket.resolution is not None
                for item in outcome_items(ticket.resolution):
                    conn.execute(_BUMP, (ticket.operation, ticket.topic, item, 1, int(succeeded), 0))
        return True

    def follow_up(self, operation: str, succeeded: bool, *, within: float = 86400.0) -> str | None:
        """Count the next run of ``operation`` as the follow-up of its latest retry resolution.

        For programs that parked a ticket and exited: the next run after a person chose retry (within
        ``within`` seconds of the resolution) is that choice's outcome. Returns the ticket id, or None when
        no resolution awaits an outcome.
        """
        with self._lock:
            conn = self._connection()
            with transaction(conn, self.path, f"record a follow-up of {operation}"):
                row = conn.execute(
                    "SELECT id FROM tickets WHERE operation = ? AND status = 'resolved' AND outcome IS NULL "
                    "AND choice IN ('retry', 'retry-adjusted') AND resolved_at >= ? "
                    "ORDER BY resolved_at DESC LIMIT 1",
                    (operation, self._clock.wall() - within),
                ).fetchone()
            if row is None:
                return None
            return str(row[0]) if self.record_outcome(str(row[0]), succeeded) else None

    def mark_not_useful(self, ticket_id: str, steps: Iterable[str | int]) -> Ticket:
        """Mark guidance steps of a ticket (open or resolved) as not useful, by number or key."""
        ticket = self.get(ticket_id)
        keys = list(dict.fromkeys(ticket.step(s).key for s in steps))
        with self._lock:
            conn = self._connection()
            with transaction(conn, self.path, f"mark steps of ticket {ticket_id}"):
                for key in keys:
                    conn.execute(_BUMP, (ticket.operation, ticket.topic, step_item(key), 0, 0, 1))
        return self.get(ticket_id)

    def prune(self, now: float | None = None) -> int:
        """Delete resolved tickets older than the retention; returns how many (the counters stay)."""
        cutoff = (self._clock.wall() if now is None else now) - self.retention
        with self._lock:
            conn = self._connection()
            with transaction(conn, self.path, "prune old tickets"):
                cur = conn.execute(
                    "DELETE FROM tickets WHERE status = 'resolved' AND resolved_at < ?", (cutoff,)
                )
            self._pruned_at = self._clock.monotonic()
            return cur.rowcount

    def _maybe_prune(self) -> None:
        if self._clock.monotonic() - self._pruned_at >= _PRUNE_EVERY:
            self.prune()

    # -- reading ---------------------------------------------------------------------------------------

    def get(self, ticket_id: str) -> Ticket:
        """The ticket, ranked with the current records; ConfigError for an unknown id."""
        with self._lock, translate_errors(self.path, f"read ticket {ticket_id}"):
            row = (
                self._connection()
                .execute(f"SELECT {_COLUMNS} FROM tickets WHERE id = ?", (str(ticket_id).strip(),))
                .fetchone()
            )
        if row is None:
            raise unknown_ticket(ticket_id)
        ticket = _ticket(row)
        return rank(ticket, self.stats(ticket.operation, ticket.topic))

    def list(self, status: str | None = None, operation: str | None = None, limit: int = 100) -> list[Ticket]:
        """Tickets, newest first: all, or only ``open`` / ``resolved`` ones, optionally of one operation."""
        if status is not None and status not in _STATUSES:
            raise ConfigError("status", status, "open or resolved (or none for all)")
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ConfigError("limit", limit, "a whole number >= 1")
        query = f"SELECT {_COLUMNS} FROM tickets"
        where: list[str] = []
        args: list[Any] = []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if operation is not None:
            where.append("operation = ?")
            args.append(operation)
        if where:
            query += " WHERE " + " AND ".join(where)
        query += " ORDER BY created_at DESC, id LIMIT ?"
        args.append(limit)
        with self._lock, translate_errors(self.path, "list tickets"):
            rows = self._connection().execute(query, args).fetchall()
        return [_ticket(row) for row in rows]

    def stats(self, operation: str, topic: str) -> Mapping[str, Record]:
        """The records of every step and choice for ``operation`` and ``topic``."""
        with self._lock, translate_errors(self.path, "read ticket outcomes"):
            rows = (
                self._connection()
                .execute(
                    "SELECT item, tried, worked, not_useful FROM ticket_stats WHERE operation = ? AND topic = ?",
                    (operation, topic),
                )
                .fetchall()
            )
        return {str(item): Record(int(t), int(w), int(n)) for item, t, w, n in rows}

    def wait(self, ticket_id: str, timeout: float, *, poll: float = 0.5) -> Ticket | None:
        """Wait (on the store's clock) up to ``timeout`` seconds for a ticket to be resolved."""
        end = self._clock.monotonic() + timeout
        while True:
            ticket = self.get(ticket_id)
            if not ticket.is_open:
                return ticket
            left = end - self._clock.monotonic()
            if left <= 0:
                return None
            self._clock.sleep(min(poll, left))


def _body(ticket: Ticket) -> str:
    data = ticket.to_dict()
    for key in ("status", "resolution", "summary", "retry_at"):
        data.pop(key, None)
    for item in (*data["guidance"], *data["choices"]):
        for key in ("tried", "worked", "not_useful", "record"):
            item.pop(key, None)
    return json.dumps(data, ensure_ascii=False)


def _ticket(row: Any) -> Ticket:
    _id, status, body, resolution, outcome = row
    data = json.loads(body)
    data["status"] = status
    if resolution:
        res = json.loads(resolution)
        res["outcome"] = outcome
        data["resolution"] = res
    return Ticket.from_dict(data)
