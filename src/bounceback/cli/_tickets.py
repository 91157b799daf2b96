"""``bounceback tickets``: list, show and resolve parked recovery tickets; record follow-up outcomes.

Thin commands over ``SqliteTickets``: the checks (known id, open ticket, offered choice, limits) live in
the library. A refusal (unknown id, already resolved, a choice the ticket does not offer, a bad limit)
exits with code 2 and says why; with ``--json`` the refusal is also printed as JSON on stdout.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from bounceback.cli._app import EXIT_USAGE, AppContext, cli, echo_json, pass_app
from bounceback.cli._run_support import manual_handler, set_manual_handler
from bounceback.cli._tickets_run import ticket_step
from bounceback.core._time import parse_duration
from bounceback.core.classify._facts import clean_text, format_clock_time
from bounceback.core.policy._manual import current_person
from bounceback.core.recovery._tickets import ChoiceKind, Ticket
from bounceback.errors import ConfigError, StoreError
from bounceback.stores._tickets import SqliteTickets

__all__ = ["tickets_group"]

F = TypeVar("F", bound=Callable[..., Any])

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _store(app: AppContext) -> SqliteTickets:
    retention: Any = 30 * 86400.0
    # The default retention is fine when the settings cannot be read.
    with contextlib.suppress(ConfigError, StoreError):
        retention = app.settings().effective(None).get("manual.ticket_retention", retention)
    store = SqliteTickets(app.database, timeout=app.timeout, retention=retention)
    click.get_current_context().call_on_close(store.close)
    return store


@contextmanager
def _refusals(as_json: bool) -> Iterator[None]:
    """With --json, a refusal is also printed as JSON on stdout (the message still goes to stderr)."""
    try:
        yield
    except ConfigError as exc:
        if as_json:
            echo_json({"error": str(exc), "field": exc.field, "value": exc.value, "hint": exc.hint})
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_USAGE)


def _console() -> Any:
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 120, highlight=False)


@cli.group("tickets")
def tickets_group() -> None:
    """Recovery tickets: what automatic recovery handed to a person, with guidance and choices.

    A program parks a ticket when it gives up and no one is at the terminal; resolve it here (or on the
    dashboard) with one of the choices the ticket offers.
    """


@tickets_group.command("list")
@click.option(
    "--status",
    type=click.Choice(["open", "resolved", "all"]),
    default="open",
    show_default=True,
    help="Which tickets to list.",
)
@click.option("--op", "operation", metavar="NAME", help="Only tickets of this operation.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Newest tickets shown.")
@_json_option
@pass_app
def list_tickets(app: AppContext, status: str, operation: str | None, limit: int, as_json: bool) -> None:
    """Tickets, newest first (open ones by default)."""
    tickets = _store(app).list(None if status == "all" else status, operation, limit)
    if as_json:
        echo_json([t.to_dict() for t in tickets])
        return
    if not tickets:
        click.echo(f"no {'' if status == 'all' else status + ' '}tickets")
        return
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"recovery tickets ({app.database})", title_justify="left")
    for column in ("id", "opened", "operation", "status", "problem", "choice"):
        table.add_column(column, overflow="fold")
    now = time.time()
    for t in tickets:
        choice = t.resolution.choice.value if t.resolution else ""
        if t.resolution and t.resolution.outcome:
            choice += f" ({t.resolution.outcome})"
        problem = Text(f"{clean_text(t.error_type, 80)}: {clean_text(t.error_message, 100)}")
        table.add_row(
            t.id,
            format_clock_time(t.created_at, now),
            Text(clean_text(t.operation)),
            t.status,
            problem,
            choice,
        )
    _console().print(table)


@tickets_group.command("show")
@click.argument("ticket_id", metavar="ID")
@_json_option
@pass_app
def show_ticket(app: AppContext, ticket_id: str, as_json: bool) -> None:
    """One ticket: the error, the attempts, the guidance ranked by past outcomes, and the choices."""
    with _refusals(as_json):
        ticket = _store(app).get(ticket_id)
    if as_json:
        echo_json(ticket.to_dict())
        return
    from bounceback.console import render_ticket

    console = _console()
    console.print(render_ticket(ticket, numbered_choices=False))
    if ticket.is_open:
        choices = "|".join(c.key for c in ticket.choices)
        click.echo(f"resolve with: bounceback tickets resolve {ticket.id} --choice {choices}")


def _value(text: str | None) -> tuple[Any, bool]:
    if text is None:
        return None, False
    try:
        return json.loads(text), True
    except ValueError:
        return text, True


@tickets_group.command("resolve")
@click.argument("ticket_id", metavar="ID")
@click.option(
    "--choice",
    required=True,
    type=click.Choice([k.value for k in ChoiceKind]),
    help="What to do: one of the choices the ticket offers.",
)
@click.option("--value", help="With skip: the value to use instead (JSON, or else taken as text).")
@click.option("--attempts", type=int, help="With retry-adjusted: attempts for the run again.")
@click.option("--deadline", help="With retry-adjusted: a deadline such as 90s or 5m.")
@click.option("--note", default="", help="Why; kept with the ticket.")
@click.option(
    "--did", multiple=True, metavar="STEP", help="A guidance step you took (number or key); repeatable."
)
@click.option(
    "--not-useful", "not_useful", multiple=True, metavar="STEP", help="A step that did not help; repeatable."
)
@click.option("--by", default=None, help="Who resolves it (default: user@host).")
@_json_option
@pass_app
def resolve_ticket(
    app: AppContext,
    ticket_id: str,
    choice: str,
    value: str | None,
    attempts: int | None,
    deadline: str | None,
    note: str,
    did: tuple[str, ...],
    not_useful: tuple[str, ...],
    by: str | None,
    as_json: bool,
) -> None:
    """Resolve ticket ID with a choice, exactly once (a second resolution is refused)."""
    with _refusals(as_json):
        seconds = parse_duration(deadline, "deadline") if deadline is not None else None
        parsed, has_value = _value(value)
        ticket = _store(app).decide(
            ticket_id,
            choice,
            by=by or current_person(),
            note=note,
            attempts=attempts,
            deadline=seconds,
            value=parsed,
            has_value=has_value,
            did=did,
            not_useful=not_useful,
        )
    if as_json:
        echo_json(ticket.to_dict())
        return
    res = ticket.resolution
    assert res is not None
    click.echo(f"resolved ticket {ticket.id} ({ticket.operation}) with {res.choice.value}")
    _next_step(ticket)


def _next_step(ticket: Ticket) -> None:
    res = ticket.resolution
    if res is None or not res.choice.runs_again:
        return
    click.echo("a program waiting on this ticket carries on now; if none is waiting, run the operation again")
    command = ticket.facts.get("command")
    if ticket.facts.get("via") == "bounceback run" and command:
        click.echo(f"  bounceback run --op {ticket.operation} -- {command}")
        click.echo("(bounceback run records how that run went by itself)")
    else:
        click.echo(f"then record how it went: bounceback tickets outcome {ticket.id} --succeeded|--failed")


@tickets_group.command("outcome")
@click.argument("ticket_id", metavar="ID")
@click.option("--succeeded/--failed", required=True, help="Whether the follow-up attempt succeeded.")
@_json_option
@pass_app
def record_outcome(app: AppContext, ticket_id: str, succeeded: bool, as_json: bool) -> None:
    """Record whether the run again after a retry choice succeeded (this is what ranks the guidance)."""
    with _refusals(as_json):
        store = _store(app)
        recorded = store.record_outcome(ticket_id, succeeded)
        ticket = store.get(ticket_id)
        if not recorded:
            res = ticket.resolution
            why = (
                "the ticket is still open"
                if res is None
                else f"its outcome is already recorded ({res.outcome})"
                if res.outcome
                else f"it was resolved with {res.choice.value}, which runs nothing again"
            )
            raise ConfigError(
                "ticket", ticket_id, "a ticket resolved with retry whose outcome is not recorded", hint=why
            )
    if as_json:
        echo_json(ticket.to_dict())
    else:
        click.echo(f"recorded: the follow-up of ticket {ticket.id} {'succeeded' if succeeded else 'failed'}")


@tickets_group.command("prune")
@_json_option
@pass_app
def prune_tickets(app: AppContext, as_json: bool) -> None:
    """Delete resolved tickets older than manual.ticket_retention (the learned outcomes stay)."""
    store = _store(app)
    count = store.prune()
    if as_json:
        echo_json({"deleted": count, "retention": store.retention})
    else:
        click.echo(f"deleted {count} resolved ticket(s) older than {store.retention:g} s")


# `bounceback run` hands a command that gave up to the ticket step (unless a program installed its own).
if manual_handler() is None:
    set_manual_handler(ticket_step)
