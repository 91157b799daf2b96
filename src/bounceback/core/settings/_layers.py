"""Layers of stored settings and their resolution: default < global < per operation.

A :class:`SettingsLayers` holds only what a person has set: global values and per-operation values
(``operations.<name>.<key>``). Defaults live in the schema. Resolving an operation overlays the three and
says, for every key, which layer the value came from. Cross-field rules (a max delay below the initial
delay cannot work) are checked on every resolved layer, because a global change can break an
operation's combination as well.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal

from bounceback.core.settings._schema import SCHEMA, lookup
from bounceback.core.settings._setting import first_unsafe_char, has_control_chars
from bounceback.errors import ConfigError

__all__ = [
    "DEFAULTS",
    "Resolved",
    "SettingsLayers",
    "Source",
    "check_operation",
    "cross_check",
    "defaults",
    "field_name",
    "raise_problems",
    "split_key",
]

Source = Literal["default", "global", "operation"]
"""Where a resolved value came from."""

_MAX_OPERATION = 200
_PREFIX = "operations."

# (lower key, upper key, why): the lower value must not exceed the upper one.
_ORDERED = (
    ("retry.initial_delay", "retry.max_delay", "retry.max_delay caps every wait"),
    ("breaker.open_seconds", "breaker.open_seconds_max", "breaker.open_seconds_max caps the open time"),
)


# (value, default cap): when only the value is set, above the cap's default, the cap follows it up.
_FOLLOWS = (("breaker.open_seconds", "breaker.open_seconds_max"),)
_SCHEMA_ORDER = {key: i for i, key in enumerate(SCHEMA)}


def defaults() -> dict[str, Any]:
    """Every key with its built-in default (a new dict: the caller may change it).

    >>> defaults()["retry.max_attempts"]
    5
    """
    return dict(DEFAULTS)


DEFAULTS: Mapping[str, Any] = MappingProxyType({key: s.default for key, s in SCHEMA.items()})
"""Every key with its built-in default, read-only (what policies built without settings read)."""


def check_operation(name: Any) -> str:
    """Return ``name`` if it can name an operation in the settings, else raise ConfigError.

    >>> check_operation("fetch-user")
    'fetch-user'
    """
    if (
        not isinstance(name, str)
        or not name
        or name != name.strip()
        or len(name) > _MAX_OPERATION
        or has_control_chars(name)
    ):
        found = first_unsafe_char(name) if isinstance(name, str) else None
        raise ConfigError(
            "operation",
            name,
            f"a name of 1 to {_MAX_OPERATION} characters without control characters, invisible format characters or surrounding "
            "spaces",
            hint=None
            if found is None
            else f"it holds {found}, an invisible character that changes how the name is shown; type the "
            "name again without it",
        )
    return name


def field_name(key: str, operation: str | None) -> str:
    """The full name of a key as shown in messages: ``operations.fetch.retry.max_attempts`` for an operation.

    >>> field_name("retry.max_attempts", "fetch")
    'operations.fetch.retry.max_attempts'
    """
    return key if operation is None else f"{_PREFIX}{operation}.{key}"


def split_key(full: str, operation: str | None = None) -> tuple[str | None, str]:
    """Split ``operations.<name>.<section>.<key>`` into ``(name, "section.key")``; others keep ``operation``.

    The operation name may itself contain dots: the key is always the last two parts.

    >>> split_key("operations.api.v2.retry.max_attempts")
    ('api.v2', 'retry.max_attempts')
    >>> split_key("retry.max_attempts", "fetch")
    ('fetch', 'retry.max_attempts')
    """
    if not full.startswith(_PREFIX):
        return operation, full
    rest = full[len(_PREFIX) :]
    parts = rest.rsplit(".", 2)
    if len(parts) != 3 or not parts[0]:
        raise ConfigError(
            "key", full, "operations.<name>.<section>.<key>, e.g. operations.fetch.retry.max_attempts"
        )
    name = check_operation(parts[0])
    if operation is not None and operation != name:
        raise ConfigError("operation", operation, f"the operation named in the key ({name!r}) or none")
    return name, f"{parts[1]}.{parts[2]}"


@dataclass(frozen=True, slots=True)
class Resolved:
    """A resolved setting: its ``value`` and the layer it came from (``default``/``global``/``operation``)."""

    key: str
    value: Any
    source: Source

    @property
    def text(self) -> str:
        """The value as text that ``bounceback settings set`` accepts."""
        return SCHEMA[self.key].to_text(self.value)


@dataclass(frozen=True, slots=True)
class SettingsLayers:
    """What a person has set: ``values`` (global) and ``operations`` (name -> values), both by key.

    Instances are treated as immutable: every change returns a new one. Values are already validated
    and normalised (see :meth:`build`).

    >>> layers = SettingsLayers.build({"retry.max_attempts": "7"}, {"fetch": {"retry.max_attempts": 2}})
    >>> layers.effective("fetch")["retry.max_attempts"], layers.effective("other")["retry.max_attempts"]
    (2, 7)
    >>> layers.resolve("other")["retry.max_attempts"].source
    'global'
    """

    values: Mapping[str, Any] = field(default_factory=dict)
    operations: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        values: Mapping[str, Any] | None = None,
        operations: Mapping[str, Mapping[str, Any]] | None = None,
    ) -> SettingsLayers:
        """Validate and normalise every value (text or typed) and the combinations; raise the first problem.

        Every further problem is attached to the raised ConfigError as a note.
        """
        problems: list[ConfigError] = []
        entries: list[tuple[str | None, str, Any]] = [(None, k, v) for k, v in (values or {}).items()]
        for op, op_values in (operations or {}).items():
            entries.extend((op, k, v) for k, v in op_values.items())
        layers = cls.from_entries(entries, problems)
        raise_problems(problems or layers.problems())
        return layers

    @classmethod
    def from_entries(
        cls, entries: Iterable[tuple[str | None, str, Any]], problems: list[ConfigError]
    ) -> SettingsLayers:
        """Build layers from ``(operation, key, value)`` entries, appending every bad entry to ``problems``.

        Cross-field rules are not checked here (see :meth:`problems`).
        """
        values: dict[str, Any] = {}
        operations: dict[str, dict[str, Any]] = {}
        for operation, raw_key, raw in entries:
            try:
                op, key = split_key(raw_key, operation)
                if op is not None:
                    check_operation(op)
                name = field_name(key, op)
                setting = lookup(key)
                if op is not None and not setting.per_operation:
                    raise ConfigError(
                        name, raw, "a global setting", hint=f"{key} applies to the whole program; drop --op"
                    )
                value = setting.validate(raw, name)
            except ConfigError as exc:
                problems.append(exc)
                continue
            (values if op is None else operations.setdefault(op, {}))[key] = value
        return cls(values, operations)

    def effective(self, operation: str | None = None) -> dict[str, Any]:
        """Every key's value for ``operation`` (or globally when None)."""
        return {key: r.value for key, r in self.resolve(operation).items()}

    def resolve(self, operation: str | None = None) -> dict[str, Resolved]:
        """Every key's value for ``operation`` with the layer it came from.

        A default that caps another value follows it up when only the other was set: ``breaker.open_seconds
        60`` alone makes the open time 60 s with no growth, rather than a refusal for being above the
        15 s default cap.

        >>> SettingsLayers({"breaker.open_seconds": 60.0}).effective()["breaker.open_seconds_max"]
        60.0
        """
        own = self.operations.get(operation, {}) if operation is not None else {}
        out: dict[str, Resolved] = {}
        for key, setting in SCHEMA.items():
            if key in own:
                out[key] = Resolved(key, own[key], "operation")
            elif key in self.values:
                out[key] = Resolved(key, self.values[key], "global")
            else:
                out[key] = Resolved(key, setting.default, "default")
        for low_key, high_key in _FOLLOWS:
            low, high = out[low_key], out[high_key]
            if high.source == "default" and low.value > high.value:
                out[high_key] = Resolved(high_key, low.value, "default")
        return out

    def stored(self, key: str, operation: str | None = None) -> tuple[bool, Any]:
        """``(True, value)`` when ``key`` is set in that layer, else ``(False, None)``."""
        layer = self.values if operation is None else self.operations.get(operation, {})
        if key in layer:
            return True, layer[key]
        return False, None

    def with_value(self, key: str, value: Any, operation: str | None = None) -> SettingsLayers:
        """A copy with ``key`` set to ``value`` (already normalised) in one layer."""
        if operation is None:
            return SettingsLayers({**self.values, key: value}, self.operations)
        ops = dict(self.operations)
        ops[operation] = {**ops.get(operation, {}), key: value}
        return SettingsLayers(self.values, ops)

    def with_values(self, other: SettingsLayers) -> SettingsLayers:
        """A copy with every value of ``other`` set on top (one step per value, not per value and layer).

        >>> a = SettingsLayers.build({"retry.max_attempts": 3}, {"x": {"retry.max_attempts": 2}})
        >>> b = a.with_values(SettingsLayers.build(None, {"x": {"retry.deadline": "1m"}}))
        >>> dict(b.operations["x"])
        {'retry.max_attempts': 2, 'retry.deadline': 60.0}
        """
        values = {**self.values, **other.values}
        ops = dict(self.operations)
        for op, layer in other.operations.items():
            ops[op] = {**ops[op], **layer} if op in ops else dict(layer)
        return SettingsLayers(values, ops)

    def updated(self, key: str, value: Any, operation: str | None = None) -> tuple[SettingsLayers, Any]:
        """Validate one value (text or typed) and return a copy with it set, and the normalised value.

        Raises ConfigError if the value is invalid or the resulting combination cannot work.
        """
        problems: list[ConfigError] = []
        single = SettingsLayers.from_entries([(operation, key, value)], problems)
        raise_problems(problems)
        ((op, name, normal),) = single.entries()
        layers = self.with_value(name, normal, op)
        raise_problems(layers.problems([(op, name)]))
        return layers, normal

    def without(self, key: str, operation: str | None = None) -> SettingsLayers:
        """A copy with ``key`` removed from one layer (so it falls back to the layer below)."""
        if operation is None:
            return SettingsLayers({k: v for k, v in self.values.items() if k != key}, self.operations)
        ops = dict(self.operations)
        rest = {k: v for k, v in ops.get(operation, {}).items() if k != key}
        if rest:
            ops[operation] = rest
        else:
            ops.pop(operation, None)
        return SettingsLayers(self.values, ops)

    def entries(self) -> Iterator[tuple[str | None, str, Any]]:
        """Every stored value as ``(operation, key, value)``, global ones first, in schema order."""
        order = _SCHEMA_ORDER
        for key in sorted(self.values, key=order.__getitem__):
            yield None, key, self.values[key]
        for op in sorted(self.operations):
            layer = self.operations[op]
            for key in sorted(layer, key=order.__getitem__):
                yield op, key, layer[key]

    def problems(self, changed: Iterable[tuple[str | None, str]] = ()) -> list[ConfigError]:
        """Every combination that cannot work, globally and for each operation with its own values.

        ``changed`` names the ``(operation, key)`` entries being changed, so the refusal names the key a
        person just touched rather than its partner.
        """
        # Group the touched keys by layer once: a loop over the operations that scanned every touched entry
        # made an import of N operations take N^2 steps.
        global_keys: set[str] = set()
        by_op: dict[str, set[str]] = {}
        for op, key in changed:
            if op is None:
                global_keys.add(key)
            else:
                by_op.setdefault(op, set()).add(key)
        found = cross_check(self.effective(None), None, global_keys)
        base = defaults()
        base.update(self.values)
        for op in sorted(self.operations):
            keys = global_keys | by_op[op] if op in by_op else global_keys
            own = self.operations[op]
            values = {**base, **own}
            for low_key, high_key in _FOLLOWS:
                # As resolve() does: a cap left at its default follows the value it caps.
                if high_key not in own and high_key not in self.values and values[low_key] > values[high_key]:
                    values[high_key] = values[low_key]
            found.extend(cross_check(values, op, keys))
        return found


def raise_problems(problems: list[ConfigError]) -> None:
    """Raise the first problem with every other one attached as a note; do nothing when there are none."""
    if problems:
        first = problems[0]
        for other in problems[1:]:
            first.add_note(str(other))
        raise first


def cross_check(
    values: Mapping[str, Any], operation: str | None = None, changed: Iterable[str] = ()
) -> list[ConfigError]:
    """The cross-field problems of one resolved set of values (empty when the combination can work).

    >>> [str(e) for e in cross_check({**defaults(), "retry.max_delay": 0.1}, changed=["retry.max_delay"])]
    ["retry.max_delay: got '100ms'; expected a value >= retry.initial_delay (200ms) (retry.max_delay caps every wait)"]
    """
    touched = set(changed)
    where = "" if operation is None else f" for operation {operation!r}"
    found: list[ConfigError] = []
    for low_key, high_key, why in _ORDERED:
        low, high = values[low_key], values[high_key]
        if low <= high:
            continue
        if low_key in touched and high_key not in touched:
            found.append(
                ConfigError(
                    field_name(low_key, operation),
                    SCHEMA[low_key].to_text(low),
                    f"a value <= {high_key} ({SCHEMA[high_key].to_text(high)})",
                    hint=why + where,
                )
            )
        else:
            found.append(
                ConfigError(
                    field_name(high_key, operation),
                    SCHEMA[high_key].to_text(high),
                    f"a value >= {low_key} ({SCHEMA[low_key].to_text(low)})",
                    hint=why + where,
                )
            )
    if operation is None and values["store.backend"] == "redis" and not values["store.redis_url"]:
        # Accepted alone, this would break every program that builds a breaker until someone resets it.
        key = "store.redis_url" if "store.redis_url" in touched and "store.backend" not in touched else None
        found.append(
            ConfigError(
                key or "store.backend",
                SCHEMA[key].to_text(values[key]) if key else "redis",
                "a Redis URL such as redis://127.0.0.1:6379/0"
                if key
                else "'sqlite' or 'memory' until store.redis_url is set",
                hint="store.backend is redis, which needs this URL; set store.backend to sqlite first"
                if key
                else "the redis backend needs store.redis_url: set it first "
                "(bounceback settings set store.redis_url redis://HOST:6379/0), then store.backend redis",
            )
        )
    transient, permanent = values["run.transient_codes"], values["run.permanent_codes"]
    both = sorted(set(transient) & set(permanent))
    if both:
        key, other = "run.permanent_codes", "run.transient_codes"
        if key not in touched and other in touched:
            key, other = other, key
        found.append(
            ConfigError(
                field_name(key, operation),
                SCHEMA[key].to_text(values[key]),
                f"exit codes not also listed in {other} ({SCHEMA[other].to_text(values[other])})",
                hint="an exit code cannot be both transient and permanent; "
                f"{', '.join(map(str, both))} is in both{where}",
            )
        )
    return found
