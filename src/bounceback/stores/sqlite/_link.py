"""One lazily opened, self-healing connection to the home database, for the shared-state stores.

The breaker store and the budget ledger sit on the hot path of every protected call, so their connection
must fail fast and heal by itself:

* it is opened on first use, not in the constructor, so a database that is locked, read-only or corrupt
  when the program starts does not stop it: the store raises :class:`~bounceback.errors.StoreError`, the
  breaker carries on with local state and asks again later;
* after any error other than "locked" it is closed and reopened on the next use, so a corrupt file that a
  person moved aside, or a folder made writable again, is picked up without a restart;
* a process forked after the connection was opened gets a connection of its own (SQLite connections must
  not cross ``fork``);
* after any failure, the next read takes the write lock (``BEGIN IMMEDIATE``) instead of a plain read
  snapshot: a breaker asks its store "are you back?" with a read, and WAL lets a read through while another
  process holds the write lock (or while the file is read-only), so only a read that could have written
  proves the store usable again; otherwise the breaker would flap recovered / unavailable every retry;
* the busy timeout is short (1 s by default): a call waits at most that long for another process's
  transaction, then the breaker falls back instead of stalling the caller.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from bounceback.errors import ConfigError, StoreError
from bounceback.stores._home import connect, database_path, explain, migrate, store_name

__all__ = ["DEFAULT_BUSY_TIMEOUT", "SqliteLink"]

DEFAULT_BUSY_TIMEOUT = 1.0
"""Seconds a shared-state store waits for another process's write lock before giving up."""

T = TypeVar("T")

_PROVE_WRITABLE = "UPDATE schema_migrations SET version = version WHERE 0"


def _is_busy(cause: BaseException | None) -> bool:
    if not isinstance(cause, sqlite3.OperationalError):
        return False
    text = str(cause).lower()
    return "locked" in text or "busy" in text


class SqliteLink:
    """A thread-safe, fork-aware connection to ``path`` (default: the home database) for ``components``.

    >>> import tempfile, pathlib
    >>> link = SqliteLink(pathlib.Path(tempfile.mkdtemp()) / "bounceback.db", components=())
    >>> link.write("count", lambda conn: conn.execute("SELECT 1").fetchone()[0])
    1
    >>> link.close()
    """

    __slots__ = ("_conn", "_lock", "_pid", "_suspect", "components", "name", "path", "timeout")

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        components: Sequence[str],
        timeout: float = DEFAULT_BUSY_TIMEOUT,
    ) -> None:
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 <= timeout <= 600:
            raise ConfigError("timeout", timeout, "seconds from 0 to 600 to wait for a locked database")
        self.path = Path(path) if path is not None else database_path()
        self.name = store_name(self.path)
        self.components = tuple(components)
        self.timeout = float(timeout)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        # Set by any failure, cleared by the next transaction that took the write lock.
        self._suspect = False

    def _connection(self) -> sqlite3.Connection:
        conn = self._conn
        pid = os.getpid()
        if conn is not None and self._pid == pid:
            return conn
        # A connection inherited through fork belongs to the parent: leave it alone (closing it here
        # could release the parent's locks) and open our own.
        self._conn = None
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                conn = connect(self.path, timeout=self.timeout)
                break
            except StoreError as exc:
                # Processes opening a new database at once all switch it to WAL; SQLite refuses all but
                # one at once, without waiting (two lock upgrades would deadlock). Back off, try again.
                if not _is_busy(exc.__cause__) or time.monotonic() >= deadline:
                    raise
                time.sleep(0.005)
        try:
            if self.components:
                migrate(conn, self.path, self.components)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._pid = pid
        return conn

    def write(self, action: str, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in one ``BEGIN IMMEDIATE`` transaction; StoreError (saying ``action``) on failure.

        IMMEDIATE takes the write lock first, so the read-modify-write inside cannot lose another process's
        update. (Inlined rather than ``_home.transaction``: this runs once per protected call.)
        """
        with self._lock:
            try:
                conn = (
                    self._conn if self._pid == os.getpid() and self._conn is not None else self._connection()
                )
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = body(conn)
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                conn.execute("COMMIT")
                self._suspect = False
                return result
            except (sqlite3.Error, OSError) as exc:
                error = StoreError(self.name, action, explain(exc, self.path))
                self._after_error(exc)
                raise error from exc
            except StoreError as exc:
                self._after_error(exc.__cause__)
                raise

    def read(self, action: str, body: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``body`` in one read transaction (a consistent snapshot, no write lock).

        After a failure the read takes the write lock instead, so that it succeeds only when a write would
        (see the module's notes): it is the store's health check.
        """
        with self._lock:
            try:
                conn = (
                    self._conn if self._pid == os.getpid() and self._conn is not None else self._connection()
                )
                if self._suspect:
                    conn.execute("BEGIN IMMEDIATE")
                    if self.components:
                        # BEGIN IMMEDIATE succeeds on a read-only file; a statement that writes (nothing)
                        # does not, so together they prove the store can be written.
                        conn.execute(_PROVE_WRITABLE)
                else:
                    conn.execute("BEGIN")
                try:
                    result = body(conn)
                finally:
                    conn.execute("COMMIT")
                self._suspect = False
                return result
            except (sqlite3.Error, OSError) as exc:
                error = StoreError(self.name, action, explain(exc, self.path))
                self._after_error(exc)
                raise error from exc
            except StoreError as exc:
                self._after_error(exc.__cause__)
                raise

    def _after_error(self, cause: BaseException | None) -> None:
        self._suspect = True
        if _is_busy(cause):
            return  # another process is busy: the connection itself is fine
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            # Closing a broken handle may complain; it is being dropped anyway.
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def close(self) -> None:
        """Close the connection (it is reopened if the store is used again)."""
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                conn.close()

    def __repr__(self) -> str:
        return f"SqliteLink({str(self.path)!r}, timeout={self.timeout:g})"
