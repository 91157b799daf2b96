"""User settings: the one schema, validated values, layers (defaults, file, store, overrides) and the generated documentation."""

from __future__ import annotations

from bounceback.core.settings._doc import (
    MAX_DOCUMENT_BYTES,
    MAX_DOCUMENT_VALUES,
    Format,
    check_document_size,
    layers_from_document,
    layers_to_document,
    parse_document,
    render_document,
)
from bounceback.core.settings._layers import (
    DEFAULTS,
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
from bounceback.core.settings._setting import (
    MAX_SECONDS,
    UNSAFE_CHARS,
    Kind,
    Setting,
    first_unsafe_char,
    has_control_chars,
    seconds_text,
)
from bounceback.core.settings._source import SettingsSource, StaticSettings, Subscribers

__all__ = [
    "DEFAULTS",
    "Format",
    "Kind",
    "MAX_DOCUMENT_BYTES",
    "MAX_DOCUMENT_VALUES",
    "MAX_SECONDS",
    "Resolved",
    "SCHEMA",
    "Setting",
    "SettingsLayers",
    "SettingsSource",
    "Source",
    "StaticSettings",
    "Subscribers",
    "UNSAFE_CHARS",
    "check_document_size",
    "check_operation",
    "cross_check",
    "defaults",
    "field_name",
    "first_unsafe_char",
    "has_control_chars",
    "layers_from_document",
    "layers_to_document",
    "lookup",
    "parse_document",
    "raise_problems",
    "render_document",
    "seconds_text",
    "split_key",
]
