"""The reading side of the persisted settings: values from memory, kept fresh by a watcher thread.

:class:`WatchedSettings` is a ``SettingsSource``: ``effective()`` answers from memory, and a daemon thread
(started by the first ``subscribe``) polls ``PRAGMA data_version`` about four times a second, so a change
made by another process reaches subscribers within a second while the calls a policy protects never query
the database. Reading never fails: when the database is locked, corrupt, unreadable or newer than this
code, it keeps the last good values (or the defaults) and logs a warning.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from types import MappingProxyType
from typing import Any, Self

from bounceback.core._events import EventBus, SettingsChanged, default_bus
from bounceback.core._time import SYSTEM_CLOCK, Clock
from bounceback.core.settings._source import SettingsLayers, Subscribers
from bounceback.errors import StoreError
from bounceback.stores._home import connect, database_path, migrate, translate_errors
from bounceback.stores.settings._rows import Change, check_version, current_user, fetch_changes, read_layers

__all__ = ["WatchedSettings"]

_log = logging.getLogger("bounceback.settings")
# Polling reads must not stall a running program: wait this long for a lock, then keep the last values.
_POLL_BUSY_SECONDS = 0.2


class WatchedSettings:
    """Settings read from the home database (``path``, default ``<home>/bounceback.db``), live.

    The base of :class:`~bounceback.stores.SqliteSettings`, which adds the explicit reads and the writes.
    ``poll_interval`` is how often the watcher looks for changes; ``timeout`` how long writes wait for a
    lock; ``who`` names this process in the history (default ``user@host/pid``).
    """

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        home: str | Path | None = None,
        clock: Clock = SYSTEM_CLOCK,
        poll_interval: float = 0.25,
        timeout: float = 5.0,
        bus: EventBus | None = None,
        who: str | None = None,
    ) -> None:
        self.path = Path(path) if path is not None else database_path(home)
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.who = who or current_user()
        self._clock = clock
        self._bus = bus or default_bus
        self._lock = threading.RLock()  # guards the connection and the loaded state
        self._conn: sqlite3.Connection | None = None
        self._layers = SettingsLayers()
        self._cache: dict[str | None, Mapping[str, Any]] = {}
        self._loaded = False
        self._data_version: int | None = None
        self._last_change = 0
        self._checked_at = -float("inf")
        self._failing = False
        self._subscribers = Subscribers()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._budget_ledger: Any = None

    def __repr__(self) -> str:
        return f"SqliteSettings({str(self.path)!r})"

    # -- the reading side (SettingsSource): never raises for store problems ------------------------

    def effective(self, operation: str | None = None) -> Mapping[str, Any]:
        """Every key's value for ``operation``, from memory (read-only; kept fresh by the watcher).

        Without a watcher, the database is checked at most once per ``poll_interval``.
        """
        if self._watcher is None and self._clock.monotonic() - self._checked_at >= self.poll_interval:
            self.refresh()
        cached = self._cache.get(operation)
        if cached is None:
            cached = MappingProxyType(self._layers.effective(operation))
            self._cache[operation] = cached
        return cached

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` (from the watcher thread) after each change; returns the unsubscriber."""
        remove = self._subscribers.add(callback)
        if not self._loaded:
            self.refresh()
        self._start_watcher()
        return remove

    def refresh(self) -> bool:
        """Look for changes now; True if values changed. Store problems are logged, never raised."""
        try:
            with self._lock:
                self._checked_at = self._clock.monotonic()
                with self._busy_timeout(_POLL_BUSY_SECONDS):
                    changes = self._reload_if_changed()
        except (StoreError, sqlite3.Error, ValueError) as exc:
            # Reconnect next time: the file may have been replaced, or a lock may have ended.
            self._drop_connection()
            if not self._failing:
                self._failing = True
                source = "last good values" if self._loaded else "built-in defaults"
                _log.warning("cannot read settings from %s (%s); using the %s", self.path, exc, source)
            return False
        if self._failing:
            self._failing = False
            _log.warning("settings in %s are readable again", self.path)
        if changes is None:
            return False
        self._announce(changes)
        return True

    def close(self) -> None:
        """Stop the watcher and close the database connection."""
        self._stop.set()
        watcher, self._watcher = self._watcher, None
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=2)
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            closing = getattr(self._budget_ledger, "close", None)
            if callable(closing):
                closing()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------

    def _connection(self, busy_seconds: float | None = None) -> sqlite3.Connection:
        if self._conn is None:
            conn = connect(self.path, timeout=self.timeout if busy_seconds is None else busy_seconds)
            try:
                migrate(conn, self.path, ["settings"])
            except BaseException:
                conn.close()
                raise
            self._conn = conn
        return self._conn

    def _drop_connection(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            # data_version counts per connection: a new connection's number means nothing to the old one.
            self._data_version = None
        if conn is not None:
            with suppress(sqlite3.Error):
                conn.close()

    @contextmanager
    def _busy_timeout(self, seconds: float) -> Iterator[None]:
        conn = self._connection(seconds)
        with translate_errors(self.path, "set the busy timeout"):
            conn.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
        try:
            yield
        finally:
            if self._conn is not None:
                self._conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")

    def _reload_if_changed(self) -> list[Change] | None:
        conn = self._connection()
        first = not self._loaded
        with translate_errors(self.path, "read the settings"):
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if not first and version == self._data_version:
                return None
            conn.execute("BEGIN")  # one snapshot for the values and the history
            try:
                check_version(conn, self.path)
                layers = read_layers(conn)
                if first:
                    # History before the first load is old news: start announcing after it.
                    changes: list[Change] = []
                    self._last_change = conn.execute(
                        "SELECT coalesce(max(id), 0) FROM settings_history"
                    ).fetchone()[0]
                else:
                    changes = fetch_changes(conn, after=self._last_change)
            finally:
                conn.execute("COMMIT")
        self._data_version = version
        same = layers == self._layers
        self._install(layers)
        if changes:
            self._last_change = changes[0].id
        return None if same and not changes else changes

    def _install(self, layers: SettingsLayers) -> None:
        if layers != self._layers or not self._loaded:
            self._layers = layers
            self._cache = {}
        self._loaded = True

    def _announce(self, changes: list[Change]) -> None:
        # History is newest first; events go out in the order the changes were made.
        if self._bus.listening:
            for change in reversed(changes):
                old = change.old if change.old_set else None
                new = change.new if change.new_set else None
                event = SettingsChanged(change.operation or "", change.at, change.key, old, new, change.who)
                self._bus.emit(event)
        self._subscribers.notify()

    def _start_watcher(self) -> None:
        with self._lock:
            if self._watcher is not None or self._stop.is_set():
                return
            # The thread holds only a weak reference, so dropping the settings object ends it.
            ref = weakref.ref(self)
            self._watcher = threading.Thread(
                target=_watch,
                args=(ref, self._stop, self.poll_interval),
                name="bounceback-settings",
                daemon=True,
            )
            self._watcher.start()


def _watch(ref: weakref.ref[WatchedSettings], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        settings = ref()
        if settings is None:
            return
        settings.refresh()
        del settings
