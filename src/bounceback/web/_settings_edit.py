"""Saving the settings form: validate every changed field first, store them only if all are good.

A refused save stores nothing and returns a message per field. The checks are the schema's own
(``Setting.parse`` for the value, ``SettingsLayers.problems`` for combinations such as
``retry.max_delay`` >= ``retry.initial_delay``), so the page refuses exactly what the CLI refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from bounceback.core.settings._source import SCHEMA, SettingsLayers, check_operation, field_name, split_key
from bounceback.errors import ConfigError
from bounceback.stores import Change, SqliteSettings
from bounceback.web.views._settings import READ_ONLY_KEYS

__all__ = ["EditResult", "apply_form", "changed_fields", "message_of"]


@dataclass(frozen=True, slots=True)
class EditResult:
    """What a save did: the changes stored, or the refusals (key -> message) and nothing stored.

    >>> EditResult(errors={"retry.max_attempts": "no"}).ok
    False
    """

    changes: tuple[Change, ...] = ()
    errors: Mapping[str, str] = field(default_factory=dict)
    submitted: Mapping[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when nothing was refused."""
        return not self.errors


def message_of(exc: ConfigError) -> str:
    """The message shown next to a field: what was wrong and what is allowed (and the hint)."""
    text = f"got {exc.value!r}; expected {exc.allowed}" if exc.allowed else str(exc)
    hint = getattr(exc, "hint", None)
    return f"{text} ({hint})" if hint else text


def changed_fields(form: Mapping[str, str], operation: str | None) -> dict[str, str]:
    """``{key: new text}`` for every field of the scope whose text differs from the one shown.

    >>> changed_fields({"v:retry.max_attempts": " 7 ", "o:retry.max_attempts": "5",
    ...                 "v:retry.jitter": "full", "o:retry.jitter": "full"}, None)
    {'retry.max_attempts': '7'}
    """
    out: dict[str, str] = {}
    for key, setting in SCHEMA.items():
        if operation is not None and not setting.per_operation:
            continue
        new = form.get(f"v:{key}")
        if new is None:
            continue
        if new.strip() != (form.get(f"o:{key}") or "").strip():
            out[key] = new.strip()
    return out


def _key_of(exc: ConfigError, fallback: str) -> str:
    try:
        key = split_key(str(exc.field))[1]
    except ConfigError:
        return fallback
    return key if key in SCHEMA else fallback


def apply_form(settings: SqliteSettings, operation: str | None, form: Mapping[str, str]) -> EditResult:
    """Store the changed fields of a submitted settings form, all of them or none.

    Raises ConfigError for a bad operation name (the whole request is wrong, not one field).
    """
    if operation is not None:
        check_operation(operation)
    wanted = changed_fields(form, operation)
    errors: dict[str, str] = {}
    for key in wanted:
        if key in READ_ONLY_KEYS:
            errors[key] = "cannot be changed from the dashboard; use `bounceback settings set " + key + "`"
    layers: SettingsLayers = settings.layers()
    values: dict[str, Any] = {}
    for key, text in wanted.items():
        if key in errors:
            continue
        try:
            values[key] = SCHEMA[key].parse(text, field_name(key, operation))
        except ConfigError as exc:
            errors[key] = message_of(exc)
    if not errors:
        updated = layers
        for key, value in values.items():
            updated = updated.with_value(key, value, operation)
        for problem in updated.problems([(operation, k) for k in values]):
            errors.setdefault(_key_of(problem, next(iter(values))), message_of(problem))
    if errors:
        return EditResult(errors=errors, submitted=wanted)
    stored: list[Change] = []
    try:
        for key, value in values.items():
            change = settings.set(key, value, operation)
            if change is not None:
                stored.append(change)
    except ConfigError as exc:
        # Another writer changed a partner value between our check and this write.
        key = _key_of(exc, next(iter(values)))
        return EditResult(tuple(stored), {key: message_of(exc)}, wanted)
    return EditResult(tuple(stored))
