"""The manual-fallback step of ``bounceback run``: a recovery ticket for a command that gave up.

Installed (by ``cli/_tickets.py``) as the hook of ``bounceback run``. It follows ``manual.mode`` for the
operation:

- ``auto`` (default): at a terminal (stdin and stderr are terminals), show the ticket, its ranked guidance
  and the choices, and act on the answer (run again, with other limits, or abort). Without one, park the
  ticket for ``bounceback tickets resolve`` / the dashboard, say so, and exit with :data:`EXIT_PARKED`
  (4): "a person must look at ticket X" (3 when a person cancelled). Scripts that want the command's own
  exit code set ``manual.mode raise``.
- ``park``: always park, and exit with :data:`EXIT_PARKED`.
- ``prompt``: ask at a terminal; without one, behave as ``raise``.
- ``raise``: no ticket; ``bounceback run`` ends as it would without manual recovery.

The next run after a person chose "retry" on an earlier ticket of the operation counts as that choice's
follow-up (see ``SqliteTickets.follow_up``): a give-up here records a failure, and ``bounceback run``
calls :func:`record_success` when it succeeds.
"""

from __future__ import annotations

import contextlib
import shlex
import time
from pathlib import Path
from typing import Any

import click
from rich.console import Console

from bounceback.cli._run_support import ManualStep
from bounceback.console import TerminalPrompter
from bounceback.core._events import TicketOpened, TicketResolved, default_bus
from bounceback.core.classify._rules import DEFAULT_CLASSIFIER
from bounceback.core.policy._manual import MODES
from bounceback.core.recovery._tickets import ChoiceKind, Ticket, open_ticket, rank
from bounceback.core.retry._engine import GiveUp
from bounceback.errors import CircuitOpenError, ConfigError, RecoveryCancelled, StoreError
from bounceback.stores import database_path
from bounceback.stores._tickets import SqliteTickets

__all__ = ["EXIT_PARKED", "record_success", "ticket_step"]

EXIT_PARKED = 4
"""``bounceback run`` exit code: recovery gave up and the ticket was parked for a person."""


def _say(text: str) -> None:
    click.echo(f"bounceback: {text}", err=True)


def _mode(step: ManualStep) -> str:
    try:
        mode = str(step.settings.effective(step.operation).get("manual.mode", "auto"))
    except (ConfigError, StoreError, AttributeError):
        return "auto"
    return mode if mode in MODES else "auto"


def _give_up(step: ManualStep) -> GiveUp:
    error = step.error
    last = error.last_error if isinstance(error, RecoveryCancelled) else error
    records = tuple(getattr(last, "bounceback_attempts", ()) or ())
    verdict = getattr(last, "verdict", None) if last is not None else None
    if verdict is None and last is not None:
        verdict = DEFAULT_CLASSIFIER.classify(last)
    planned = sum(rec.duration + (rec.delay or 0.0) for rec in records)
    elapsed = step.elapsed or planned
    if records and records[-1].delay is not None and planned > elapsed:
        # Cancelled during a wait: the record holds the planned wait; the ticket tells the measured one.
        waited = max(0.0, records[-1].delay - (planned - elapsed))
        records = (*records[:-1], records[-1]._replace(delay=waited))
    breaker = last.state if isinstance(last, CircuitOpenError) else None
    return GiveUp(
        step.operation,
        last,
        step.reason,
        records,
        verdict,
        step.run_id or "",
        elapsed,
        breaker,
        allowed_attempts=step.allowed_attempts,
    )


def _store(step: ManualStep) -> SqliteTickets:
    path = getattr(step.settings, "path", None)
    retention: Any = 30 * 86400.0
    with contextlib.suppress(ConfigError, StoreError, AttributeError):
        retention = step.settings.effective(None).get("manual.ticket_retention", retention)
    return SqliteTickets(Path(path) if path is not None else database_path(), retention=retention)


def ticket_step(step: ManualStep) -> int | None:
    """Open a ticket for ``step``; prompt at a terminal or park it. Returns the exit code (None: default)."""
    mode = _mode(step)
    if mode == "raise" or (mode == "prompt" and not step.attended):
        return None
    try:
        with _store(step) as store:
            return _handle(step, store, mode)
    except StoreError as exc:
        # The home database failing must not hide why the command failed.
        _say(f"warning: could not keep a recovery ticket: {exc}")
        return None


def _handle(step: ManualStep, store: SqliteTickets, mode: str) -> int | None:
    info = _give_up(step)
    if step.reason != "cancelled":
        store.follow_up(step.operation, False)
    ticket = open_ticket(
        info, now=time.time(), context={"command": shlex.join(step.argv), "via": "bounceback run"}
    )
    ticket = store.park(rank(ticket, store.stats(ticket.operation, ticket.topic)))
    if default_bus.listening:
        default_bus.emit(TicketOpened(ticket.operation, ticket.created_at, ticket.id, ticket.summary))
    if step.attended and mode in ("auto", "prompt"):
        return _prompt(step, store, ticket)
    _say(f"{ticket.summary}; parked as ticket {ticket.id} for a person. {_how_to_resolve(ticket)}")
    if mode == "park" and step.reason != "cancelled":
        return EXIT_PARKED
    # Otherwise the exit code stays what happened (the command's own, 124, 127, 3 for a cancel), so a
    # script can still tell a missing program from a deadline.
    return None


def _how_to_resolve(ticket: Ticket) -> str:
    choices = "|".join(c.key for c in ticket.choices)
    return (
        f"See `bounceback tickets show {ticket.id}`, then "
        f"`bounceback tickets resolve {ticket.id} --choice {choices}`."
    )


def _prompt(step: ManualStep, store: SqliteTickets, ticket: Ticket) -> int:
    prompter = TerminalPrompter(Console(stderr=True, highlight=False))
    try:
        with step.asking():
            resolution = prompter.ask(ticket)
    except KeyboardInterrupt:
        # A signal at the prompt ends bounceback run; nobody decided, so the ticket stays open (parked).
        click.echo("", err=True)  # the prompt's line has no newline yet
        _say(f"ticket {ticket.id} stays open for a person. {_how_to_resolve(ticket)}")
        raise
    try:
        store.resolve(ticket.id, resolution)
    except ConfigError:
        # Resolved elsewhere (the dashboard) while the prompt was open: that decision stands.
        stored = store.get(ticket.id).resolution
        if stored is not None:
            resolution = stored
            _say(f"ticket {ticket.id} was resolved by {stored.by} meanwhile: {stored.choice.value}")
    if default_bus.listening:
        default_bus.emit(
            TicketResolved(ticket.operation, time.time(), ticket.id, resolution.choice.value, resolution.by)
        )
    if resolution.choice.runs_again:
        try:
            code = step.rerun(resolution.attempts, resolution.deadline)
        except KeyboardInterrupt:
            _say(
                f"the run again was stopped before it ended; ticket {ticket.id} stays resolved "
                f"({resolution.choice.value}) with no outcome recorded"
            )
            raise
        cancelled = step.rerun_cancelled()
        if cancelled is not None:
            _say(
                f"{step.operation}: the run again was cancelled ({cancelled}); ticket {ticket.id} has no "
                "outcome recorded. Run the same command again when ready."
            )
            return code
        store.record_outcome(ticket.id, code == 0)
        if code == 0:
            _say(f"{step.operation}: the run again succeeded (ticket {ticket.id})")
        else:
            _say(f"{step.operation}: the run again failed too, exit code {code} (ticket {ticket.id})")
        return code
    if resolution.choice is ChoiceKind.ABORT:
        _say(f"{step.operation}: aborted by {resolution.by} (ticket {ticket.id})")
    return step.exit_code


def record_success(database: Path, operation: str) -> str | None:
    """After a successful ``bounceback run``: count it as the follow-up of a person's recent "retry".

    Returns the ticket id whose outcome was recorded, or None. Never raises for store problems: a record
    of learning must not change the exit code of a command that succeeded.
    """
    try:
        with SqliteTickets(database) as store:
            return store.follow_up(operation, True)
    except StoreError:
        return None
