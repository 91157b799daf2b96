"""The settings tables: their migrations, the history record, and reading rows back into layers.

Values are stored as the JSON of the normalised typed value (``0.25``, ``null`` for "off", ``[75]``);
in the history, SQL ``NULL`` means "not set" (the layer below applied), which keeps it apart from a value
explicitly set to ``off``.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import sqlite3
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bounceback.core.settings._source import SCHEMA, SettingsLayers, field_name
from bounceback.errors import ConfigError, StoreError
from bounceback.stores._home import register_migrations, schema_versions, store_name

__all__ = [
    "Change",
    "Stamp",
    "check_version",
    "current_user",
    "decode",
    "encode",
    "fetch_changes",
    "read_layers",
    "write_diff",
]

_log = logging.getLogger("bounceback.settings")

_NOW = "(julianday('now') - 2440587.5) * 86400.0"
_UPGRADE = "bounceback upgrade (open_seconds_max default 300s -> 15s)"

# The global layer first, so an operation whose cap now comes from it needs none of its own.
_KEEP_OLD_CAP = f"""
    INSERT INTO settings_history (at, who, action, operation, key, old, new)
    SELECT {_NOW}, '{_UPGRADE}', 'set', v.operation, 'breaker.open_seconds_max', NULL, '300.0'
    FROM settings_values AS v
    WHERE {{layers}} AND v.key = 'breaker.open_seconds' AND CAST(v.value AS REAL) > 15
      AND NOT EXISTS (SELECT 1 FROM settings_values AS w WHERE w.key = 'breaker.open_seconds_max'
                      AND w.operation IN (v.operation, ''));
    INSERT INTO settings_values (operation, key, value, updated_at)
    SELECT v.operation, 'breaker.open_seconds_max', '300.0', {_NOW}
    FROM settings_values AS v
    WHERE {{layers}} AND v.key = 'breaker.open_seconds' AND CAST(v.value AS REAL) > 15
      AND NOT EXISTS (SELECT 1 FROM settings_values AS w WHERE w.key = 'breaker.open_seconds_max'
                      AND w.operation IN (v.operation, ''));
"""

_MIGRATIONS = [
    """
    CREATE TABLE settings_values (
        operation  TEXT NOT NULL,          -- '' for a global value
        key        TEXT NOT NULL,
        value      TEXT NOT NULL,          -- JSON of the normalised value
        updated_at REAL NOT NULL,
        PRIMARY KEY (operation, key)
    );
    CREATE TABLE settings_history (
        id        INTEGER PRIMARY KEY AUTOINCREMENT,
        at        REAL NOT NULL,
        who       TEXT NOT NULL,           -- user@host/pid
        action    TEXT NOT NULL,           -- set, reset, import, undo
        operation TEXT NOT NULL,
        key       TEXT NOT NULL,
        old       TEXT,                    -- JSON; NULL when the key was not set
        new       TEXT,                    -- JSON; NULL when the key was reset
        undoes    INTEGER REFERENCES settings_history (id)
    );
    CREATE INDEX settings_history_key ON settings_history (operation, key, id);
    """,
    # 2: the default open-time cap fell from 300 s to 15 s. A layer that set breaker.open_seconds above the
    # new cap without a cap of its own (nor a global one) would now fail the open_seconds <= cap rule, so
    # it gets the cap it had, written down as a change the history shows (and `settings undo` reverts).
    _KEEP_OLD_CAP.format(layers="v.operation = ''") + _KEEP_OLD_CAP.format(layers="v.operation <> ''"),
]
register_migrations("settings", _MIGRATIONS)
_VERSION = len(_MIGRATIONS)

_HISTORY_COLUMNS = "id, at, who, action, operation, key, old, new, undoes"


def encode(value: Any) -> str:
    """The stored JSON text of a normalised value (tuples become lists)."""
    return json.dumps(list(value) if isinstance(value, tuple) else value, allow_nan=False)


def decode(text: str | None) -> tuple[bool, Any]:
    """``(False, None)`` for SQL NULL ("not set"), else ``(True, value)``."""
    if text is None:
        return False, None
    return True, json.loads(text)


def current_user() -> str:
    """``user@host/pid``: who made a change, as recorded in the history."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}/{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the settings history.

    ``old_set`` / ``new_set`` are False where the key was not set (the layer below applied): ``old`` /
    ``new`` are then None. ``operation`` is None for a global value; ``undoes`` is the id of the change an
    undo reverted.
    """

    id: int
    at: float
    who: str
    action: str
    operation: str | None
    key: str
    old: Any
    new: Any
    old_set: bool
    new_set: bool
    undoes: int | None = None

    @property
    def field(self) -> str:
        """The key with its operation: ``operations.fetch.retry.max_attempts``."""
        return field_name(self.key, self.operation)

    def text(self, which: str) -> str:
        """``old`` or ``new`` as text (``(not set)`` when not set)."""
        is_set, value = (self.old_set, self.old) if which == "old" else (self.new_set, self.new)
        if not is_set:
            return "(not set)"
        setting = SCHEMA.get(self.key)
        return setting.to_text(_typed(self.key, value)) if setting else json.dumps(value)

    def describe(self) -> str:
        """One line for people: ``#12 retry.max_attempts: 5 -> 7 (set by ann@box/4242)``."""
        return (
            f"#{self.id} {self.field}: {self.text('old')} -> {self.text('new')} ({self.action} by {self.who})"
        )

    def to_plain(self) -> dict[str, Any]:
        """The change as JSON-ready data."""
        return {
            "id": self.id,
            "at": self.at,
            "at_iso": datetime.fromtimestamp(self.at).astimezone().isoformat(timespec="seconds"),
            "who": self.who,
            "action": self.action,
            "operation": self.operation,
            "key": self.key,
            "old": self.old,
            "new": self.new,
            "old_set": self.old_set,
            "new_set": self.new_set,
            "undoes": self.undoes,
        }


def _typed(key: str, value: Any) -> Any:
    setting = SCHEMA[key]
    try:
        return setting.validate(value)
    except ConfigError:
        return value


def change_from_row(row: tuple[Any, ...]) -> Change:
    """A :class:`Change` from a ``settings_history`` row (columns as in ``_HISTORY_COLUMNS``)."""
    ident, at, who, action, operation, key, old, new, undoes = row
    old_set, old_value = decode(old)
    new_set, new_value = decode(new)
    return Change(
        ident, at, who, action, operation or None, key, old_value, new_value, old_set, new_set, undoes
    )


def fetch_changes(
    conn: sqlite3.Connection,
    *,
    after: int = 0,
    limit: int | None = None,
    operation: str | None = None,
    key: str | None = None,
    ident: int | None = None,
) -> list[Change]:
    """History entries, newest first; filtered by id (``after`` / ``ident``), operation and key."""
    clauses: list[str] = ["id > ?"]
    params: list[Any] = [after]
    if ident is not None:
        clauses.append("id = ?")
        params.append(ident)
    if operation is not None:
        clauses.append("operation = ?")
        params.append(operation)
    if key is not None:
        clauses.append("key = ?")
        params.append(key)
    sql = f"SELECT {_HISTORY_COLUMNS} FROM settings_history WHERE {' AND '.join(clauses)} ORDER BY id DESC"
    if limit is not None:
        sql += f" LIMIT {int(limit)}"
    return [change_from_row(row) for row in conn.execute(sql, params)]


def read_layers(conn: sqlite3.Connection) -> SettingsLayers:
    """The stored values; a row this version cannot understand is skipped with a warning."""
    problems: list[ConfigError] = []
    entries = []
    for operation, key, text in conn.execute("SELECT operation, key, value FROM settings_values"):
        try:
            value = json.loads(text)
        except ValueError:
            problems.append(ConfigError(field_name(key, operation or None), text, "valid stored JSON"))
            continue
        entries.append((operation or None, key, value))
    layers = SettingsLayers.from_entries(entries, problems)
    for problem in problems:
        _log.warning("ignoring a stored setting this version cannot use: %s", problem)
    return layers


def check_version(conn: sqlite3.Connection, path: str | Path) -> None:
    """Raise StoreError if a newer bounceback upgraded the settings tables (possibly while we run)."""
    found = schema_versions(conn).get("settings", 0)
    if found > _VERSION:
        raise StoreError(
            store_name(path),
            "read the settings",
            f"the database was written by a newer bounceback (settings schema version {found}; this "
            f"version knows up to {_VERSION}); upgrade bounceback",
        )


@dataclass(frozen=True, slots=True)
class Stamp:
    """When, by whom and why a batch of changes is written (``undoes``: the change an undo reverts)."""

    at: float
    who: str
    action: str
    undoes: int | None = None


def write_diff(
    conn: sqlite3.Connection, before: SettingsLayers, after: SettingsLayers, stamp: Stamp
) -> list[int]:
    """Write what differs between two layers, one history row per changed key; return the new row ids.

    Runs inside the caller's transaction.
    """
    old = {(op, key): encode(value) for op, key, value in before.entries()}
    new = {(op, key): encode(value) for op, key, value in after.entries()}
    ids: list[int] = []
    for op, key in sorted(old.keys() | new.keys(), key=lambda k: (k[0] or "", k[1])):
        was, now = old.get((op, key)), new.get((op, key))
        if was == now:
            continue
        if now is None:
            conn.execute("DELETE FROM settings_values WHERE operation = ? AND key = ?", (op or "", key))
        else:
            conn.execute(
                "INSERT INTO settings_values (operation, key, value, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (operation, key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (op or "", key, now, stamp.at),
            )
        cursor = conn.execute(
            "INSERT INTO settings_history (at, who, action, operation, key, old, new, undoes) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (stamp.at, stamp.who, stamp.action, op or "", key, was, now, stamp.undoes),
        )
        ids.append(int(cursor.lastrowid or 0))
    return ids
