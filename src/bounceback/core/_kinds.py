"""The verdict on an error: its kind and the reason (shared by the classifier and its defaults)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Classification", "ErrorKind"]


class ErrorKind(enum.Enum):
    """What an error means for recovery.

    ``TRANSIENT``: likely to pass; retry with backoff. ``THROTTLED``: the other side asked us to slow
    down; retry, no sooner than its ``retry_after``. ``PERMANENT``: retrying will not help; a person or the
    program must act.
    """

    TRANSIENT = "transient"
    THROTTLED = "throttled"
    PERMANENT = "permanent"

    @property
    def is_retryable(self) -> bool:
        """True for TRANSIENT and THROTTLED."""
        return self is not ErrorKind.PERMANENT


@dataclass(frozen=True, slots=True)
class Classification:
    """The verdict on one error: its ``kind``, a human ``reason``, and an optional ``retry_after`` hint.

    >>> Classification(ErrorKind.THROTTLED, "HTTP 429", retry_after=3.0).is_retryable
    True
    """

    kind: ErrorKind
    reason: str
    retry_after: float | None = None

    @property
    def is_retryable(self) -> bool:
        """True when another attempt may succeed."""
        return self.kind is not ErrorKind.PERMANENT
