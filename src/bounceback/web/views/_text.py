"""Untrusted text made safe to show: decoded, stripped of control characters, secrets redacted, truncated,
then escaped. Plus the small formatters (durations, times, countdowns) every view shares.

Error messages come from remote services and from other programs: they may hold HTML, script, terminal
escapes, megabytes of binary, or a URL with a password. Every piece of such text passes :func:`esc` (or
:func:`clean` then ``html.escape``) before it reaches a page.
"""

from __future__ import annotations

import html
import re
import time
from typing import Any

from bounceback.core._redact import redact

__all__ = [
    "MAX_TEXT",
    "clean",
    "esc",
    "fmt_clock",
    "fmt_seconds",
    "plural",
    "redact_secrets",
    "singular_one",
]

MAX_TEXT = 500
"""The most characters of one untrusted text a page shows (the rest is counted, not shown)."""

# C0 and C1 controls except tab and newline, DEL, and lone surrogates: terminal escapes and binary junk;
# and the bidi controls, which reorder what a person reads ("\u202egnp.exe" shows as "exe.png").
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def redact_secrets(text: str) -> str:
    """``text`` with credentials in URLs, secret query parameters and ``password=...`` pairs masked.

    >>> redact_secrets("GET https://ann:hunter2@api.example/v1?token=abc&page=2 failed")
    'GET https://***@api.example/v1?token=***&page=2 failed'
    >>> redact_secrets("Authorization: Bearer abc.def")
    'Authorization: Bearer ***'
    """
    # The same rules as everywhere else in bounceback: one place decides what counts as a secret.
    return redact(text)


def clean(value: Any, limit: int = MAX_TEXT) -> str:
    """Untrusted text (or bytes) as a short, printable, redacted string; not yet HTML-escaped.

    Bytes are decoded as UTF-8 with replacement; control characters become ``\ufffd``; text longer than
    ``limit`` is cut and says how much was left out. The cut is made before redaction would matter:
    redaction runs on a slightly longer prefix, so a secret straddling the cut is never half-shown.

    >>> clean("boom\\x1b[31m" + "x" * 600, limit=10)
    'boom\ufffd[31mx… (599 more characters)'
    >>> clean(b"\\xff\\xfeok")
    '\ufffd\ufffdok'
    """
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        # At most 4 bytes per character: this prefix holds every character that can be shown.
        text = raw[: limit * 4 + 256].decode("utf-8", errors="replace")
        whole, total, unit = len(raw) <= limit * 4 + 256, len(raw), "bytes"
    else:
        text = str(value)
        whole, total, unit = True, len(text), "characters"
    # Redact a bounded prefix only: a multi-megabyte message must not cost a regex pass over all of it.
    head = redact_secrets(_CONTROL.sub("\ufffd", text[: limit + 256]))
    if whole and len(text) <= limit:
        return head
    shown = head[:limit]
    more = total - limit if unit == "characters" else total - len(shown.encode("utf-8", "replace"))
    return f"{shown}… ({max(more, 1)} more {unit})"


def esc(value: Any, limit: int = MAX_TEXT) -> str:
    """:func:`clean` then HTML-escape (quotes too): safe in element content and in attribute values.

    >>> esc("<script>alert(1)</script>")
    '&lt;script&gt;alert(1)&lt;/script&gt;'
    """
    return html.escape(clean(value, limit), quote=True)


def fmt_seconds(seconds: float | None) -> str:
    """A short human duration: ``850 ms``, ``12.5 s``, ``4 min 10 s``, ``3 h 5 min``.

    >>> fmt_seconds(0.85), fmt_seconds(12.5), fmt_seconds(250), fmt_seconds(11100), fmt_seconds(None)
    ('850 ms', '12.5 s', '4 min 10 s', '3 h 5 min', '-')
    >>> fmt_seconds(0), fmt_seconds(-3)
    ('0 s', '0 s')
    """
    if seconds is None:
        return "-"
    if seconds <= 0:
        return "0 s"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s".replace(".0 s", " s")
    if seconds < 3600:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(round(seconds) // 60, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


def fmt_clock(at: float | None, now: float | None = None) -> str:
    """Wall time as local ``HH:MM:SS`` (``-`` for None); with the date (``YYYY-MM-DD HH:MM:SS``) when ``now``
    is given and falls on another day, so a breaker open "since 16:39" is never really open since yesterday.

    >>> len(fmt_clock(1_800_000_000.0)), len(fmt_clock(1_800_000_000.0, now=1_800_000_000.0 + 3 * 86400))
    (8, 19)
    """
    if at is None:
        return "-"
    local = time.localtime(at)
    if now is not None and time.localtime(now)[:3] != local[:3]:
        return time.strftime("%Y-%m-%d %H:%M:%S", local)
    return time.strftime("%H:%M:%S", local)


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, the noun in the plural unless the count is one.

    >>> plural(1, "attempt"), plural(2, "attempt"), plural(1, "recovery", "recoveries")
    ('1 attempt', '2 attempts', '1 recovery')
    """
    return f"{count} {noun if count == 1 else (many or noun + 's')}"


_ONE = re.compile(r"\b1 (probe|attempt|call|failure|time|run|request|error)s\b")


def singular_one(text: str) -> str:
    """Text from elsewhere (a breaker's stored reason) with "1 probes" read as "1 probe".

    >>> singular_one("1 probes succeeded; 11 probes failed")
    '1 probe succeeded; 11 probes failed'
    """
    return _ONE.sub(lambda m: f"1 {m.group(1)}", text)
