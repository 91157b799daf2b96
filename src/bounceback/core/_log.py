"""The standard-library logging subscriber: every event becomes one log record with structured fields."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from bounceback.core._events import (
    AttemptFailed,
    BreakerOpened,
    CallRejected,
    Event,
    EventBus,
    RecoveryExhausted,
    RecoverySucceeded,
    RetryScheduled,
    StoreUnavailable,
    default_bus,
)
from bounceback.core._kinds import Classification

__all__ = ["event_fields", "log_events"]

_LEVELS: dict[type[Event], int] = {
    AttemptFailed: logging.INFO,
    RetryScheduled: logging.DEBUG,
    RecoverySucceeded: logging.INFO,
    RecoveryExhausted: logging.WARNING,
    BreakerOpened: logging.WARNING,
    CallRejected: logging.DEBUG,
    StoreUnavailable: logging.WARNING,
}


def event_fields(event: Event) -> dict[str, Any]:
    """The event as a flat dict of plain values (classification flattened to ``kind`` and ``reason``)."""
    out: dict[str, Any] = {"event": type(event).__name__}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, Classification):
            out["kind"] = value.kind.value
            out["kind_reason"] = value.reason
            if value.retry_after is not None:
                out["retry_after"] = value.retry_after
        else:
            out[f.name] = value
    return out


def _message(event: Event) -> str:
    if isinstance(event, AttemptFailed):
        of = f"/{event.max_attempts}" if event.max_attempts else ""
        then = "will retry" if event.will_retry else "giving up"
        return (
            f"{event.operation}: attempt {event.attempt}{of} failed: {event.error_type}: "
            f"{event.error_message} ({event.classification.kind.value}); {then}"
        )
    if isinstance(event, RetryScheduled):
        return f"{event.operation}: retrying in {event.delay:.3g} s (attempt {event.attempt}, {event.reason})"
    if isinstance(event, RecoverySucceeded):
        return f"{event.operation}: recovered after {_attempts(event.attempts)} in {event.elapsed:.3g} s"
    if isinstance(event, RecoveryExhausted):
        return (
            f"{event.operation}: gave up after {_attempts(event.attempts)} in {event.elapsed:.3g} s "
            f"({event.reason}): {event.error_type}: {event.error_message}"
        )
    return f"{event.operation}: {type(event).__name__}"


def _attempts(count: int) -> str:
    return f"{count} attempt{'' if count == 1 else 's'}"


def log_events(
    logger: logging.Logger | str = "bounceback", *, bus: EventBus | None = None, level: int | None = None
) -> Callable[[], None]:
    """Log every event of ``bus`` to ``logger``; returns a function that stops logging.

    Each record carries the event's fields in ``record.bounceback`` (a dict), for structured handlers.

    >>> stop = log_events("myapp.recovery")
    >>> stop()
    """
    log = logging.getLogger(logger) if isinstance(logger, str) else logger

    def subscriber(event: Event) -> None:
        lvl = level if level is not None else _LEVELS.get(type(event), logging.INFO)
        if log.isEnabledFor(lvl):
            log.log(lvl, "%s", _message(event), extra={"bounceback": event_fields(event)})

    return (bus or default_bus).subscribe(subscriber)
