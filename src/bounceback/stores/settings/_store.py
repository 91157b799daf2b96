"""Settings persisted in the home SQLite database: explicit reads, and writes with a history.

:class:`SqliteSettings` reads like its base ``WatchedSettings`` (from memory, live, never failing). Its
explicit reads (``layers``, ``get``, ``history``, ``export``) raise StoreError, for the CLI and the
dashboard. Each write (``set``, ``reset``, ``undo``, ``import_document``) is one ``BEGIN IMMEDIATE``
transaction that re-reads the stored values first, so concurrent writers lose nothing, a refused change
writes nothing, and every change lands in the history.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable, Mapping
from typing import Any

from bounceback.core.retry._budget import BudgetLedger, LocalLedger
from bounceback.core.settings._source import (
    Format,
    Resolved,
    SettingsLayers,
    check_operation,
    field_name,
    layers_from_document,
    lookup,
    raise_problems,
    render_document,
    split_key,
)
from bounceback.errors import ConfigError
from bounceback.stores._home import (
    transaction,
    translate_errors,
)
from bounceback.stores._shared import budget_ledger_from_settings
from bounceback.stores._shared_limits import SharedLimits, shared_limits_from_settings
from bounceback.stores.settings._rows import (
    Change,
    Stamp,
    check_version,
    encode,
    fetch_changes,
    read_layers,
    write_diff,
)
from bounceback.stores.settings._watch import WatchedSettings

__all__ = ["COMMAND_KEYS", "SqliteSettings", "new_commands"]


COMMAND_KEYS = ("notify.command",)
"""Settings whose value is a program bounceback runs: an import may set them only with consent."""


def new_commands(stored: SettingsLayers, incoming: SettingsLayers) -> list[tuple[str, str]]:
    """The non-empty commands of ``incoming`` that differ from ``stored``, as (field, command)."""
    found: list[tuple[str, str]] = []
    for key in COMMAND_KEYS:
        layers: list[tuple[str | None, Mapping[str, Any]]] = [(None, incoming.values)]
        layers.extend(sorted(incoming.operations.items()))
        for op, values in layers:
            command = values.get(key)
            if command and stored.stored(key, op) != (True, command):
                found.append((field_name(key, op), str(command)))
    return found


_log = logging.getLogger("bounceback.settings")


class SqliteSettings(WatchedSettings):
    """User settings in the home database (``path``, default ``<home>/bounceback.db``).

    >>> import tempfile, pathlib
    >>> settings = SqliteSettings(pathlib.Path(tempfile.mkdtemp()) / "bounceback.db")
    >>> change = settings.set("retry.max_attempts", "7")
    >>> change.id, change.field, change.text("old"), change.text("new")
    (1, 'retry.max_attempts', '(not set)', '7')
    >>> settings.effective("any-operation")["retry.max_attempts"]
    7
    >>> settings.close()

    Settings set through one object reach its own subscribers at once and other processes' within a
    second (see ``WatchedSettings``).
    """

    def budget_ledger(self) -> BudgetLedger:
        """Where the retry budgets of policies built on these settings are counted: per ``store.backend``,
        this home database (every process of the machine shares one pool per operation), Redis (a fleet),
        or this process alone (``memory``). Made once per settings object; a bad backend counts locally."""
        with self._lock:
            ledger: BudgetLedger | None = self._budget_ledger
            if ledger is None:
                try:
                    ledger = budget_ledger_from_settings(self, path=self.path)
                except ConfigError:
                    _log.warning("store settings are invalid; retry budgets count in this process only")
                    ledger = LocalLedger()
                self._budget_ledger = ledger
            return ledger

    def shared_limits(self) -> SharedLimits | None:
        """Where limits with ``concurrency.shared`` / ``rate_limit.shared`` on are kept, per ``store.backend``:
        this home database, Redis, or this process (``memory``). Made once per settings object; store
        settings that cannot be used leave the limits local (None), with a warning."""
        with self._lock:
            found: SharedLimits | None = getattr(self, "_shared_limits", None)
            if found is None:
                try:
                    found = shared_limits_from_settings(self.effective(None), path=self.path)
                except ConfigError:
                    _log.warning("store settings are invalid; shared limits hold in this process only")
                    return None
                self._shared_limits = found
            return found

    def close(self) -> None:
        """Stop the watcher and close the connections (the shared limits' too: they reopen if used)."""
        super().close()
        shared = getattr(self, "_shared_limits", None)
        if shared is not None:
            shared.close()

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

    def commands_in(self, document: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The commands (``notify.command``) importing ``document`` would set or change, as (field, command).

        A file from elsewhere that sets one chooses a program this machine runs: show these to a person
        before :meth:`import_document` with ``allow_commands=True``.
        """
        incoming, _problems = layers_from_document(document, check_combinations=False)
        return new_commands(self.layers(), incoming)

    def import_document(
        self,
        document: Mapping[str, Any],
        *,
        replace: bool = False,
        source: str = "<document>",
        allow_commands: bool = False,
    ) -> list[Change]:
        """Store every value of a settings document, or none: every problem is listed in the error.

        With ``replace``, stored values the document does not mention are reset. A document that would set
        or change a command bounceback runs (``notify.command``) is refused unless ``allow_commands``: see
        :meth:`commands_in`. Documents are limited in size (see ``MAX_DOCUMENT_VALUES``).
        """
        incoming, problems = layers_from_document(document, check_combinations=False)
        touched = [(op, key) for op, key, _ in incoming.entries()]

        def change(_conn: sqlite3.Connection, layers: SettingsLayers) -> SettingsLayers:
            merged = (SettingsLayers() if replace else layers).with_values(incoming)
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
            commands = [] if allow_commands else new_commands(layers, incoming)
            if commands:
                field, command = commands[0]
                error = ConfigError(
                    field,
                    command,
                    "an imported file that chooses no command to run",
                    hint=f"{source} sets {len(commands)} command(s) that bounceback runs when a person is "
                    "needed; read them, then import with allow_commands=True (bounceback settings import "
                    "--allow-commands); nothing was imported",
                )
                for other, text in commands[1:]:
                    error.add_note(f"{other} = {text!r}")
                raise error
            return merged

        return self._write(change, "import", f"import settings from {source}")

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
            self._install(after)
            if changes:
                self._last_change = max(self._last_change, changes[0].id)
        mine = set(new_ids)
        own = [c for c in changes if c.id in mine]
        if changes:
            self._announce(changes)
        return sorted(own, key=lambda c: c.id)
