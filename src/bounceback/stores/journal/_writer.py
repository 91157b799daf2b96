"""The journal writer: a subscriber of the event bus that writes runs and attempts from a background thread.

Cost to the program, by design:

* a successful call emits no event, so it pays nothing;
* a failing attempt's events are appended to a ``collections.deque`` (the subscriber *is* the deque's
  ``append``: no Python frame, no lock, no I/O in the calling thread);
* a daemon thread drains the queue every ``flush_interval`` (50 ms by default) and writes the batch in
  **one transaction**, so a crash (even SIGKILL) leaves either the whole batch or none of it.

When the writer closes (``close()``, the end of a ``with`` block, or the program's normal exit: the
writer registers itself with :mod:`atexit`) with events it could not write (disk full, read-only, locked),
it logs a final error naming the runs and operations that are missing from the journal and why, so a gap is
never silent; ``JournalWriter.lost`` counts them.

The same thread polls the cancel requests other processes write (``Journal.request_cancel``) about every
``cancel_poll`` seconds, only while this process has recoveries running, and cancels the matching runs
through ``run_controls`` (enabled while the writer runs). It also prunes entries older than the retention
(``journal.retention``) at start and then every ``prune_interval``.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from bounceback.core._control import RunControls, run_controls
from bounceback.core._events import (
    Event,
    EventBus,
    default_bus,
)
from bounceback.core._registry import Registry, registry
from bounceback.core._time import SYSTEM_CLOCK, Clock
from bounceback.errors import StoreError
from bounceback.stores._home import connect, database_path, migrate, transaction, translate_errors
from bounceback.stores.journal._apply import ApplyState, _apply
from bounceback.stores.journal._journal import HOST, prune

__all__ = ["JournalWriter"]

_log = logging.getLogger("bounceback.journal")


class JournalWriter:
    """Write every recovery run, attempt and breaker change of this process to the journal.

    Use it as a context manager (or :meth:`start` / :meth:`close`). ``retention`` (seconds) or
    ``settings`` (a SettingsSource, read live for ``journal.retention``) decides what is pruned.

    >>> import tempfile, pathlib
    >>> from bounceback import Policy
    >>> from bounceback.events import EventBus
    >>> from bounceback.stores.journal._journal import Journal
    >>> from bounceback.testing import FakeClock
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "bounceback.db"
    >>> bus, clock, tries = EventBus(), FakeClock(), []
    >>> def flaky():
    ...     tries.append(1)
    ...     if len(tries) < 3:
    ...         raise ConnectionResetError("reset by peer")
    >>> with JournalWriter(db, bus=bus, clock=clock):
    ...     Policy("sync", attempts=5, bus=bus, clock=clock).call(flaky)
    >>> [(run.operation, run.status, run.attempts) for run in Journal(db).runs()]
    [('sync', 'recovered', 3)]
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        home: str | Path | None = None,
        bus: EventBus | None = None,
        clock: Clock = SYSTEM_CLOCK,
        retention: float | None = None,
        settings: Any = None,
        flush_interval: float = 0.05,
        cancel_poll: float = 0.2,
        limits_interval: float = 1.0,
        named: Registry = registry,
        prune_interval: float = 600.0,
        timeout: float = 1.0,
        max_queue: int = 100_000,
        controls: RunControls = run_controls,
    ) -> None:
        self.path = Path(path) if path is not None else database_path(home)
        self.flush_interval = flush_interval
        self.cancel_poll = cancel_poll
        self.limits_interval = limits_interval
        self._named = named
        self.prune_interval = prune_interval
        self.timeout = timeout
        self._bus = bus or default_bus
        self._clock = clock
        self._retention = retention
        self._settings = settings
        self._controls = controls
        # Bounded: if the database cannot keep up for long, the oldest events are dropped, not memory.
        self._queue: collections.deque[Event] = collections.deque(maxlen=max_queue)
        self._pending: list[Event] = []  # a batch whose write failed, tried again first
        self._write_lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unsubscribe: Any = None
        self._cancel_version: int | None = None
        self._failing = False
        self._state = ApplyState()
        self.written = 0
        """Events written so far (for tests and metrics)."""
        self.dropped = 0
        """Events given up because the database stayed unwritable past ``max_queue`` queued events."""
        self.lost = 0
        """Events still unwritten when the writer closed (reported in a final error)."""
        self._last_error = ""

    def __repr__(self) -> str:
        return f"JournalWriter({str(self.path)!r})"

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> JournalWriter:
        """Open the database, subscribe to the bus, enable run controls and start the thread."""
        if self._thread is not None:
            return self
        self._connection()  # fail here, in the caller's thread, if the database cannot be opened
        self._controls.enable()
        # The deque's own append: the emitting thread runs no Python code of ours.
        self._unsubscribe = self._bus.subscribe(self._queue.append)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="bounceback-journal", daemon=True)
        self._thread.start()
        # A program that ends without close() still writes (or reports) what is queued.
        atexit.register(self.close)
        return self

    def close(self) -> None:
        """Stop listening, write what is queued, stop the thread, and close the database."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
            self._controls.disable()
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        atexit.unregister(self.close)
        self.flush()
        with self._write_lock:
            left = self._pending + list(self._queue)
            self._pending = []
            self._queue.clear()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        if left:
            self._report_lost(left)

    def _report_lost(self, events: list[Event]) -> None:
        """The final word on events that will never be written: which runs, which operations, and why."""
        self.lost += len(events)
        runs: dict[str, set[str]] = {}
        for event in events:
            run_id = getattr(event, "run_id", None)
            runs.setdefault(event.operation, set())
            if run_id:
                runs[event.operation].add(str(run_id))
        shown = "; ".join(
            f"{op}: "
            + (", ".join(f"run {r}" for r in sorted(ids)[:5]) or "breaker events")
            + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
            for op, ids in sorted(runs.items())[:10]
        )
        more = f"; and {len(runs) - 10} more operations" if len(runs) > 10 else ""
        _log.error(
            "bounceback: %d journal event(s) of this process were NOT written to %s and are lost (%s%s): %s",
            len(events),
            self.path,
            shown,
            more,
            self._last_error or "the database could not be written",
        )

    def __enter__(self) -> JournalWriter:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def queued(self) -> int:
        """Events waiting to be written."""
        return len(self._queue) + len(self._pending)

    # -- the thread ----------------------------------------------------------------------------------

    def _loop(self) -> None:
        clock = self._clock
        last_poll = last_prune = -float("inf")
        # Wait first: whatever the first tick would find is written one interval later anyway.
        last_limits = -float("inf")
        while not self._stop.wait(self.flush_interval):
            try:
                now = clock.monotonic()
                if now - last_limits >= self.limits_interval:
                    last_limits = now
                    self.publish_limits()
                if now - last_prune >= self.prune_interval:
                    last_prune = now
                    self.prune()
                self.flush()
                if now - last_poll >= self.cancel_poll:
                    last_poll = now
                    self.poll_cancels()
            except Exception:
                # The journal must never take the program down; the next tick tries again.
                _log.exception("bounceback journal writer failed; trying again")

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect(self.path, timeout=self.timeout)
            try:
                migrate(conn, self.path, ["journal"])
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    # -- writing -------------------------------------------------------------------------------------

    def flush(self) -> int:
        """Write every queued event now, in one transaction; returns how many were written.

        A store problem (locked, read-only, disk full) keeps the batch for the next try and logs once.
        """
        with self._write_lock:
            batch = self._pending
            queue = self._queue
            while queue:
                batch.append(queue.popleft())
            if not batch:
                return 0
            try:
                conn = self._connection()
                with transaction(conn, self.path, "write the journal"):
                    _apply(conn, batch, os.getpid(), HOST, self._state)
            except (StoreError, sqlite3.Error) as exc:
                self._last_error = str(exc)
                if not self._failing:
                    self._failing = True
                    _log.warning("cannot write the journal to %s (%s); will try again", self.path, exc)
                limit = self._queue.maxlen or 100_000
                if len(batch) > limit:
                    excess = len(batch) - limit
                    del batch[:excess]
                    # Memory stays bounded, so the oldest events go; a gap in the journal must not be silent.
                    if not self.dropped:
                        _log.warning(
                            "the journal in %s stayed unwritable past %d queued events; dropping the oldest "
                            "(JournalWriter.dropped counts them)",
                            self.path,
                            limit,
                        )
                    self.dropped += excess
                return 0
            if self._failing:
                self._failing = False
                _log.warning("the journal in %s is writable again", self.path)
            self._pending = []
            self.written += len(batch)
            return len(batch)

    def publish_limits(self) -> int:
        """Write the current reading of every limiter of this process's named policies (concurrency and
        rate); returns how many. The dashboard shows them while they are fresh. Nothing is written, and
        no connection opened, when no named policy has a limiter. A shared limiter's reading carries the
        fleet's count from its store (one read per limiter, here on the writer's thread, never on a call)."""
        readings: list[tuple[Any, ...]] = []
        seen: set[int] = set()
        wall = self._clock.wall()
        pid = os.getpid()
        for _, policy in sorted(self._named.policies().items()):
            limiter = getattr(policy, "limiter", None)
            if limiter is not None and id(limiter) not in seen:
                seen.add(id(limiter))
                snap = limiter.snapshot()
                readings.append(
                    (
                        limiter.name,
                        "concurrency",
                        pid,
                        HOST,
                        wall,
                        float(snap["in_flight"]),
                        snap["waiting"],
                        float(snap["max_in_flight"]),
                        snap["rejected"],
                        snap["shared"],
                        snap.get("fleet_in_flight"),
                    )
                )
            bucket = getattr(policy, "rate_limit", None)
            if bucket is not None and id(bucket) not in seen:
                seen.add(id(bucket))
                snap = bucket.snapshot()
                readings.append(
                    (
                        bucket.name,
                        "rate",
                        pid,
                        HOST,
                        wall,
                        float(snap["tokens"]),
                        0,
                        bucket.rate,
                        snap["rejected"],
                        snap["shared"],
                        snap.get("fleet_tokens"),
                    )
                )
        if not readings:
            return 0
        with self._write_lock:
            try:
                conn = self._connection()
                with transaction(conn, self.path, "write the limiter readings"):
                    conn.executemany(
                        "INSERT OR REPLACE INTO journal_limits (name, kind, pid, host, at, used, waiting, "
                        "capacity, rejected, shared, fleet_used) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        readings,
                    )
            except (StoreError, sqlite3.Error) as exc:
                # A reading is replaced a second later anyway: nothing to keep, nothing to retry.
                _log.debug("cannot write the limiter readings to %s: %s", self.path, exc)
                return 0
        return len(readings)

    def prune(self) -> int:
        """Delete entries older than the retention now; returns the number of runs deleted."""
        retention = self._retention
        if retention is None and self._settings is not None:
            retention = self._settings.effective(None).get("journal.retention")
        if retention is None:
            retention = 7 * 86400.0
        with self._write_lock:
            try:
                return prune(self._connection(), self.path, self._clock.wall() - float(retention))
            except StoreError as exc:
                _log.warning("cannot prune the journal in %s (%s)", self.path, exc)
                return 0

    # -- cancel requests -----------------------------------------------------------------------------

    def poll_cancels(self) -> int:
        """Cancel the runs of this process that someone asked to stop; returns how many were cancelled."""
        active = self._controls.active()
        if not active:
            self._cancel_version = None  # look at everything again once a run starts
            return 0
        with self._write_lock:
            conn = self._connection()
            with translate_errors(self.path, "read the cancel requests"):
                # data_version moves only when another connection commits: most polls end here.
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                if version == self._cancel_version:
                    return 0
                self._cancel_version = version
                rows = conn.execute(
                    "SELECT run_id, reason FROM journal_cancel_requests WHERE handled_at IS NULL"
                ).fetchall()
            done = []
            for run_id, reason in rows:
                if run_id in active and self._controls.cancel(run_id, reason):
                    done.append(run_id)
            if done:
                with transaction(conn, self.path, "mark cancel requests handled"):
                    conn.executemany(
                        "UPDATE journal_cancel_requests SET handled_at = ?, handled_pid = ? WHERE run_id = ?",
                        [(self._clock.wall(), os.getpid(), run_id) for run_id in done],
                    )
            return len(done)
