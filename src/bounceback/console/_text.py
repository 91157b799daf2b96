"""Text helpers shared by the terminal displays: untrusted text made safe, durations and times made short.

Error messages come from remote services and other programs: they may hold newlines, terminal escape
sequences or rich markup. :func:`one_line` makes them a single printable line; callers put the result in
a ``rich.text.Text`` (never in a markup string), so ``[bold]`` stays literal text too.
"""

from __future__ import annotations

import re
import time

from bounceback.core.settings._setting import UNSAFE_CHARS

__all__ = ["badge_style", "clock_time", "countdown", "describe_reason", "one_line", "plural", "seconds"]

# C0 controls (tab and newline included: they are collapsed first), DEL, C1 controls, and the invisible
# format characters (bidi overrides ...) that would make a terminal show something other than the text.
_CONTROL = re.compile(f"[{UNSAFE_CHARS}]")
_SPACE = re.compile(r"\s+")

_BADGE_STYLES = {
    "closed": "green",
    "open": "bold red",
    "half_open": "yellow",
    "forced_open": "bold white on red",
    "disabled": "dim",
}


def one_line(text: str, limit: int = 300) -> str:
    """``text`` as one printable line: whitespace collapsed, control characters shown as ``\\xNN``.

    >>> one_line("refused\\n  by peer")
    'refused by peer'
    >>> one_line("\\x1b[2Jboom")
    '\\\\x1b[2Jboom'
    >>> one_line("report\\u202etxt.exe")
    'report\\\\u202etxt.exe'
    >>> one_line("x" * 10, limit=5)
    'xxxx…'
    """
    flat = _SPACE.sub(" ", text).strip()
    safe = _CONTROL.sub(_escape, flat)
    return safe if len(safe) <= limit else safe[: limit - 1] + "…"


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def seconds(value: float) -> str:
    """A duration for people: ``0.25 s``, ``5.4 s``, ``42.2 s``, ``3 min 20 s``, ``2 h 5 min``.

    >>> [seconds(v) for v in (0.25, 0.01, 5.44, 42.2, 200, 7500)]
    ['0.25 s', '0.01 s', '5.4 s', '42.2 s', '3 min 20 s', '2 h 5 min']
    """
    value = max(0.0, value)
    if value < 1:
        return f"{value:.2g} s"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        minutes, rest = divmod(round(value), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(round(value) // 60, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def countdown(value: float) -> str:
    """A duration that moves every tenth of a second: one decimal under a minute, so the width is steady.

    >>> [countdown(v) for v in (0.096, 1.0, 42.25, 200)]
    ['0.1 s', '1.0 s', '42.2 s', '3 min 20 s']
    """
    value = max(0.0, value)
    return f"{value:.1f} s" if value < 60 else seconds(value)


def clock_time(wall: float, now: float | None = None) -> str:
    """The local time of ``wall``: ``HH:MM:SS``; with the date (``YYYY-MM-DD HH:MM:SS``) when ``now`` is
    given and falls on another day, so "since 16:39" never hides "yesterday".

    >>> len(clock_time(0.0)), clock_time(0.0, now=1.0) == clock_time(0.0)
    (8, True)
    >>> len(clock_time(0.0, now=10 * 86400.0))
    19
    """
    local = time.localtime(wall)
    if now is not None and time.localtime(now)[:3] != local[:3]:
        return time.strftime("%Y-%m-%d %H:%M:%S", local)
    return time.strftime("%H:%M:%S", local)


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, the noun in the plural unless the count is one.

    >>> plural(1, "attempt"), plural(3, "attempt"), plural(0, "probe"), plural(2, "retry", "retries")
    ('1 attempt', '3 attempts', '0 probes', '2 retries')
    """
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


def badge_style(state: str) -> str:
    """The rich style of a breaker state's badge.

    >>> badge_style("open")
    'bold red'
    """
    return _BADGE_STYLES.get(state, "")


_REASONS = {
    "attempts": "no attempts left",
    "deadline": "the deadline would pass before the next try",
    "permanent": "a permanent error",
    "cancelled": "cancelled",
    "budget": "the retry budget is spent",
    "breaker": "the circuit stays open past the deadline",
    "retry-after": "the server asked to wait past the deadline",
    "result": "the result was rejected",
}


def describe_reason(reason: str) -> str:
    """Why a recovery gave up, in words.

    >>> describe_reason("attempts")
    'no attempts left'
    """
    return _REASONS.get(reason, reason)
