"""Events and the event bus.

Every display (terminal, dashboard, journal, metrics, logs) is a subscriber of an :class:`EventBus`; the core
knows none of them. Events are frozen, slotted dataclasses named in the past tense. Nothing is built when
nobody listens: emitters check ``bus.listening`` first, so a successful call pays for no event at all.

Times: ``at`` is wall-clock epoch seconds (for display and for other processes); durations such as
``elapsed`` and ``delay`` are measured on the monotonic clock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bounceback.core._kinds import Classification

__all__ = [
    "AttemptFailed",
    "AttemptHedged",
    "BreakerClosed",
    "BreakerHalfOpened",
    "BreakerOpened",
    "BreakerStateChanged",
    "CallRejected",
    "Event",
    "EventBus",
    "FaultInjected",
    "HealthChecked",
    "LimitRejected",
    "RecoveryExhausted",
    "RecoverySucceeded",
    "RetryScheduled",
    "RunEnded",
    "RunStarted",
    "SettingsChanged",
    "StoreRecovered",
    "StoreUnavailable",
    "TicketOpened",
    "TicketResolved",
    "default_bus",
]

_log = logging.getLogger("bounceback.events")


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event: the ``operation`` (or breaker) name and the wall time ``at``."""

    operation: str
    at: float


@dataclass(frozen=True, slots=True)
class AttemptFailed(Event):
    """An attempt raised (or returned a rejected result). ``will_retry`` tells whether another follows."""

    run_id: str
    attempt: int
    max_attempts: int | None
    elapsed: float
    error_type: str
    error_message: str
    classification: Classification
    will_retry: bool
    breaker_state: str | None = None


@dataclass(frozen=True, slots=True)
class RetryScheduled(Event):
    """A wait before the next attempt began: ``delay`` seconds, next try at wall time ``retry_at``."""

    run_id: str
    attempt: int
    """The number of the attempt that will run after the wait."""
    max_attempts: int | None
    delay: float
    retry_at: float
    deadline_at: float | None
    started_at: float
    """Wall time at which this recovery's first attempt started."""
    reason: str
    """Why this delay: ``backoff``, ``retry-after`` or ``breaker`` (waiting for the next probe)."""


@dataclass(frozen=True, slots=True)
class RecoverySucceeded(Event):
    """A call succeeded after at least one failed attempt."""

    run_id: str
    attempts: int
    elapsed: float
    started_at: float


@dataclass(frozen=True, slots=True)
class RecoveryExhausted(Event):
    """Automatic recovery gave up.

    ``reason`` is one of ``attempts``, ``deadline``, ``permanent``, ``cancelled``, ``budget``, ``breaker``,
    ``retry-after`` (the server asked for a wait past the deadline) or ``result``.
    """

    run_id: str
    attempts: int
    elapsed: float
    started_at: float
    reason: str
    error_type: str
    error_message: str
    classification: Classification | None


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    """A command run by ``bounceback run`` started its first attempt (a library call never emits this).

    A library call is heard of only once an attempt fails: its success path emits nothing. A command is
    announced from its start, so a person sees it running and can cancel it before anything failed.
    ``run_id`` names the run until its first attempt fails; from then on the recovery's own run id (that
    of ``AttemptFailed``) carries it, and the journal moves the entry over. ``attempts`` is the limit
    (None: the deadline only), ``deadline_at`` the wall time the run must end by (None: none), ``pid``
    the process id (and process group) of the first attempt, ``command`` the command line.
    """

    run_id: str
    attempts: int | None
    deadline_at: float | None
    pid: int
    command: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RunEnded(Event):
    """A run announced by :class:`RunStarted` is over, whatever the outcome.

    When its first attempt succeeded (``returncode`` 0, ``attempts`` 1) no other event tells of it: no
    recovery took place, and the journal forgets the announcement. Otherwise the recovery's own events
    (``RecoverySucceeded``, ``RecoveryExhausted``) have said how it ended. ``elapsed`` is measured from the
    start of the first attempt.
    """

    run_id: str
    attempts: int
    elapsed: float
    returncode: int


@dataclass(frozen=True, slots=True)
class BreakerStateChanged(Event):
    """A breaker moved from ``old_state`` to ``new_state`` (the values of ``BreakerState``).

    ``operation`` is the breaker's name. ``open_until`` is the wall time of the next probe when open.
    """

    old_state: str
    new_state: str
    reason: str
    open_until: float | None = None


@dataclass(frozen=True, slots=True)
class BreakerOpened(BreakerStateChanged):
    """A breaker opened (by its thresholds, a failed probe, or by hand)."""


@dataclass(frozen=True, slots=True)
class BreakerHalfOpened(BreakerStateChanged):
    """A breaker began letting probes through."""


@dataclass(frozen=True, slots=True)
class BreakerClosed(BreakerStateChanged):
    """A breaker closed: calls flow again."""


@dataclass(frozen=True, slots=True)
class CallRejected(Event):
    """A breaker refused a call without running it (``operation`` is the breaker's name)."""

    state: str
    retry_at: float | None


@dataclass(frozen=True, slots=True)
class LimitRejected(Event):
    """A concurrency or rate limiter refused a call without running it (``operation`` is its name).

    ``limiter`` is ``"concurrency"`` or ``"rate"``; ``reason`` ``"full"``, ``"queue timeout"`` or
    ``"no token"``; ``retry_after`` the seconds until a rate limiter has a token (None for concurrency).
    """

    limiter: str
    reason: str
    retry_after: float | None


@dataclass(frozen=True, slots=True)
class AttemptHedged(Event):
    """A slow call got another attempt beside the first: ``hedge`` is its number (1 for the first hedge),
    ``after`` the seconds since the call started."""

    hedge: int
    after: float


@dataclass(frozen=True, slots=True)
class FaultInjected(Event):
    """Fault injection (chaos) acted on a call: ``fault`` is ``"error"``, ``"latency"`` or ``"result"``,
    ``detail`` the error's type, the seconds added or the result's repr."""

    fault: str
    detail: str


@dataclass(frozen=True, slots=True)
class HealthChecked(Event):
    """A breaker's own health check ran while it was open."""

    ok: bool
    error: str | None
    duration: float


@dataclass(frozen=True, slots=True)
class TicketOpened(Event):
    """A recovery ticket was opened for a person."""

    ticket_id: str
    summary: str


@dataclass(frozen=True, slots=True)
class TicketResolved(Event):
    """A person (or a program) resolved a ticket with ``choice``."""

    ticket_id: str
    choice: str
    resolved_by: str


@dataclass(frozen=True, slots=True)
class StoreUnavailable(Event):
    """Shared state could not be reached; the breaker named ``operation`` runs on local state."""

    store: str
    error: str


@dataclass(frozen=True, slots=True)
class StoreRecovered(Event):
    """Shared state is reachable again and has been resynchronised."""

    store: str


@dataclass(frozen=True, slots=True)
class SettingsChanged(Event):
    """A setting changed; ``operation`` is ``""`` for a global value."""

    key: str
    old: Any
    new: Any
    source: str = field(default="")


Subscriber = Callable[[Event], None]


class EventBus:
    """Delivers events to subscribers, synchronously, in the emitting thread.

    A subscriber that raises is logged and kept; it never breaks the recovery that emitted the event.

    >>> bus = EventBus()
    >>> seen = []
    >>> stop = bus.subscribe(seen.append)
    >>> bus.listening
    True
    >>> stop()
    >>> bus.listening
    False
    """

    __slots__ = ("_lock", "_subscribers", "listening")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: tuple[Subscriber, ...] = ()
        self.listening = False

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Add ``subscriber``; returns a function that removes it again."""
        with self._lock:
            self._subscribers = (*self._subscribers, subscriber)
            self.listening = True

        def unsubscribe() -> None:
            self.unsubscribe(subscriber)

        return unsubscribe

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Remove ``subscriber`` if present."""
        with self._lock:
            subs = list(self._subscribers)
            if subscriber in subs:
                subs.remove(subscriber)
            self._subscribers = tuple(subs)
            self.listening = bool(subs)

    def emit(self, event: Event) -> None:
        """Deliver ``event`` to every subscriber."""
        # The tuple is replaced, never mutated, so iterating the snapshot needs no lock.
        for subscriber in self._subscribers:
            try:
                subscriber(event)
            except Exception:
                _log.exception(
                    "bounceback event subscriber %r failed on %s", subscriber, type(event).__name__
                )


default_bus = EventBus()
"""The process-wide bus every policy and breaker emits to unless given another."""
