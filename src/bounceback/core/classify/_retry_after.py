"""Parsing of the HTTP ``Retry-After`` header (RFC 9110 section 10.2.3).

The header is remote, untrusted text: the parser returns ``None`` for anything it cannot read and never
raises.
"""

from __future__ import annotations

import math
import time
from email.utils import parsedate_to_datetime

__all__ = ["parse_retry_after"]

_MAX_LEN = 64


def parse_retry_after(value: str | bytes | None, *, now: float | None = None) -> float | None:
    """Seconds to wait as told by a ``Retry-After`` value, or None when it is missing or unreadable.

    Accepts delta-seconds (``"120"``) and an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``); a date in the
    past gives 0. ``now`` is the wall time to measure a date against (default: ``time.time()``).

    >>> parse_retry_after("120")
    120.0
    >>> parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0)
    10.0
    >>> parse_retry_after("soon") is None
    True
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        try:
            value = value.decode("latin-1")
        except Exception:  # pragma: no cover - latin-1 decodes every byte
            return None
    text = value.strip()
    if not text or len(text) > _MAX_LEN:
        return None
    if text.isascii() and text.isdigit():
        return float(int(text))
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None or when.tzinfo is None:
        # RFC 9110 dates are always GMT; a date without a zone is not one.
        return None
    try:
        seconds = when.timestamp() - (time.time() if now is None else now)
    except (OverflowError, OSError, ValueError):
        return None
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)
