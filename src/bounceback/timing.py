"""Time as bounceback sees it: the clock port (inject a fake one in tests), the system clock, cancellation
tokens, and the parsing of durations such as ``"250ms"`` or ``"5m"``.

>>> from bounceback.timing import parse_duration
>>> parse_duration("5m")
300.0
"""

from __future__ import annotations

from bounceback.core._time import SYSTEM_CLOCK, CancelToken, Clock, SystemClock, parse_duration

__all__ = ["CancelToken", "Clock", "SYSTEM_CLOCK", "SystemClock", "parse_duration"]
