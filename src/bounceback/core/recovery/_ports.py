"""The ports of manual recovery: where tickets are kept (a store) and how a person is asked (a prompter).

``SqliteTickets`` (``bounceback.stores._tickets``) and :class:`MemoryTickets` implement :class:`TicketStore`;
``bounceback.console.TerminalPrompter`` implements :class:`TicketPrompter`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Protocol

from bounceback.core.classify._facts import format_clock_time
from bounceback.core.recovery._tickets import Record, Resolution, Ticket, choice_item, rank, step_item
from bounceback.errors import ConfigError

__all__ = [
    "MemoryTickets",
    "TicketPrompter",
    "TicketStore",
    "already_resolved",
    "outcome_items",
    "unknown_ticket",
]


class TicketStore(Protocol):
    """Keeps tickets and their outcomes. ``resolve`` must accept exactly one resolution per ticket."""

    def park(self, ticket: Ticket) -> Ticket:
        """Keep an open ticket for later resolution."""
        ...

    def get(self, ticket_id: str) -> Ticket:
        """The ticket (ranked with the current records); ConfigError for an unknown id."""
        ...

    def resolve(self, ticket_id: str, resolution: Resolution) -> Ticket:
        """Resolve an open ticket, exactly once; ConfigError when unknown or already resolved."""
        ...

    def record_outcome(self, ticket_id: str, succeeded: bool) -> bool:
        """Record how the follow-up attempt went; False when already recorded or not applicable."""
        ...

    def stats(self, operation: str, topic: str) -> Mapping[str, Record]:
        """The records of every step and choice for one operation and topic."""
        ...


class TicketPrompter(Protocol):
    """Asks a person what to do about a ticket (the terminal, a chat bot, a GUI)."""

    def is_attended(self) -> bool:
        """True when a person can answer now (for example: a terminal is attached)."""
        ...

    def ask(self, ticket: Ticket) -> Resolution:
        """Show the ticket and return the person's decision (made with :meth:`Ticket.decide`)."""
        ...


def outcome_items(resolution: Resolution) -> list[str]:
    """The statistics items a follow-up outcome counts for: the choice and the steps the person took."""
    if not resolution.choice.runs_again:
        return []
    return [choice_item(resolution.choice), *(step_item(k) for k in resolution.did)]


def unknown_ticket(ticket_id: str) -> ConfigError:
    """The refusal for an id no ticket has."""
    return ConfigError(
        "ticket", ticket_id, "the id of a recorded ticket", hint="`bounceback tickets list` shows them"
    )


def already_resolved(ticket: Ticket, when: str) -> ConfigError:
    """The refusal for a ticket someone resolved first (``when`` is the resolution time as text)."""
    res = ticket.resolution
    who = res.by if res is not None else "someone"
    how = f" with {res.choice.value!r}" if res is not None else ""
    return ConfigError(
        "ticket",
        ticket.id,
        "an open ticket",
        hint=f"already resolved by {who} at {when}{how}; `bounceback tickets show {ticket.id}` shows it",
    )


class MemoryTickets:
    """A :class:`TicketStore` in memory, for one process (tests, or learning within one run).

    >>> from bounceback.core.retry._engine import GiveUp
    >>> from bounceback.core.recovery._tickets import open_ticket
    >>> store = MemoryTickets()
    >>> ticket = store.park(open_ticket(GiveUp("sync", TimeoutError(), "attempts", (), None, "r", 1.0, None), now=0))
    >>> _ = store.resolve(ticket.id, ticket.decide("retry", by="ann", at=1.0))
    >>> store.record_outcome(ticket.id, True), store.stats("sync", "timeout")["choice:retry"].text()
    (True, 'worked 1 of 1 time')
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tickets: dict[str, Ticket] = {}
        self._stats: dict[tuple[str, str, str], Record] = {}

    def park(self, ticket: Ticket) -> Ticket:
        """Keep ``ticket`` (open)."""
        with self._lock:
            self._tickets[ticket.id] = ticket
        return ticket

    def get(self, ticket_id: str) -> Ticket:
        """The ticket, ranked with the current records."""
        with self._lock:
            ticket = self._tickets.get(ticket_id)
        if ticket is None:
            raise unknown_ticket(ticket_id)
        return rank(ticket, self.stats(ticket.operation, ticket.topic))

    def list(self, status: str | None = None) -> list[Ticket]:
        """Every ticket (optionally only ``open`` or ``resolved``), oldest first."""
        with self._lock:
            tickets = list(self._tickets.values())
        return sorted(
            (t for t in tickets if status is None or t.status == status), key=lambda t: t.created_at
        )

    def resolve(self, ticket_id: str, resolution: Resolution) -> Ticket:
        """Resolve an open ticket exactly once."""
        with self._lock:
            ticket = self._tickets.get(ticket_id)
            if ticket is None:
                raise unknown_ticket(ticket_id)
            if not ticket.is_open:
                at = ticket.resolution.at if ticket.resolution else 0.0
                raise already_resolved(ticket, format_clock_time(at))
            ticket = replace(ticket, status="resolved", resolution=resolution)
            self._tickets[ticket_id] = ticket
            for key in resolution.not_useful:
                self._bump(ticket, step_item(key), 0, 0, 1)
        return ticket

    def record_outcome(self, ticket_id: str, succeeded: bool) -> bool:
        """Record the follow-up outcome once; False if already recorded or the choice runs nothing."""
        with self._lock:
            ticket = self._tickets.get(ticket_id)
            res = ticket.resolution if ticket is not None else None
            if ticket is None or res is None or res.outcome is not None or not res.choice.runs_again:
                return False
            outcome = "succeeded" if succeeded else "failed"
            self._tickets[ticket_id] = replace(ticket, resolution=replace(res, outcome=outcome))
            for item in outcome_items(res):
                self._bump(ticket, item, 1, int(succeeded), 0)
        return True

    def stats(self, operation: str, topic: str) -> Mapping[str, Record]:
        """The records for ``operation`` and ``topic``."""
        with self._lock:
            return {
                item: rec for (op, top, item), rec in self._stats.items() if (op, top) == (operation, topic)
            }

    def _bump(self, ticket: Ticket, item: str, tried: int, worked: int, not_useful: int) -> None:
        key = (ticket.operation, ticket.topic, item)
        old = self._stats.get(key, Record())
        self._stats[key] = Record(old.tried + tried, old.worked + worked, old.not_useful + not_useful)
