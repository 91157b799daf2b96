"""One user setting's description, and the conversion of its values from text and plain data.

A :class:`Setting` turns text (from a command line or a file) and plain values (from JSON, TOML or code)
into one normalised, typed value, or raises ``ConfigError`` naming the key, the value and what is allowed.
The table of every setting is ``SCHEMA`` in ``_settings_schema``.

Typed values: ``int``; ``float`` (also for percentages); durations as ``float`` seconds (``None`` for
"off" where allowed); ``bool``; ``str`` for choices and text; a sorted ``tuple[int, ...]`` for lists of
exit codes.
"""

from __future__ import annotations

import difflib
import functools
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from bounceback.core._time import parse_duration
from bounceback.errors import ConfigError

__all__ = [
    "Kind",
    "MAX_SECONDS",
    "Setting",
    "UNSAFE_CHARS",
    "first_unsafe_char",
    "has_control_chars",
    "seconds_text",
]

Kind = Literal["int", "float", "percent", "duration", "bool", "choice", "text", "codes"]
"""The type of a setting's value."""

_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_OFF = frozenset({"off", "none", "null"})
# Durations are bounded so that no later arithmetic (deadlines, datetimes) can overflow.
MAX_SECONDS = 3650 * 86400.0
"""The longest duration any setting accepts (ten years)."""
_MAX_TEXT = 2000
# Tried from the largest unit down; the first exact rendering wins (see Setting.to_text).
_DURATION_UNITS = (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0), ("ms", 0.001))


UNSAFE_CHARS = (
    # Control characters (C0, DEL, C1) and lone surrogates: neither survives a file, a terminal or SQLite.
    "\x00-\x1f\x7f-\x9f\ud800-\udfff"
    # Format characters (Unicode category Cf) and the line / paragraph separators: invisible, yet they
    # reorder or hide what a terminal shows (U+202E right-to-left override turns "retry-db" into a name
    # that reads differently from what it is, the "Trojan Source" trick). Hieroglyph format controls up to
    # U+1343F are listed as of Unicode 15, so a newer Python's tables change nothing.
    "\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2\u180e\u200b-\u200f\u2028-\u202e"
    "\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd\U00013430-\U0001343f"
    "\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
"""A regular-expression character class body of the characters refused in names and text settings."""

_UNSAFE = re.compile(f"[{UNSAFE_CHARS}]")


def has_control_chars(text: str) -> bool:
    """True if ``text`` holds a control or format character or a lone surrogate (see :data:`UNSAFE_CHARS`).

    >>> has_control_chars("retry-db"), has_control_chars("db\u202etxt.exe"), has_control_chars("a\x1bb")
    (False, True, True)
    """
    return _UNSAFE.search(text) is not None


def first_unsafe_char(text: str) -> str | None:
    """The first refused character of ``text`` as ``U+202E``, for messages; None when there is none.

    >>> first_unsafe_char("db\u202etxt")
    'U+202E'
    """
    found = _UNSAFE.search(text)
    return None if found is None else f"U+{ord(found.group()):04X}"


def _number_text(number: float) -> str:
    """``5`` for whole numbers, the shortest exact ``repr`` otherwise (so the text reads back equal)."""
    value = float(number)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def seconds_text(seconds: float) -> str:
    """The shortest exact rendering of a duration: ``200ms``, ``30s``, ``5m``, ``7d``.

    >>> seconds_text(0.25), seconds_text(90.0), seconds_text(86400.0)
    ('250ms', '1.5m', '1d')
    """
    if seconds == 0:
        return "0s"
    for suffix, factor in _DURATION_UNITS:
        amount = round(seconds / factor, 6)
        if amount < 1 and suffix != "ms":
            continue
        text = f"{amount:g}{suffix}"
        if "e" not in text and parse_duration(text) == seconds:
            return text
    return f"{seconds!r}s"


@dataclass(frozen=True, slots=True)
class Setting:
    """One user setting: its ``key`` (``section.name``), ``kind``, ``default``, bounds, unit and help.

    ``nullable`` settings accept ``off`` / ``None``; for ``zero_is_off`` integers ``off`` means ``0``.
    ``per_operation`` is False for settings of the whole program (store, display, journal).

    >>> delay = Setting("retry.initial_delay", "duration", 0.2, "Wait before the first retry.", "s", 0)
    >>> delay.parse("250ms"), delay.to_text(30.0)
    (0.25, '30s')
    >>> delay.validate(-1)
    Traceback (most recent call last):
    ...
    bounceback.errors.ConfigError: retry.initial_delay: got -1; expected a duration ... from 0s up to 3650d
    """

    key: str
    kind: Kind
    default: Any
    help: str
    unit: str = ""
    minimum: float | None = None
    maximum: float | None = None
    min_exclusive: bool = False
    choices: tuple[str, ...] = ()
    nullable: bool = False
    zero_is_off: bool = False
    per_operation: bool = True
    schemes: tuple[str, ...] = ()

    @property
    def section(self) -> str:
        """The part before the dot: ``retry`` for ``retry.max_attempts``."""
        return self.key.partition(".")[0]

    @property
    def name(self) -> str:
        """The part after the dot: ``max_attempts`` for ``retry.max_attempts``."""
        return self.key.partition(".")[2]

    # -- description ---------------------------------------------------------------------------------

    def allowed(self) -> str:
        """What this setting accepts, in words (used in every refusal message)."""
        return _allowed_text(self)

    def describe(self) -> str:
        """What this setting accepts, built afresh (``allowed`` caches it)."""
        low, high = self.minimum, self.maximum
        if self.kind == "duration":
            lo = "0" if low is None else seconds_text(low)
            hi = seconds_text(high if high is not None else MAX_SECONDS)
            rel = f"greater than {lo} and" if self.min_exclusive else f"from {lo}"
            text = f"a duration (250ms, 2s, 5m, 1h or seconds) {rel} up to {hi}"
        elif self.kind in ("int", "float", "percent"):
            noun = {"int": "a whole number", "float": "a finite number", "percent": "a percentage"}[self.kind]
            top = _number_text(high if high is not None else MAX_SECONDS)
            text = f"{noun} from {_number_text(low or 0)} to {top}"
        elif self.kind == "bool":
            text = "true or false (also yes/no, on/off, 1/0)"
        elif self.kind == "choice":
            text = "one of " + ", ".join(self.choices)
        elif self.kind == "codes":
            text = "a comma-separated list of exit codes from 0 to 255 (may be empty)"
        elif self.schemes:
            text = "empty, or a URL starting with " + " or ".join(self.schemes)
        else:
            text = f"text of at most {_MAX_TEXT} characters without control characters or invisible format characters"
        if self.nullable:
            text += ", or off"
        if self.zero_is_off:
            text += " (0 or off turns it off)"
        return text

    # -- conversion ----------------------------------------------------------------------------------

    def parse(self, text: str, field: str | None = None) -> Any:
        """Turn user text (``"250ms"``, ``"yes"``, ``"126,127"``) into the normalised typed value."""
        name = field or self.key
        raw = text.strip()
        low = raw.lower()
        if self.nullable and low in _OFF:
            return None
        if self.kind in ("text", "choice"):
            return self.validate(raw, name)
        if self.kind == "bool":
            if low in _TRUE:
                return True
            if low in _FALSE:
                return False
            raise ConfigError(name, text, self.allowed())
        if self.kind == "codes":
            parts = [p for p in raw.replace(",", " ").split() if p]
            try:
                return self.validate([int(p, 10) for p in parts], name)
            except ValueError:
                raise ConfigError(name, text, self.allowed()) from None
        if self.zero_is_off and low == "off":
            return 0
        try:
            if self.kind == "duration":
                number: Any = parse_duration(raw, name)
            elif self.kind == "int":
                number = int(raw, 10)
            else:
                number = float(raw[:-1] if self.kind == "percent" and raw.endswith("%") else raw)
        except ValueError:
            # ConfigError from parse_duration is a ValueError too: restate it with this setting's bounds.
            raise ConfigError(name, text, self.allowed()) from None
        return self.validate(number, name, shown=text)

    def validate(self, value: Any, field: str | None = None, *, shown: Any = None) -> Any:
        """Check a typed or textual value and return it normalised, or raise ConfigError.

        Text is parsed with :meth:`parse`; ``timedelta`` is accepted for durations; a float with an
        integral value is accepted for whole numbers (JSON has only one number type).
        """
        name = field or self.key
        bad = ConfigError(name, value if shown is None else shown, self.allowed())
        if isinstance(value, str) and self.kind not in ("text", "choice"):
            return self.parse(value, name)
        if value is None:
            if self.nullable:
                return None
            raise bad
        kind = self.kind
        if kind == "bool":
            if isinstance(value, bool):
                return value
            raise bad
        if kind == "choice":
            if isinstance(value, str) and value.strip().lower() in self.choices:
                return value.strip().lower()
            raise self._with_suggestion(bad, value)
        if kind == "text":
            return self._check_text(value, bad)
        if kind == "codes":
            if not isinstance(value, (list, tuple)):
                raise bad
            codes = [self._whole(v, bad) for v in value]
            if any(c < 0 or c > 255 for c in codes):
                raise bad
            return tuple(sorted(set(codes)))
        if isinstance(value, bool):
            raise bad
        if kind == "duration" and isinstance(value, timedelta):
            value = value.total_seconds()
        number: float | int
        if kind == "int":
            number = self._whole(value, bad)
        elif isinstance(value, (int, float)):
            number = float(value)
        else:
            raise bad
        if not self._in_bounds(number):
            raise bad
        return number

    def to_text(self, value: Any) -> str:
        """Render a valid value as text that :meth:`parse` reads back to the same value."""
        if value is None:
            return "off"
        if self.kind == "bool":
            return "true" if value else "false"
        if self.kind == "duration":
            return seconds_text(float(value))
        if self.kind == "codes":
            return ",".join(str(c) for c in value)
        if self.kind in ("float", "percent"):
            return _number_text(value)
        return str(value)

    def to_plain(self, value: Any) -> Any:
        """The value as plain JSON data (None, bool, int, float, str or a list of int)."""
        if self.kind == "codes":
            return list(value)
        return value

    # -- helpers -------------------------------------------------------------------------------------

    def _in_bounds(self, number: float) -> bool:
        # A whole number too large for a float (400 digits typed in a form) is out of bounds, not a crash.
        if isinstance(number, int) and not -(2**63) < number < 2**63:
            return False
        if not math.isfinite(number):
            return False
        low = self.minimum if self.minimum is not None else -math.inf
        high = self.maximum if self.maximum is not None else MAX_SECONDS
        above = number > low if self.min_exclusive else number >= low
        return above and number <= high

    @staticmethod
    def _whole(value: Any, bad: ConfigError) -> int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value) and value.is_integer():
            return int(value)
        raise bad

    def _check_text(self, value: Any, bad: ConfigError) -> str:
        # Surrounding spaces never mean anything in a command or a URL, and could not survive the CLI.
        if not isinstance(value, str) or len(value) > _MAX_TEXT or has_control_chars(value):
            raise bad
        text = value.strip()
        if text and self.schemes:
            rest = text.partition("//")[2]
            if not text.lower().startswith(self.schemes) or not rest or any(c.isspace() for c in text):
                raise bad
        return text

    def _with_suggestion(self, bad: ConfigError, value: Any) -> ConfigError:
        if isinstance(value, str):
            close = difflib.get_close_matches(value.lower(), self.choices, n=1)
            if close:
                return ConfigError(bad.field, bad.value, bad.allowed, hint=f"did you mean {close[0]!r}?")
        return bad


@functools.cache
def _allowed_text(setting: Setting) -> str:
    # Every validation builds its refusal up front; the words never change, so build them once.
    return setting.describe()
