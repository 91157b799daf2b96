"""What the dashboard's buttons do: breaker control, cancelling a run, settings edits, resolving tickets.

Shared by the HTML forms and the JSON API. Each action validates its input and raises ``ConfigError``
(bad or unknown input: the page shows the message) or ``StoreError`` (the database refused); none runs a
command or takes a path, URL or code from the request.

Breaker changes go through a ``CircuitBreaker`` on the shared SQLite store, exactly as a program would
make them, so every process using that breaker adopts the new state on its next call or sync. The
dashboard journals its own changes through a private bus and journal writer, so the timeline and the
history say who forced what.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from bounceback.core._control import RunControls
from bounceback.core._events import EventBus
from bounceback.core._time import parse_duration
from bounceback.core.breaker._breaker import CircuitBreaker
from bounceback.core.settings._source import check_operation
from bounceback.errors import ConfigError
from bounceback.stores.journal._writer import JournalWriter
from bounceback.stores.settings._rows import current_user
from bounceback.web._collect import Collector

__all__ = ["Actions", "BREAKER_ACTIONS"]

BREAKER_ACTIONS = {"open": "force_open", "close": "force_close", "reset": "reset"}
"""The breaker controls: ``open`` (force open), ``close`` (force close) and ``reset``."""


class Actions:
    """The state-changing operations of one dashboard over the home database at ``collector.path``."""

    def __init__(self, collector: Collector, *, who: str | None = None) -> None:
        self.collector = collector
        self.path: Path = collector.path
        self.who = who or f"{current_user()} (dashboard)"
        self.bus = EventBus()
        self.writer = JournalWriter(self.path, bus=self.bus, controls=RunControls(), timeout=1.0)
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the journal writer of the dashboard's own changes."""
        self.writer.start()

    def close(self) -> None:
        """Stop the journal writer."""
        self.writer.close()

    def breaker(self, name: Any, action: Any) -> str:
        """Force open, force close or reset the breaker ``name``; returns what was done, in words."""
        # A JSON body may hold any type here: a list or an object is not hashable, so check the type first.
        if not isinstance(action, str) or action not in BREAKER_ACTIONS:
            raise ConfigError("action", action, "one of open, close, reset")
        if not isinstance(name, str) or not name:
            raise ConfigError("name", name, "the name of a breaker listed on the overview")
        with self._lock:
            store = self.collector.breaker_store()
            if store is None:
                raise ConfigError(
                    "store.backend",
                    "memory",
                    "'sqlite' or 'redis' to change a breaker from the dashboard",
                    hint="with the memory backend each program keeps its own breaker state",
                )
            if name not in store.keys():  # type: ignore[attr-defined]  # noqa: SIM118 - a store, not a dict
                raise ConfigError(
                    "name", name, "the name of a breaker listed on the overview", hint="reload the page"
                )
            values = self.collector.settings.effective(name)
            brk = CircuitBreaker(name, store=store, settings=dict(values), bus=self.bus, timers=False)
            reason = {"open": "forced open", "close": "closed", "reset": "reset"}[action]
            if action == "reset":
                brk.reset()
            else:
                getattr(brk, BREAKER_ACTIONS[action])(f"{reason} from the dashboard by {self.who}")
            state = brk.state.value
        self.writer.flush()
        return f"Breaker {name} is now {state.replace('_', ' ')}."

    def cancel(self, run_id: Any) -> bool:
        """Ask the process running ``run_id`` to stop its automatic attempts; False if it already ended."""
        if not isinstance(run_id, str) or not run_id or len(run_id) > 200:
            raise ConfigError("run_id", run_id, "the id of a run listed on the Active recoveries page")
        return self.collector.journal.request_cancel(
            run_id, reason="cancelled from the dashboard", requested_by=self.who
        )

    def resolve(self, ticket_id: Any, choice: Any, attempts: Any = None, deadline: Any = None) -> str:
        """Resolve an open ticket with ``choice`` (exactly once); returns what was done, in words.

        ``attempts`` / ``deadline`` (text or numbers; empty for the suggestion) go with ``retry-adjusted``.
        """
        if not isinstance(ticket_id, str) or not ticket_id or len(ticket_id) > 100:
            raise ConfigError("ticket_id", ticket_id, "the id of a ticket listed on the Tickets page")
        if not isinstance(choice, str) or not choice:
            raise ConfigError("choice", choice, "one of the choices the ticket offers")
        answer: dict[str, Any] = {}
        if choice.strip().lower() == "retry-adjusted":
            if attempts not in (None, ""):
                answer["attempts"] = _whole(attempts)
            if deadline not in (None, ""):
                answer["deadline"] = _seconds(deadline)
        ticket = self.collector.tickets.decide(ticket_id, choice, by=self.who, **answer)
        assert ticket.resolution is not None
        return f"Ticket {ticket.id} resolved: {ticket.resolution.choice.value}."

    def not_useful(self, ticket_id: Any, step: Any) -> str:
        """Mark one guidance step of a ticket as not useful (it ranks lower next time)."""
        if not isinstance(ticket_id, str) or not ticket_id or len(ticket_id) > 100:
            raise ConfigError("ticket_id", ticket_id, "the id of a ticket listed on the Tickets page")
        if not isinstance(step, str) or not step or len(step) > 200:
            raise ConfigError("step", step, "the key of a guidance step of the ticket")
        self.collector.tickets.mark_not_useful(ticket_id, [step])
        return f"Step marked not useful on ticket {ticket_id}."

    def check_operation(self, operation: Any) -> str | None:
        """``None`` for an empty operation (global), else the validated name."""
        if operation in (None, ""):
            return None
        return check_operation(operation)


def _whole(value: Any) -> int:
    if isinstance(value, bool):
        raise ConfigError("attempts", value, "a whole number >= 1")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isdigit() and len(value.strip()) < 10:
        number = int(value.strip())
    else:
        raise ConfigError("attempts", value, "a whole number >= 1")
    if number < 1:
        raise ConfigError("attempts", value, "a whole number >= 1")
    return number


def _seconds(value: Any) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        return parse_duration(value.strip(), "deadline")
    raise ConfigError("deadline", value, "a duration such as 30s, 5m or a number of seconds")
