"""What the dashboard shows, as plain data: the :class:`Snapshot` every view is a pure function of.

The collector (``_collect``) reads the home database into these records; the views never touch a store.
Keeping them apart means a view can be tested with hand-made data, and a change in a store's tables
touches one adapter function, not every page. All times are wall-clock epoch seconds.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "AttemptView",
    "BreakerView",
    "ChoiceView",
    "LimitView",
    "Notice",
    "RunView",
    "Snapshot",
    "StepView",
    "TicketView",
]


@dataclass(frozen=True, slots=True)
class LimitView:
    """One limiter over the processes that reported it lately (``kind`` concurrency or rate).

    A local limiter (each process has its own): concurrency ``used`` calls in flight of ``capacity``
    (both summed over the processes: the total room), ``waiting`` queued; rate ``used`` tokens left,
    ``capacity`` calls per second (summed too). A limiter ``shared`` through a store (its name) holds for
    the fleet: ``capacity`` is the fleet's limit, once; ``used`` the fleet's calls in flight or tokens left
    as the store counts them; ``waiting`` and ``rejected`` are still summed. ``store_unavailable``: no
    process could read the store lately, so ``used`` is the processes' own count (concurrency) or 0.

    >>> LimitView("search", "concurrency", 3.0, 1, 8.0, 0, 2).occupancy
    0.375
    >>> LimitView("search", "concurrency", 3.0, 0, 4.0, 0, 3, shared="redis://r:6379/0").occupancy
    0.75
    """

    name: str
    kind: str
    used: float
    waiting: int
    capacity: float
    rejected: int
    processes: int
    shared: str | None = None
    store_unavailable: bool = False

    @property
    def occupancy(self) -> float:
        """Calls in flight as a fraction of the room (concurrency); 0 for a rate limiter."""
        return self.used / self.capacity if self.kind == "concurrency" and self.capacity else 0.0


@dataclass(frozen=True, slots=True)
class BreakerView:
    """One breaker as stored in the home database.

    ``state`` is ``closed``, ``open``, ``half_open``, ``forced_open`` or ``disabled``; ``failure_rate`` is in
    percent of ``calls`` in the window; ``rejected`` counts calls refused in the last hour.

    >>> BreakerView("db", "open", 100.0, 130.0, "failure rate 60% >= 50%", 10, 6).failure_rate
    60.0
    """

    name: str
    state: str
    since: float
    open_until: float | None
    reason: str
    calls: int
    failures: int
    slow: int = 0
    consecutive: int = 0
    rejected: int = 0
    reopens: int = 0
    min_calls: int = 0
    """Calls the window needs before its rates are judged (``breaker.min_calls``; 0: unknown)."""
    threshold: float = 0.0
    """The failure rate in percent that opens the breaker (``breaker.failure_rate``; 0: unknown)."""

    @property
    def failure_rate(self) -> float:
        """Failures in percent of the calls in the window (0 while the window is empty)."""
        return 100.0 * self.failures / self.calls if self.calls else 0.0


@dataclass(frozen=True, slots=True)
class AttemptView:
    """One attempt of a run: ``outcome`` ``failed`` (with the error) or ``succeeded``.

    >>> AttemptView("r1", 1, 100.0, 0.5, "failed", "TimeoutError", "timed out", "transient", 0.2).delay
    0.2
    """

    run_id: str
    attempt: int
    at: float
    elapsed: float
    outcome: str
    error_type: str | None = None
    error: str | None = None
    kind: str | None = None
    delay: float | None = None


@dataclass(frozen=True, slots=True)
class RunView:
    """One recovery run: ``status`` ``running``, ``recovered``, ``gave-up`` or ``abandoned``.

    >>> RunView("r1", "fetch", "running", 100.0, 101.0, None, 2, 5).progress
    '2 of 5'
    """

    run_id: str
    operation: str
    status: str
    started_at: float
    updated_at: float
    ended_at: float | None
    attempts: int
    max_attempts: int | None
    deadline_at: float | None = None
    next_try_at: float | None = None
    last_error_type: str | None = None
    last_error: str | None = None
    last_kind: str | None = None
    reason: str | None = None
    pid: int = 0
    host: str = ""
    cancel_requested: bool = False

    @property
    def progress(self) -> str:
        """``attempt n of N`` without the word: ``2 of 5`` (``2 of ∞`` with a deadline only)."""
        return f"{self.attempts} of {self.max_attempts if self.max_attempts else '∞'}"

    @property
    def is_active(self) -> bool:
        """True while the run goes on."""
        return self.status == "running"

    def attempt_now(self, now: float) -> int:
        """The number of the attempt running at ``now``: the next one once its wait is over (or when
        no wait is planned), else the last one, which failed.

        >>> run = RunView("r1", "fetch", "running", 100.0, 101.0, None, 1, 5, next_try_at=104.0)
        >>> run.attempt_now(102.0), run.attempt_now(105.0)
        (1, 2)
        """
        if self.is_active and (self.next_try_at is None or self.next_try_at <= now):
            return self.attempts + 1
        return self.attempts


@dataclass(frozen=True, slots=True)
class ChoiceView:
    """A choice offered on a ticket, with its past record for the same operation and error topic.

    ``attempts`` / ``deadline`` are the suggested limits of a ``retry-adjusted`` choice.

    >>> ChoiceView("retry", "Retry now", record="worked 4 of 5 times").key
    'retry'
    """

    key: str
    label: str
    record: str = ""
    detail: str = ""
    attempts: int | None = None
    deadline: float | None = None


@dataclass(frozen=True, slots=True)
class StepView:
    """One guidance step of a ticket: its catalog ``key``, its text and its past record.

    >>> StepView("service-up", "Check that the service at 10.0.0.7:8080 is running.").key
    'service-up'
    """

    key: str
    text: str
    record: str = ""


@dataclass(frozen=True, slots=True)
class TicketView:
    """A recovery ticket: what failed, the guidance, the ranked choices, and how it ended.

    ``status`` is ``open`` (waiting for a person) or ``resolved``.

    >>> TicketView("t1", "fetch", "open", 100.0, "ConnectionRefusedError", "refused").is_open
    True
    """

    ticket_id: str
    operation: str
    status: str
    opened_at: float
    error_type: str
    error: str
    kind: str = ""
    summary: str = ""
    guidance: tuple[StepView, ...] = ()
    choices: tuple[ChoiceView, ...] = ()
    attempts: int = 0
    reason: str = ""
    resolved_at: float | None = None
    resolved_by: str | None = None
    choice: str | None = None
    outcome: str | None = None

    @property
    def is_open(self) -> bool:
        """True while a person is needed."""
        return self.status == "open"


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a person should hear about: ``kind`` ``breaker-opened``, ``recovery-gave-up`` or
    ``ticket-waiting``; ``key`` identifies it so it is announced once.

    >>> Notice("breaker-opened", "db:3", "Breaker db opened", "failure rate 60%", "db", 100.0).to_plain()["kind"]
    'breaker-opened'
    """

    kind: str
    key: str
    title: str
    body: str
    operation: str
    at: float
    link: str = "/"

    def to_plain(self) -> dict[str, Any]:
        """JSON-ready data (the payload of SSE ``notice`` events and of the notification hooks)."""
        return {
            "kind": self.kind,
            "key": self.key,
            "title": self.title,
            "body": self.body,
            "operation": self.operation,
            "at": self.at,
            "link": self.link,
        }


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the pages show, read at wall time ``now`` (``version`` grows with every read).

    ``settings`` maps ``None`` (global) and each operation with stored values to ``{key: value}`` as
    stored; ``history`` is the recent settings history, newest first, as plain dicts
    (``Change.to_plain``).

    >>> Snapshot(now=100.0).operations
    ()
    """

    now: float
    version: int = 0
    breakers: tuple[BreakerView, ...] = ()
    runs: tuple[RunView, ...] = ()
    attempts: Mapping[str, tuple[AttemptView, ...]] = field(default_factory=dict)
    tickets: tuple[TicketView, ...] = ()
    settings: Mapping[str | None, Mapping[str, Any]] = field(default_factory=dict)
    history: tuple[Mapping[str, Any], ...] = ()
    limits: tuple[LimitView, ...] = ()
    """Concurrency and rate limiters with fresh readings from running programs."""
    problems: tuple[str, ...] = ()
    """What could not be read (a store that failed), shown as a warning on every page."""

    @property
    def active(self) -> tuple[RunView, ...]:
        """The runs going on now, oldest first."""
        return tuple(sorted((r for r in self.runs if r.is_active), key=lambda r: r.started_at))

    @property
    def waiting_tickets(self) -> tuple[TicketView, ...]:
        """Tickets waiting for a person, oldest first."""
        return tuple(sorted((t for t in self.tickets if t.is_open), key=lambda t: t.opened_at))

    @property
    def operations(self) -> tuple[str, ...]:
        """Every operation or breaker name the snapshot mentions, sorted."""
        names = {b.name for b in self.breakers} | {r.operation for r in self.runs}
        names |= {t.operation for t in self.tickets} | {op for op in self.settings if op}
        return tuple(sorted(n for n in names if n))
