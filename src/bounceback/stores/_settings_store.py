"""Settings persisted in the home SQLite database, seen live by every running program.

:class:`SqliteSettings` is a ``SettingsSource``: ``effective()`` answers from memory, and a daemon thread
(started by the first ``subscribe``) polls ``PRAGMA data_version`` about four times a second, so a change
made by another process reaches subscribers within a second while the calls a policy protects never query
the database. The reading side never fails: when the database is locked, corrupt, unreadable or newer
than this code, it keeps the last good values (or the defaults) and logs a warning. The writing side
(``set``, ``reset``, ``undo``, ``import_document``) runs each change in one ``BEGIN IMMEDIATE``
transaction that re-reads the stored values first, so concurrent writers lose nothing, a refused change
writes nothing, and every change lands in the history.
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
from typing import Any

from bounceback.core._events import EventBus, SettingsChanged, default_bus
from bounceback.core._settings import (
    Format,
    Resolved,
    SettingsLayers,
    Subscribers,
    check_operation,
    layers_from_document,
    lookup,
    raise_problems,
    render_document,
    split_key,
)
from bounceback.core._time import SYSTEM_CLOCK, Clock
from bounceback.errors import ConfigError, StoreError
from bounceback.stores._home import (
    connect,
    database_path,
    migrate,
    transaction,
    translate_errors,
)
from bounceback.stores._settings_rows import (
    Change,
    Stamp,
    check_version,
    current_user,
    encode,
    fetch_changes,
    read_layers,
    write_diff,
)

__all__ = ["SqliteSettings"]

_log = logging.getLogger("bounceback.settings")
# Polling reads must not stall a running program: wait this long for a lock, then keep the last values.
_POLL_BUSY_SECONDS = 0.2


class SqliteSettings:
    """User settings in the home database (``path``, default ``<home>/bounceback.db``).

    >>> import tempfile, pathlib
    >>> settings = SqliteSettings(pathlib.Path(tempfile.mkdtemp()) / "bounceback.db")
    >>> change = settings.set("retry.max_attempts", "7")
    >>> change.id, change.field, change.text("old"), change.text("new")
    (1, 'retry.max_attempts', '(not set)', '7')
    >>> settings.effective("any-operation")["retry.max_attempts"]
    7
    >>> settings.close()
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

    def __enter__(self) -> SqliteSettings:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- explicit reads: raise StoreError (for the CLI and the dashboard) --------------------------

    def layers(self) -> SettingsLayers:
        """The stored values (without defaults), read now."""
        with self._lock:
            conn = self._connection()
            with translate_errors(self.path, "read the settings"):
                self._install(read_layers(conn))
            return self._layers

    def resolve(self, operation: str | None = None) -> dict[str, Resolved]:
        """Every key's value for ``operation`` with the layer it came from, read now."""
        if operation is not None:
            check_operation(operation)
        return self.layers().resolve(operation)

    def get(self, key: str, operation: str | None = None) -> Resolved:
        """One key's resolved value, read now (``operations.<name>.<key>`` works too)."""
        op, key = split_key(key, operation)
        lookup(key)
        return self.resolve(op)[key]

    def history(
        self, *, limit: int | None = 100, operation: str | None = None, key: str | None = None
    ) -> list[Change]:
        """Changes, newest first, optionally only those of one ``operation`` ("" for global) or ``key``."""
        with self._lock:
            conn = self._connection()
            with translate_errors(self.path, "read the settings history"):
                return fetch_changes(conn, limit=limit, operation=operation, key=key)

    def export(self, fmt: Format = "toml") -> str:
        """Every stored value as a TOML or JSON document that :meth:`import_document` reads back."""
        header = f"bounceback settings from {self.path}\nDurations are in seconds."
        return render_document(self.layers(), fmt, header=header)

    # -- writes: one transaction each, all-or-nothing -----------------------------------------------

    def set(self, key: str, value: Any, operation: str | None = None) -> Change | None:
        """Validate and store one value (text or typed); None when it already had that value."""
        op, key = split_key(key, operation)

        def change(_conn: sqlite3.Connection, layers: SettingsLayers) -> SettingsLayers:
            return layers.updated(key, value, op)[0]

        changes = self._write(change, "set", f"set {key}")
        return changes[0] if changes else None

    def reset(self, key: str, operation: str | None = None) -> Change | None:
        """Remove one stored value so the layer below applies again; None when it was not set."""
        op, key = split_key(key, operation)
        lookup(key)
        if op is not None:
            check_operation(op)

        def change(_conn: sqlite3.Connection, layers: SettingsLayers) -> SettingsLayers:
            updated = layers.without(key, op)
            raise_problems(updated.problems([(op, key)]))
            return updated

        changes = self._write(change, "reset", f"reset {key}")
        return changes[0] if changes else None

    def undo(self, change_id: int) -> Change:
        """Revert one history entry, if its new value is still in force (else ConfigError)."""

        def change(conn: sqlite3.Connection, layers: SettingsLayers) -> SettingsLayers:
            found = fetch_changes(conn, ident=change_id)
            if not found:
                raise ConfigError(
                    "id", change_id, "the id of a change listed by `bounceback settings history`"
                )
            entry = found[0]
            now_set, now = layers.stored(entry.key, entry.operation)
            if (now_set, encode(now) if now_set else None) != (
                entry.new_set,
                encode(entry.new) if entry.new_set else None,
            ):
                raise ConfigError(
                    "id",
                    change_id,
                    "a change whose new value is still in force",
                    hint=f"{entry.field} changed again since; undo the later change first "
                    "(see `bounceback settings history`)",
                )
            if entry.old_set:
                return layers.updated(entry.key, entry.old, entry.operation)[0]
            updated = layers.without(entry.key, entry.operation)
            raise_problems(updated.problems([(entry.operation, entry.key)]))
            return updated

        changes = self._write(change, "undo", f"undo change {change_id}", undoes=change_id)
        if not changes:
            raise ConfigError("id", change_id, "a change that can still be undone")
        return changes[0]

    def import_document(
        self, document: Mapping[str, Any], *, replace: bool = False, source: str = "<document>"
    ) -> list[Change]:
        """Store every value of a settings document, or none: every problem is listed in the error.

        With ``replace``, stored values the document does not mention are reset.
        """
        incoming, problems = layers_from_document(document, check_combinations=False)
        touched = [(op, key) for op, key, _ in incoming.entries()]

        def change(_conn: sqlite3.Connection, layers: SettingsLayers) -> SettingsLayers:
            merged = SettingsLayers() if replace else layers
            for op, key, value in incoming.entries():
                merged = merged.with_value(key, value, op)
            found = problems + merged.problems(touched)
            if found:
                error = ConfigError(
                    "import",
                    source,
                    "a settings document in which every entry is valid",
                    hint=f"{len(found)} problem(s) listed below; nothing was imported",
                )
                for problem in found:
                    error.add_note(str(problem))
                raise error
            return merged

        return self._write(change, "import", f"import settings from {source}")

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
        with translate_errors(self.path, "read the settings"):
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if self._loaded and version == self._data_version:
                return None
            conn.execute("BEGIN")
            try:
                check_version(conn, self.path)
                layers = read_layers(conn)
                changes = fetch_changes(conn, after=self._last_change)
            finally:
                conn.execute("COMMIT")
        first = not self._loaded
        self._data_version = version
        if first:
            # The first load is not a change: history before it is old news.
            changes = []
        same = layers == self._layers
        self._install(layers)
        if changes:
            self._last_change = changes[0].id
        elif first:
            self._last_change = conn.execute("SELECT coalesce(max(id), 0) FROM settings_history").fetchone()[
                0
            ]
        return None if same and not changes else changes

    def _install(self, layers: SettingsLayers) -> None:
        if layers != self._layers or not self._loaded:
            self._layers = layers
            self._cache = {}
        self._loaded = True

    def _write(
        self,
        change: Callable[[sqlite3.Connection, SettingsLayers], SettingsLayers],
        action: str,
        what: str,
        undoes: int | None = None,
    ) -> list[Change]:
        with self._lock:
            conn = self._connection()
            with transaction(conn, self.path, what):
                check_version(conn, self.path)
                before = read_layers(conn)
                after = change(conn, before)
                when = self._clock.wall()
                new_ids = write_diff(conn, before, after, Stamp(when, self.who, action, undoes))
                # Changes by others since the last poll are announced too (they are in ``before``).
                since = self._last_change if self._loaded else min(new_ids, default=1) - 1
                changes = fetch_changes(conn, after=since) if new_ids else []
            if not self._loaded:
                self._data_version = None  # our own commit does not move data_version; read it next
            self._install(after)
            if changes:
                self._last_change = max(self._last_change, changes[0].id)
        own = [c for c in changes if c.id in new_ids]
        if changes:
            self._announce(changes)
        return sorted(own, key=lambda c: c.id)

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


def _watch(ref: weakref.ref[SqliteSettings], stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        settings = ref()
        if settings is None:
            return
        settings.refresh()
        del settings
