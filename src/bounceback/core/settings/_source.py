"""User settings: one schema, resolution per operation, and the source a running program reads.

Every setting is described once in :data:`SCHEMA` (see ``_settings_schema``). Values resolve as
built-in default < global value < per-operation value (``operations.<name>.<key>``); arguments given in
code win over all three (that last step is the Policy's). A :class:`SettingsSource` hands a program its
resolved values and tells it when they change; :class:`StaticSettings` is the in-memory one for plain
library use and tests, ``bounceback.stores.SqliteSettings`` the persisted one that the CLI edits.

>>> settings = StaticSettings({"retry.max_attempts": 7}, operations={"fetch": {"retry.max_attempts": 2}})
>>> settings.effective("fetch")["retry.max_attempts"], settings.effective("other")["retry.max_attempts"]
(2, 7)
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any, Protocol, runtime_checkable

from bounceback.core.settings._doc import (
    Format,
    layers_from_document,
    layers_to_document,
    parse_document,
    render_document,
)
from bounceback.core.settings._layers import (
    Resolved,
    SettingsLayers,
    Source,
    check_operation,
    cross_check,
    defaults,
    field_name,
    raise_problems,
    split_key,
)
from bounceback.core.settings._schema import SCHEMA, lookup
from bounceback.core.settings._setting import Kind, Setting

__all__ = [
    "Format",
    "Kind",
    "Resolved",
    "SCHEMA",
    "Setting",
    "SettingsLayers",
    "SettingsSource",
    "Source",
    "StaticSettings",
    "Subscribers",
    "check_operation",
    "cross_check",
    "defaults",
    "field_name",
    "layers_from_document",
    "layers_to_document",
    "lookup",
    "parse_document",
    "raise_problems",
    "render_document",
    "split_key",
]

_log = logging.getLogger("bounceback.settings")


@runtime_checkable
class SettingsSource(Protocol):
    """Where a running program gets its settings: resolved values, and news of changes.

    ``effective(operation)`` returns every key of :data:`SCHEMA` with its typed value for that operation
    (or globally for None). It must be cheap and must not fail: a source that cannot read its store keeps
    the last good values. ``subscribe(callback)`` arranges for ``callback()`` to be called (from any
    thread) after a change is seen, and returns a function that cancels the subscription.
    """

    def effective(self, operation: str | None = None) -> Mapping[str, Any]:
        """Every setting's resolved, typed value for ``operation``."""
        ...

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after every change; the returned function unsubscribes."""
        ...


class Subscribers:
    """A thread-safe list of change callbacks; a callback that raises is logged and kept.

    >>> subs = Subscribers()
    >>> seen = []
    >>> stop = subs.add(lambda: seen.append("changed"))
    >>> subs.notify(); stop(); subs.notify()
    >>> seen
    ['changed']
    """

    __slots__ = ("_callbacks", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._callbacks: tuple[Callable[[], None], ...] = ()

    def __len__(self) -> int:
        return len(self._callbacks)

    def add(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Add ``callback``; the returned function removes it (once; later calls do nothing)."""
        token = [callback]
        with self._lock:
            self._callbacks = (*self._callbacks, callback)

        def remove() -> None:
            with self._lock:
                if token:
                    items = list(self._callbacks)
                    if callback in items:
                        items.remove(callback)
                    self._callbacks = tuple(items)
                    token.clear()

        return remove

    def notify(self) -> None:
        """Call every callback (outside any lock, so a callback may read the settings again)."""
        for callback in self._callbacks:
            try:
                callback()
            except Exception:
                _log.exception("settings subscriber %r failed", callback)


class StaticSettings:
    """Settings held in memory: validated like the stored ones, changed only by this program.

    ``values`` may be flat (``{"retry.max_attempts": 3}``) or nested like a TOML file
    (``{"retry": {"max_attempts": 3}}``, with an ``operations`` table); ``operations`` maps operation
    names to their own values. Invalid values raise ConfigError (every problem is listed in its notes).

    >>> settings = StaticSettings({"retry": {"initial_delay": "250ms"}})
    >>> seen = []
    >>> stop = settings.subscribe(lambda: seen.append(settings.effective()["retry.max_attempts"]))
    >>> settings.set("retry.max_attempts", "9")
    >>> seen, settings.get("retry.initial_delay")
    ([9], Resolved(key='retry.initial_delay', value=0.25, source='global'))
    """

    def __init__(
        self,
        values: Mapping[str, Any] | None = None,
        *,
        operations: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> None:
        document: dict[str, Any] = dict(values or {})
        if operations:
            document["operations"] = {**document.get("operations", {}), **operations}
        layers, problems = layers_from_document(document)
        raise_problems(problems)
        self._lock = threading.Lock()
        self._layers = layers
        self._cache: dict[str | None, Mapping[str, Any]] = {}
        self._subscribers = Subscribers()

    @property
    def layers(self) -> SettingsLayers:
        """The values set (without defaults)."""
        return self._layers

    def effective(self, operation: str | None = None) -> Mapping[str, Any]:
        """Every key's value for ``operation``, read-only (cached until the next change)."""
        cached = self._cache.get(operation)
        if cached is None:
            cached = MappingProxyType(self._layers.effective(operation))
            self._cache[operation] = cached
        return cached

    def resolve(self, operation: str | None = None) -> dict[str, Resolved]:
        """Every key's value for ``operation`` with the layer it came from."""
        return self._layers.resolve(operation)

    def get(self, key: str, operation: str | None = None) -> Resolved:
        """One key's resolved value (``operations.<name>.<key>`` works too)."""
        op, key = split_key(key, operation)
        lookup(key)
        return self._layers.resolve(op)[key]

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback()`` after every change; the returned function unsubscribes."""
        return self._subscribers.add(callback)

    def set(self, key: str, value: Any, operation: str | None = None) -> None:
        """Validate and set one value (text or typed), globally or for ``operation``."""
        with self._lock:
            op, key = split_key(key, operation)
            layers, _ = self._layers.updated(key, value, op)
            self._replace(layers)
        self._subscribers.notify()

    def reset(self, key: str, operation: str | None = None) -> None:
        """Remove one value so the layer below (global, then default) applies again."""
        with self._lock:
            op, key = split_key(key, operation)
            lookup(key, field_name(key, op))
            layers = self._layers.without(key, op)
            raise_problems(layers.problems([(op, key)]))
            self._replace(layers)
        self._subscribers.notify()

    def _replace(self, layers: SettingsLayers) -> None:
        self._layers = layers
        self._cache = {}
