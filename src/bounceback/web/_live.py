"""Live updates: watch the home database and hand every page a fresh snapshot within ~50 ms of a write.

:class:`LiveState` runs one task per server. Every ``poll`` seconds (50 ms) it reads ``PRAGMA
data_version`` on a connection of its own, a read of a counter in shared memory that changes whenever any
*other* connection commits; only then (or every ``refresh`` seconds, for what changes without a write,
such as a run whose process died) does it collect a new snapshot, in a worker thread. Each snapshot is
compared with the one before to find what a person should hear about (:func:`notices_between`); notices
are kept in a short numbered log that every event stream reads from, and passed to ``on_notice`` (the
notification hooks).

The event streams (``/events``) wait on :meth:`LiveState.wait` and send only the page regions whose HTML
changed, so an idle dashboard sends nothing but a keep-alive comment every 15 s.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from bounceback.errors import StoreError
from bounceback.stores._home import connect
from bounceback.web._model import BreakerView, Notice, Snapshot
from bounceback.web.views._text import clean, plural, singular_one

__all__ = ["LiveState", "notices_between"]

_log = logging.getLogger("bounceback.web")


def notices_between(old: Snapshot | None, new: Snapshot) -> list[Notice]:
    """What happened between two snapshots that a person should hear about.

    A breaker that is now open (and was not, or opened again), a run that gave up, a ticket that is
    new and waiting. The first snapshot (``old`` None) announces nothing: it is the state found, not news.

    >>> from bounceback.web._model import BreakerView
    >>> before = Snapshot(now=1.0, breakers=(BreakerView("db", "closed", 0.0, None, "", 0, 0),))
    >>> after = Snapshot(now=2.0, breakers=(BreakerView("db", "open", 2.0, 32.0, "failure rate 60%", 10, 6),))
    >>> [n.title for n in notices_between(before, after)]
    ['Breaker db opened']
    """
    if old is None:
        return []
    found: list[Notice] = []
    before = {b.name: b for b in old.breakers}
    for brk in new.breakers:
        prev = before.get(brk.name)
        opened = brk.state in ("open", "forced_open")
        # A re-open (after a failed probe) has a new ``since``, even if both snapshots saw "open".
        if opened and (prev is None or prev.state != brk.state or prev.since != brk.since):
            word = "was forced open" if brk.state == "forced_open" else "opened"
            found.append(
                Notice(
                    "breaker-opened",
                    f"breaker:{brk.name}:{brk.since}",
                    f"Breaker {clean(brk.name, 80)} {word}",
                    _notice_body(brk),
                    brk.name,
                    brk.since,
                    "/",
                )
            )
    ended = {r.run_id: r.status for r in old.runs}
    for run in new.runs:
        if run.status == "gave-up" and ended.get(run.run_id) != "gave-up":
            why = f": {_REASONS.get(run.reason, clean(run.reason, 80))}" if run.reason else ""
            error = clean(f"{run.last_error_type or ''}: {run.last_error or ''}".strip(": "), 200)
            found.append(
                Notice(
                    "recovery-gave-up",
                    f"run:{run.run_id}",
                    f"Recovery of {clean(run.operation, 80)} gave up after {plural(run.attempts, 'attempt')}{why}",
                    error,
                    run.operation,
                    run.ended_at or new.now,
                    "/timeline",
                )
            )
    seen = {t.ticket_id for t in old.tickets}
    for ticket in new.tickets:
        if ticket.is_open and ticket.ticket_id not in seen:
            found.append(
                Notice(
                    "ticket-waiting",
                    f"ticket:{ticket.ticket_id}",
                    f"Ticket {clean(ticket.ticket_id, 40)} for {clean(ticket.operation, 80)} needs a person",
                    clean(ticket.summary or f"{ticket.error_type}: {ticket.error}", 200),
                    ticket.operation,
                    ticket.opened_at,
                    "/tickets",
                )
            )
    return found


_REASONS = {
    "attempts": "no attempts left",
    "deadline": "the deadline would pass before the next try",
    "permanent": "a permanent error",
    "cancelled": "cancelled",
    "budget": "the retry budget is spent",
    "breaker": "the circuit stays open",
    "retry-after": "the server asked to wait past the deadline",
    "aborted": "aborted",
}


def _notice_body(brk: BreakerView) -> str:
    reason = singular_one(clean(brk.reason, 200))
    if brk.state == "forced_open" and reason.lower() in ("", "forced open"):
        return "a person forced it open: calls are refused until a person closes it"
    return reason or "calls are refused until it probes again"


class LiveState:
    """The latest snapshot of one database, refreshed on every write (see the module docstring).

    ``collect`` builds a snapshot (it runs in a worker thread); ``on_notice`` is called, in a worker
    thread, with each new notice.
    """

    def __init__(
        self,
        path: str | Path,
        collect: Callable[[], Snapshot],
        *,
        poll: float = 0.05,
        refresh: float = 2.0,
        on_notice: Callable[[Notice], None] | None = None,
        keep_notices: int = 100,
    ) -> None:
        self.path = Path(path)
        self.poll = poll
        self.refresh = refresh
        self._collect = collect
        self._on_notice = on_notice
        self.snapshot: Snapshot = collect()
        self.changed_at = time.time()
        self._notices: collections.deque[tuple[int, Notice]] = collections.deque(maxlen=keep_notices)
        self._notice_seq = 0
        # One event per published snapshot, set (and replaced) when the next one is published: waiting on
        # it needs no lock, so a timed-out or cancelled wait can never leave a lock half-held (an
        # asyncio.Condition under wait_for did: "cannot wait on un-acquired lock").
        self._changed: asyncio.Event | None = None
        self._conn: sqlite3.Connection | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def notice_seq(self) -> int:
        """The number of the latest notice (0 before any)."""
        return self._notice_seq

    def notices_after(self, seq: int) -> list[tuple[int, Notice]]:
        """The notices numbered above ``seq``, oldest first."""
        return [(n, notice) for n, notice in self._notices if n > seq]

    async def start(self) -> None:
        """Start watching (in the running event loop)."""
        self._changed = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name="bounceback-dashboard-watch")

    async def stop(self) -> None:
        """Stop watching and close the connection."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._wake()

    async def wait(self, version: int, timeout: float) -> Snapshot | None:
        """The first snapshot newer than ``version``, or None after ``timeout`` seconds without one."""
        changed = self._changed
        if changed is None:
            raise RuntimeError("LiveState.wait before start()")
        if self.snapshot.version > version or self._task is None:
            return self.snapshot if self.snapshot.version > version else None
        try:
            await asyncio.wait_for(changed.wait(), timeout)
        except TimeoutError:
            return None
        return self.snapshot if self.snapshot.version > version else None

    def _wake(self) -> None:
        """Wake every waiter of the current snapshot and give the next waiters a fresh event."""
        changed = self._changed
        if changed is not None:
            self._changed = asyncio.Event()
            changed.set()

    @property
    def running(self) -> bool:
        """True while the watch task runs."""
        return self._task is not None

    def _data_version(self) -> int | None:
        try:
            if self._conn is None:
                self._conn = connect(self.path, timeout=0.2)
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])
        except (sqlite3.Error, OSError, StoreError) as exc:
            _log.debug("dashboard: cannot poll %s: %s", self.path, exc)
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            return None

    async def _run(self) -> None:
        seen = self._data_version()
        refreshed = time.monotonic()
        while True:
            await asyncio.sleep(self.poll)
            version = self._data_version()
            due = time.monotonic() - refreshed >= self.refresh
            if version == seen and not due:
                continue
            seen = version
            refreshed = time.monotonic()
            try:
                fresh = await asyncio.to_thread(self._collect)
            except Exception:
                _log.exception("dashboard: collecting a snapshot failed")
                continue
            await self._publish(fresh)

    async def _publish(self, fresh: Snapshot) -> None:
        old, self.snapshot = self.snapshot, fresh
        self.changed_at = time.time()
        for notice in notices_between(old, fresh):
            self._notice_seq += 1
            self._notices.append((self._notice_seq, notice))
            if self._on_notice is not None:
                asyncio.get_running_loop().run_in_executor(None, self._on_notice, notice)
        self._wake()
