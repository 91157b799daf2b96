"""Read the home database into a :class:`~bounceback.web._model.Snapshot`.

The only module of the dashboard that knows the stores. Each part (settings, breakers, journal, tickets)
is read through its store's own API where it has one; a part that fails to read is left empty and its
problem is listed in ``Snapshot.problems`` (the page shows it), so one locked or newer table never
blanks the whole dashboard.
"""

from __future__ import annotations

import itertools
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bounceback.core._time import SYSTEM_CLOCK, Clock
from bounceback.core.breaker._store import BreakerStore, MemoryBreakerStore, WindowSpec
from bounceback.core.recovery._tickets import Ticket
from bounceback.errors import ConfigError, StoreError
from bounceback.stores import SqliteSettings
from bounceback.stores._home import connect, migrate, translate_errors
from bounceback.stores._shared import breaker_store_from_settings
from bounceback.stores._tickets import SqliteTickets
from bounceback.stores.journal._journal import Journal
from bounceback.stores.journal._schema import AttemptEntry, LimitReading, RunEntry
from bounceback.stores.sqlite._breaker import SqliteBreakerStore
from bounceback.web._model import (
    AttemptView,
    BreakerView,
    ChoiceView,
    LimitView,
    RunView,
    Snapshot,
    StepView,
    TicketView,
)

__all__ = ["Collector", "LIMIT_FRESH_SECONDS", "RECENT_SECONDS", "attempt_view", "run_view", "ticket_view"]

_log = logging.getLogger("bounceback.web")

LIMIT_FRESH_SECONDS = 10.0
"""A limiter reading older than this is from a process that stopped (they are written every second)."""
RECENT_SECONDS = 3600.0
"""How far back the timeline, the rejection counts and the ended runs reach."""
_MAX_RUNS = 300
_MAX_HISTORY = 200
_MAX_TICKETS = 50


def ticket_view(ticket: Ticket) -> TicketView:
    """A stored ticket as the dashboard shows it."""
    resolution = ticket.resolution
    return TicketView(
        ticket_id=ticket.id,
        operation=ticket.operation,
        status=ticket.status,
        opened_at=ticket.created_at,
        error_type=ticket.error_type,
        error=ticket.error_message,
        kind=ticket.kind or "",
        summary=ticket.summary,
        guidance=tuple(StepView(s.key, s.text, s.record.text()) for s in ticket.guidance),
        choices=tuple(
            ChoiceView(c.key, c.label, c.record.text(), c.detail, c.attempts, c.deadline)
            for c in ticket.choices
        ),
        attempts=len(ticket.attempts),
        reason=ticket.reason,
        resolved_at=resolution.at if resolution else None,
        resolved_by=resolution.by if resolution else None,
        choice=resolution.choice.value if resolution else None,
        outcome=resolution.outcome if resolution else None,
    )


def run_view(entry: RunEntry, cancel_requested: bool = False) -> RunView:
    """A journal run as the dashboard shows it."""
    return RunView(
        run_id=entry.run_id,
        operation=entry.operation,
        status=entry.status,
        started_at=entry.started_at,
        updated_at=entry.updated_at,
        ended_at=entry.ended_at,
        attempts=entry.attempts,
        max_attempts=entry.max_attempts,
        deadline_at=entry.deadline_at,
        next_try_at=entry.next_try_at,
        last_error_type=entry.last_error_type,
        last_error=entry.last_error,
        last_kind=entry.last_kind,
        reason=entry.reason,
        pid=entry.pid,
        host=entry.host,
        cancel_requested=cancel_requested,
    )


def attempt_view(entry: AttemptEntry) -> AttemptView:
    """A journal attempt as the dashboard shows it."""
    return AttemptView(
        run_id=entry.run_id,
        attempt=entry.attempt,
        at=entry.at,
        elapsed=entry.elapsed,
        outcome=entry.outcome,
        error_type=entry.error_type,
        error=entry.error,
        kind=entry.kind,
        delay=entry.delay,
    )


class Collector:
    """Builds snapshots of one home database (``path``); thread-safe, one read at a time.

    >>> import tempfile, pathlib
    >>> collector = Collector(pathlib.Path(tempfile.mkdtemp()) / "bounceback.db")
    >>> snap = collector.collect()
    >>> snap.version, snap.breakers, snap.problems
    (1, (), ())
    >>> collector.close()
    """

    def __init__(self, path: str | Path, *, clock: Clock = SYSTEM_CLOCK, timeout: float = 1.0) -> None:
        self.path = Path(path)
        self.clock = clock
        self.settings = SqliteSettings(self.path, clock=clock, timeout=timeout)
        self.journal = Journal(self.path, clock=clock, timeout=timeout)
        self.tickets = SqliteTickets(self.path, clock=clock, timeout=timeout)
        self._store: BreakerStore | None = None
        self._store_key: tuple[Any, Any] | None = None
        self._store_lock = threading.Lock()
        self._timeout = timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._versions = itertools.count(1)

    def close(self) -> None:
        """Close every connection."""
        with self._lock:
            self.settings.close()
            self.journal.close()
            self.tickets.close()
            if self._store is not None and hasattr(self._store, "close"):
                self._store.close()
                self._store = None
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def connection(self) -> sqlite3.Connection:
        """The collector's own connection (every registered migration applied), for its direct reads."""
        if self._conn is None:
            conn = connect(self.path, timeout=self._timeout)
            try:
                migrate(conn, self.path)
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def collect(self) -> Snapshot:
        """Read everything the pages show, now."""
        with self._lock:
            now = self.clock.wall()
            problems: list[str] = []
            parts: dict[str, Any] = {}
            # Each reader gets the same wall time, so the parts agree on "now".
            readers: list[tuple[str, Callable[[float], Any]]] = [
                ("settings", self._settings),
                ("breakers", self._breakers),
                ("journal", self._journal),
                ("tickets", self._tickets),
                ("limiters", self._limits),
            ]
            for name, read in readers:
                try:
                    parts[name] = read(now)
                except (StoreError, ConfigError, sqlite3.Error, OSError) as exc:
                    _log.warning("dashboard: cannot read the %s: %s", name, exc)
                    problems.append(f"cannot read the {name}: {exc}")
                    if isinstance(exc, sqlite3.Error) and self._conn is not None:
                        self._conn.close()
                        self._conn = None
                except Exception as exc:
                    # A row this version cannot understand must not blank every page.
                    _log.exception("dashboard: reading the %s failed", name)
                    problems.append(f"cannot read the {name}: {type(exc).__name__}: {exc}")
            settings, history = parts.get("settings", ({}, ()))
            runs, attempts = parts.get("journal", ((), {}))
            return Snapshot(
                now=now,
                version=next(self._versions),
                breakers=parts.get("breakers", ()),
                runs=runs,
                attempts=attempts,
                tickets=parts.get("tickets", ()),
                limits=parts.get("limiters", ()),
                settings=settings,
                history=history,
                problems=tuple(problems),
            )

    # -- the parts -----------------------------------------------------------------------------------

    def _settings(self, now: float) -> tuple[dict[str | None, dict[str, Any]], tuple[dict[str, Any], ...]]:  # noqa: ARG002
        layers = self.settings.layers()
        values: dict[str | None, dict[str, Any]] = {None: dict(layers.values)}
        values.update({op: dict(v) for op, v in layers.operations.items()})
        history = tuple(c.to_plain() for c in self.settings.history(limit=_MAX_HISTORY))
        return values, history

    def breaker_store(self) -> BreakerStore | None:
        """The breaker store the settings name (None for ``memory``: nothing is shared to show)."""
        values = self.settings.effective(None)
        wanted = (values["store.backend"], values["store.redis_url"])
        with self._store_lock:
            store = self._store
            if store is None or self._store_key != wanted:
                store = breaker_store_from_settings(
                    values, path=self.path, timeout=self._timeout, batched=False
                )
                if self._store is not None and hasattr(self._store, "close"):
                    self._store.close()
                self._store, self._store_key = store, wanted
        return None if isinstance(store, MemoryBreakerStore) else store

    def _rejections(self, now: float) -> dict[str, int]:
        conn = self.connection()
        with translate_errors(self.path, "count the rejected calls"):
            rows = conn.execute(
                "SELECT operation, sum(count) FROM journal_rejections WHERE minute >= ? GROUP BY operation",
                (int((now - RECENT_SECONDS) // 60),),
            ).fetchall()
        return {str(op): int(n or 0) for op, n in rows}

    def _window_of(self, store: BreakerStore, name: str) -> WindowSpec:
        if isinstance(store, SqliteBreakerStore):
            # The window shape the breaker itself last used (it may differ from the settings).
            with translate_errors(self.path, "read a breaker window"):
                row = (
                    self.connection()
                    .execute("SELECT kind, size FROM breaker_state WHERE key = ?", (name,))
                    .fetchone()
                )
            if row is not None:
                return WindowSpec(str(row[0]), float(row[1]))
        values = self.settings.effective(name)
        return WindowSpec(values["breaker.window_type"], values["breaker.window"])

    def _breakers(self, now: float) -> tuple[BreakerView, ...]:
        store = self.breaker_store()
        if store is None:
            return ()
        rejected = self._rejections(now)
        views = []
        for name in store.keys():  # type: ignore[attr-defined]  # noqa: SIM118 - a store, not a dict
            state = store.load(name)
            if state is None:
                continue
            counts = store.counts(name, self._window_of(store, name), now)
            values = self.settings.effective(name)
            # Read as the breaker itself would now: an open time that is over means the next call probes
            # (half-open), as `bounceback status` says; never a stale "open, probe due".
            live = state.state
            if live == "open" and state.open_until is not None and state.open_until <= now:
                live = "half_open"
            views.append(
                BreakerView(
                    name=name,
                    state=live,
                    since=state.since,
                    open_until=state.open_until,
                    reason=state.reason,
                    calls=counts.calls,
                    failures=counts.failures,
                    slow=counts.slow,
                    consecutive=counts.consecutive_failures,
                    rejected=rejected.get(name, 0),
                    reopens=state.reopens,
                    min_calls=int(values.get("breaker.min_calls", 0)),
                    threshold=float(values.get("breaker.failure_rate", 0.0)),
                )
            )
        return tuple(views)

    def _limits(self, now: float) -> tuple[LimitView, ...]:
        """Readings fresh within LIMIT_FRESH_SECONDS, per limiter over the processes reporting it: summed
        for a local limiter; for one shared through a store, the fleet's limit once and the fleet's count
        from the store (the freshest reading that has one)."""
        groups: dict[tuple[str, str, str | None], list[LimitReading]] = {}
        for r in self.journal.limits(since=now - LIMIT_FRESH_SECONDS):
            groups.setdefault((r.name, r.kind, r.shared), []).append(r)
        views = []
        for (name, kind, shared), readings in sorted(groups.items(), key=lambda item: _limit_key(item[0])):
            waiting = sum(r.waiting for r in readings)
            rejected = sum(r.rejected for r in readings)
            if shared is None:
                used, capacity = sum(r.used for r in readings), sum(r.capacity for r in readings)
                views.append(LimitView(name, kind, used, waiting, capacity, rejected, len(readings)))
                continue
            counted = [r for r in readings if r.fleet_used is not None]
            fresh = max(counted, key=lambda r: r.at) if counted else None
            if fresh is not None and fresh.fleet_used is not None:
                used, unavailable = fresh.fleet_used, False
            else:  # no process could read the store: what they hold themselves is all there is to show
                used, unavailable = (sum(r.used for r in readings) if kind == "concurrency" else 0.0), True
            # Every process of a fleet should be given the same limit; if one was not, the largest is what
            # the store lets through when that process takes the lease.
            capacity = max(r.capacity for r in readings)
            views.append(
                LimitView(
                    name,
                    kind,
                    used,
                    waiting,
                    capacity,
                    rejected,
                    len(readings),
                    shared=shared,
                    store_unavailable=unavailable,
                )
            )
        return tuple(views)

    def _journal(self, now: float) -> tuple[tuple[RunView, ...], dict[str, tuple[AttemptView, ...]]]:
        entries = {e.run_id: e for e in self.journal.runs(since=now - RECENT_SECONDS, limit=_MAX_RUNS)}
        # A run that has been going on longer than the window is still shown while it lasts.
        for entry in self.journal.active_runs():
            entries.setdefault(entry.run_id, entry)
        pending = self._pending_cancels([e.run_id for e in entries.values() if e.outcome is None])
        runs = tuple(
            run_view(e, e.run_id in pending) for e in sorted(entries.values(), key=lambda e: e.started_at)
        )
        found = self.journal.attempts_of(entries)
        attempts = {run_id: tuple(attempt_view(a) for a in rows) for run_id, rows in found.items()}
        return runs, attempts

    def _pending_cancels(self, run_ids: list[str]) -> set[str]:
        if not run_ids:
            return set()
        conn = self.connection()
        marks = ",".join("?" * len(run_ids[:500]))
        with translate_errors(self.path, "read the cancel requests"):
            rows = conn.execute(
                f"SELECT run_id FROM journal_cancel_requests WHERE run_id IN ({marks})", run_ids[:500]
            ).fetchall()
        return {str(r[0]) for r in rows}

    def _tickets(self, now: float) -> tuple[TicketView, ...]:  # noqa: ARG002
        waiting = self.tickets.list(status="open", limit=_MAX_TICKETS)
        # ``get`` ranks steps and choices by their recorded outcomes; ``list`` does not.
        ranked = [self.tickets.get(t.id) for t in waiting]
        done = self.tickets.list(status="resolved", limit=20)
        return tuple(ticket_view(t) for t in (*ranked, *done))


def _limit_key(key: tuple[str, str, str | None]) -> tuple[str, str, str]:
    name, kind, shared = key
    return name, kind, shared or ""
