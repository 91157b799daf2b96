"""Settings documents: the nested mapping shape shared by TOML and JSON files, and their text.

A document looks like the TOML a person would write::

    [retry]
    max_attempts = 7

    [operations.fetch-user.retry]
    initial_delay = "250ms"

Values may be typed (numbers, booleans, lists) or text in the CLI's syntax (``"250ms"``, ``"off"``).
Dotted keys are accepted at any level (``{"retry.max_attempts": 7}``). Reading collects *every* problem,
so a file with one bad entry can be refused as a whole with the full list. TOML is written by hand here
(the standard library only reads it) and read with :mod:`tomllib`.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterator, Mapping
from typing import Any, Literal

from bounceback.core.settings._layers import SettingsLayers, field_name
from bounceback.core.settings._schema import SCHEMA
from bounceback.errors import ConfigError

__all__ = [
    "Format",
    "MAX_DOCUMENT_BYTES",
    "MAX_DOCUMENT_VALUES",
    "check_document_size",
    "layers_from_document",
    "layers_to_document",
    "parse_document",
    "render_document",
]

Format = Literal["toml", "json"]
"""A settings file format."""

MAX_DOCUMENT_BYTES = 2 * 1024 * 1024
"""The largest settings file read (2 MiB of UTF-8): larger ones are refused before they are parsed."""
MAX_DOCUMENT_VALUES = 20_000
"""The most values one document may set (about 10,000 operations of two values; an import of that size
takes about 2 s). Split a larger file, or set the common values globally instead of per operation."""

_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def layers_from_document(
    document: Mapping[str, Any], *, check_combinations: bool = True
) -> tuple[SettingsLayers, list[ConfigError]]:
    """Read a nested document into layers, returning every problem found (nothing is raised).

    ``check_combinations=False`` skips the cross-field rules, for a document that will be merged with
    other values before it is used.

    >>> layers, problems = layers_from_document({"retry": {"max_attempts": 3, "max_delay": "nan"}})
    >>> dict(layers.values), [p.field for p in problems]
    ({'retry.max_attempts': 3}, ['retry.max_delay'])
    """
    problems: list[ConfigError] = []
    entries: list[tuple[str | None, str, Any]] = []
    for key, value in document.items():
        if key == "operations":
            if not isinstance(value, Mapping):
                problems.append(ConfigError("operations", value, "a table of operation names"))
                continue
            for op, op_doc in value.items():
                if not isinstance(op_doc, Mapping):
                    problems.append(ConfigError(f"operations.{op}", op_doc, "a table of settings"))
                    continue
                entries.extend((op, k, v) for k, v in _walk("", op_doc))
        else:
            entries.extend((None, k, v) for k, v in _walk("", {key: value}))
    if len(entries) > MAX_DOCUMENT_VALUES:
        problems.append(
            ConfigError(
                "document",
                f"{len(entries):,} values",
                f"at most {MAX_DOCUMENT_VALUES:,} values in one document",
                hint="split it into several imports, or set values shared by many operations once, globally",
            )
        )
        return SettingsLayers(), problems
    seen: set[tuple[str | None, str]] = set()
    unique: list[tuple[str | None, str, Any]] = []
    for op, key, value in entries:
        # Both {"retry": {"max_attempts": 1}} and {"retry.max_attempts": 2} may appear in one file.
        if (op, key) in seen:
            problems.append(ConfigError(field_name(key, op), value, "each setting given once"))
            continue
        seen.add((op, key))
        unique.append((op, key, value))
    layers = SettingsLayers.from_entries(unique, problems)
    if check_combinations and not problems:
        problems.extend(layers.problems())
    return layers, problems


def _walk(prefix: str, mapping: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    for key, value in mapping.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            yield from _walk(full, value)
        else:
            yield full, value


def layers_to_document(layers: SettingsLayers) -> dict[str, Any]:
    """The nested plain-data document of ``layers`` (JSON-ready; ``None`` stays ``None``).

    >>> layers_to_document(SettingsLayers.build({"retry.max_attempts": 7}, {"a": {"retry.deadline": "off"}}))
    {'retry': {'max_attempts': 7}, 'operations': {'a': {'retry': {'deadline': None}}}}
    """
    document: dict[str, Any] = {}
    for op, key, value in layers.entries():
        setting = SCHEMA[key]
        target = document if op is None else document.setdefault("operations", {}).setdefault(op, {})
        target.setdefault(setting.section, {})[setting.name] = setting.to_plain(value)
    return document


def render_document(layers: SettingsLayers, fmt: Format = "toml", header: str = "") -> str:
    """The text of a settings file in ``fmt``; ``header`` becomes comment lines in TOML.

    >>> print(render_document(SettingsLayers.build({"retry.initial_delay": "250ms"})), end="")
    [retry]
    initial_delay = 0.25  # 250ms
    """
    if fmt == "json":
        return json.dumps(layers_to_document(layers), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    lines = [f"# {line}".rstrip() for line in header.splitlines()]
    table: tuple[str | None, str] | None = None
    for op, key, value in layers.entries():
        setting = SCHEMA[key]
        if table != (op, setting.section):
            table = (op, setting.section)
            if lines:
                lines.append("")
            path = [setting.section] if op is None else ["operations", op, setting.section]
            lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
        line = f"{_toml_key(setting.name)} = {_toml_value(setting.to_plain(value))}"
        if setting.kind == "duration" and value is not None:
            line += f"  # {setting.to_text(value)}"
        lines.append(line)
    return "\n".join(lines) + "\n" if lines else ""


def check_document_size(text: str | bytes, source: str = "<text>") -> None:
    """Refuse settings text longer than :data:`MAX_DOCUMENT_BYTES` (in UTF-8) with a clear ConfigError.

    >>> check_document_size("x" * (MAX_DOCUMENT_BYTES + 1), "team.toml")
    Traceback (most recent call last):
    ...
    bounceback.errors.ConfigError: team.toml: got 'more than 2 MiB'; expected a settings file of at most 2 MiB ...
    """
    size = len(text) if isinstance(text, bytes) else len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        raise ConfigError(
            source,
            f"more than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB",
            f"a settings file of at most {MAX_DOCUMENT_BYTES // (1024 * 1024)} MiB and "
            f"{MAX_DOCUMENT_VALUES:,} values",
            hint="split it into several imports, or set values shared by many operations once, globally; "
            "nothing was imported",
        )


def parse_document(text: str, fmt: Format, source: str = "<text>") -> dict[str, Any]:
    """Parse settings text in ``fmt``; a syntax error is a ConfigError naming ``source`` and the line.

    Text past :data:`MAX_DOCUMENT_BYTES` is refused before it is parsed.

    >>> parse_document('[retry]\\nmax_attempts = 3\\n', "toml")
    {'retry': {'max_attempts': 3}}
    """
    if len(text) * 4 > MAX_DOCUMENT_BYTES:  # cheap first: only long text is measured in UTF-8
        check_document_size(text, source)
    if fmt == "toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(source, _excerpt(text), "a valid TOML document", hint=str(exc)) from None
    if fmt == "json":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(source, _excerpt(text), "a valid JSON document", hint=str(exc)) from None
        if not isinstance(document, dict):
            raise ConfigError(source, _excerpt(text), 'a JSON object such as {"retry": {"max_attempts": 3}}')
        return document
    raise ConfigError("format", fmt, "toml or json")


def _excerpt(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _toml_key(key: str) -> str:
    return key if _BARE_KEY.match(key) else _toml_string(key)


def _toml_string(text: str) -> str:
    out = []
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 32 or ord(ch) == 127:
            out.append(f"\\u{ord(ch):04X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if value is None:
        return '"off"'  # TOML has no null; "off" reads back as None for the settings that allow it
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return _toml_string(value)
    return "[" + ", ".join(_toml_value(v) for v in value) + "]"
