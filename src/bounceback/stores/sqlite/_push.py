"""State changes of shared breakers pushed to the processes of one machine: a poll of ``PRAGMA data_version``.

SQLite has no pub/sub, but it has a counter that is nearly free to read: ``PRAGMA data_version`` on a
connection changes whenever *another* connection commits to the database. :class:`SqliteStateFeed` is a
daemon thread with a read-only connection of its own that reads it every ``poll_seconds`` (0.02 s: a few
microseconds each, no lock taken, no disk read while nothing changes); when it moved, one ``SELECT`` reads
the states of the breakers this process runs and hands them to the batched store's cache, which keeps the
ones newer than what it holds. That is the push of the Redis store for the processes of one machine: a
force-open made by one process reaches the others within one poll, not at their next flush or refresh.

The counter also moves with every flush of every process (outcomes, not states), so the ``SELECT`` runs at
most once per poll, however many processes flush. A database that cannot be read is tried again with a
growing pause; the batched store's flushes keep the cache fresh meanwhile.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

from bounceback.core.breaker._pending import Deliver
from bounceback.core.breaker._store import SharedState

__all__ = ["SqliteStateFeed"]

_log = logging.getLogger("bounceback.store")
_CHUNK = 500  # keys per SELECT: well under SQLite's limit on bound parameters


class SqliteStateFeed:
    """A daemon thread that polls ``PRAGMA data_version`` of ``path`` and delivers the states of ``keys()``.

    ``polls`` counts the reads of the counter, ``reads`` the ``SELECT`` of states it caused.

    .. code-block:: text

        feed = store.watch(deliver, keys)     # what BatchedBreakerStore does with a SqliteBreakerStore
        ...
        feed.close()
    """

    def __init__(
        self,
        path: Path,
        deliver: Deliver,
        keys: Callable[[], list[str]],
        *,
        poll_seconds: float = 0.02,
        max_pause: float = 1.0,
    ) -> None:
        self.path = path
        self.polls = 0
        self.reads = 0
        self._deliver = deliver
        self._keys = keys
        self._poll = poll_seconds
        self._max_pause = max_pause
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"bounceback-push sqlite:{path}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        seen: int | None = None
        pause = self._poll
        while not self._stopped.wait(pause):
            try:
                if conn is None:
                    # Its own connection (data_version counts the commits of every *other* one); it only
                    # reads, so it never holds up a writer.
                    # mode=rw: never create the file (the store does, with its migrations).
                    conn = sqlite3.connect(
                        f"{self.path.absolute().as_uri()}?mode=rw",
                        uri=True,
                        timeout=0.5,
                        check_same_thread=False,
                    )
                    seen = None
                version = conn.execute("PRAGMA data_version").fetchone()[0]
                self.polls += 1
                if version != seen:
                    seen = version
                    self._read(conn)
                pause = self._poll
            except sqlite3.Error as exc:
                _log.debug("push feed on %s cannot read the database: %s", self.path, exc)
                if conn is not None:
                    with contextlib.suppress(sqlite3.Error):
                        conn.close()
                conn = None
                pause = min(max(pause * 2, self._poll), self._max_pause)
        if conn is not None:
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _read(self, conn: sqlite3.Connection) -> None:
        names = self._keys()
        for start in range(0, len(names), _CHUNK):
            chunk = names[start : start + _CHUNK]
            rows = conn.execute(
                "SELECT key, state, version, since, open_until, reopens, reason FROM breaker_state "
                f"WHERE key IN ({','.join('?' * len(chunk))})",
                chunk,
            ).fetchall()
            self.reads += 1
            for key, state, version, since, until, reopens, reason in rows:
                # A close always empties the window (the breaker's only transitions to closed clear it).
                self._deliver(
                    key, SharedState(state, version, since, until, reopens, reason), state == "closed"
                )

    @property
    def alive(self) -> bool:
        """True while the feed's thread runs (until :meth:`close`)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Ask the thread to end (it closes its connection on its way out), without waiting."""
        self._stopped.set()

    def close(self) -> None:
        """Stop the thread and close its connection; idempotent."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=max(2.0, 4 * self._poll))
