"""``bounceback status``, ``timeline``, ``breaker open|close|reset|disable`` and ``cancel``.

They read the journal and the shared breaker store of the home database, so they show (and act on) what
every bounceback program on the machine is doing. ``--json`` prints machine-readable output on stdout.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bounceback.cli._app import AppContext, cli, echo_json, pass_app
from bounceback.console._text import badge_style, clock_time, countdown, one_line, seconds
from bounceback.console._timeline import render_timeline
from bounceback.core._time import parse_duration
from bounceback.core.breaker._breaker import CircuitBreaker
from bounceback.core.breaker._store import BreakerStore, MemoryBreakerStore, SharedState
from bounceback.core.settings._layers import DEFAULTS
from bounceback.core.settings._source import check_operation
from bounceback.errors import ConfigError
from bounceback.stores._shared import breaker_store_from_settings
from bounceback.stores.journal._journal import Journal
from bounceback.stores.journal._schema import RunEntry
from bounceback.stores.journal._writer import JournalWriter

__all__ = ["breaker_group", "cancel_run", "status", "timeline"]

_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def _console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


def _since(text: str) -> float:
    try:
        return parse_duration(text, "--since")
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="--since") from None


def _store(app: AppContext) -> BreakerStore | None:
    store = breaker_store_from_settings(
        app.settings(), path=app.database, timeout=app.timeout, batched=False
    )  # a reader
    # Memory state lives inside each program: nothing shared to show or change from here.
    return None if isinstance(store, MemoryBreakerStore) else store


def _breakers(store: BreakerStore | None) -> dict[str, SharedState]:
    if store is None:
        return {}
    found: dict[str, SharedState] = {}
    for key in store.keys():  # type: ignore[attr-defined]  # noqa: SIM118 - a store, not a dict
        state = store.load(key)
        if state is not None:
            found[key] = state
    return found


def _breaker_json(state: SharedState | None, now: float) -> dict[str, Any] | None:
    if state is None:
        return None
    probe = state.open_until if state.state == "open" else None
    return {
        "state": "half_open" if probe is not None and probe <= now else state.state,
        "stored_state": state.state,
        "since": state.since,
        "next_probe_at": probe,
        "reopens": state.reopens,
        "reason": state.reason,
    }


def _attempt_now(run: RunEntry, now: float) -> int | None:
    """The number of the attempt running now (None while the run waits, or once it ended)."""
    if run.status != "running" or (run.next_try_at is not None and run.next_try_at > now):
        return None
    return run.attempts + 1


def _run_json(run: RunEntry, now: float | None = None) -> dict[str, Any]:
    data = asdict(run)
    data["duration"] = run.duration
    data["attempt_now"] = _attempt_now(run, time.time() if now is None else now)
    return data


# -- status ------------------------------------------------------------------------------------------


_QUIET_SHOWN = 20
"""Operations with stored settings but nothing to show (no runs, no breaker) listed before they are counted."""
_RICH_ROWS = 300
"""Beyond this many rows the table is drawn as plain aligned text (rich takes ~1 ms a row)."""


def _is_quiet(row: dict[str, Any]) -> bool:
    counted = ("runs", "running", "abandoned", "failed_attempts", "rejections")
    return row["breaker"] is None and not any(row[k] for k in counted)


@cli.command("status")
@click.option("--since", "since_text", default="24h", show_default=True, help="Count runs over this period.")
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help=f"List every operation; by default past {_QUIET_SHOWN} operations that only have stored settings "
    "(no runs, no breaker) are counted, not listed.",
)
@_json_option
@pass_app
def status(app: AppContext, since_text: str, show_all: bool, as_json: bool) -> None:
    """Operations and breakers: state, next probe time, counts, and the recoveries running now."""
    now = time.time()
    since = now - _since(since_text)
    with Journal(app.database, timeout=app.timeout) as journal:
        counts = journal.counts(since=since)
        active = journal.active_runs()
        seen = journal.operations()
    breakers = _breakers(_store(app))
    configured = sorted(app.settings().layers().operations)
    names = sorted(set(counts) | set(breakers) | set(seen) | set(configured))
    rows: list[dict[str, Any]] = []
    for name in names:
        c = counts.get(name)
        rows.append(
            {
                "name": name,
                "breaker": _breaker_json(breakers.get(name), now),
                "runs": c.runs if c else 0,
                "recovered": c.recovered if c else 0,
                "gave_up": c.gave_up if c else 0,
                "running": c.running if c else 0,
                "abandoned": c.abandoned if c else 0,
                "failed_attempts": c.failed_attempts if c else 0,
                "rejections": c.rejections if c else 0,
                "last_at": c.last_at if c else None,
            }
        )
    chaos = _chaos_on(app.settings(), configured)
    if as_json:
        echo_json(
            {
                "generated_at": now,
                "since": since,
                "database": str(app.database),
                "operations": rows,
                "active_runs": [_run_json(r, now) for r in active],
                "chaos": chaos,
            }
        )
        return
    console = _console()
    for entry in chaos:
        # Fault injection must never go unnoticed: first, in bold, on every status.
        console.print(Text(_chaos_line(entry), style="bold red"))
    hidden = 0
    quiet = sum(1 for row in rows if _is_quiet(row))
    if not show_all and quiet > _QUIET_SHOWN:
        rows = [row for row in rows if not _is_quiet(row)]
        hidden = quiet
    title = f"operations (counts since {clock_time(since, now)})"
    if len(rows) > _RICH_ROWS:
        _print_plain(console, title, rows, now)
    elif rows:
        console.print(_operations_table(title, rows, now))
    elif not hidden:
        console.print(Text("no operations yet", style="dim"))
    if hidden:
        console.print(
            Text(
                f"{hidden:,} more operations have stored settings but no runs since {clock_time(since, now)} "
                "and no shared breaker (bounceback status --all lists them)",
                style="dim",
            )
        )
    console.print(_active_table(active, now))


def _chaos_on(source: Any, operations: list[str]) -> list[dict[str, Any]]:
    """Where fault injection is switched on in the stored settings: globally (``operation`` None) or per
    operation, with its rates."""
    found: list[dict[str, Any]] = []
    everywhere = {**DEFAULTS, **source.effective(None)}
    for name in [None, *operations]:
        values = everywhere if name is None else {**DEFAULTS, **source.effective(name)}
        if not values["chaos.enabled"] or (
            name is not None and everywhere["chaos.enabled"] and values == everywhere
        ):
            continue
        found.append(
            {
                "operation": name,
                "error_rate": values["chaos.error_rate"],
                "error": values["chaos.error"],
                "latency_rate": values["chaos.latency_rate"],
                "latency": values["chaos.latency"],
            }
        )
    return found


def _chaos_line(entry: dict[str, Any]) -> str:
    op = entry["operation"]
    where, stop = ("every operation", "") if op is None else (repr(op), f" --op {op}")
    return (
        f"CHAOS: fault injection is ON for {where}: {entry['error_rate']:.0%} {entry['error']} errors, "
        f"{entry['latency_rate']:.0%} delayed {entry['latency']:g}s "
        f"(stop it: bounceback settings set chaos.enabled no{stop})"
    )


_HEADINGS = ("operation", "breaker", "next probe", "runs", "recovered", "gave up", "failed", "rejected")


def _cells(row: dict[str, Any], now: float) -> tuple[str, ...]:
    brk = row["breaker"]
    probe = brk["next_probe_at"] if brk else None
    when = (
        f"{clock_time(probe, now)} (in {seconds(probe - now)})"
        if probe and probe > now
        else ("now" if probe else "")
    )
    return (
        one_line(row["name"], 200),  # names written by programs are not checked: show escapes, not effects
        brk["state"] if brk else "—",
        when,
        str(row["runs"]),
        str(row["recovered"]),
        str(row["gave_up"]),
        str(row["failed_attempts"]),
        str(row["rejections"]),
    )


def _print_plain(console: Console, title: str, rows: list[dict[str, Any]], now: float) -> None:
    """Many rows: aligned columns without rich's per-cell layout (linear, a few microseconds a row)."""
    cells = [_cells(row, now) for row in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) for i, h in enumerate(_HEADINGS)]

    def line(values: tuple[str, ...]) -> str:
        return "  ".join(
            v.ljust(w) if i < 2 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths, strict=True))
        )

    body = "\n".join(line(c).rstrip() for c in cells)
    console.print(Text(title))
    console.print(Text(line(_HEADINGS).rstrip(), style="bold"))
    # One write for the whole body (markup off: names are printed as they are).
    console.print(Text(body), soft_wrap=True)


def _operations_table(title: str, rows: list[dict[str, Any]], now: float) -> Table:
    table = Table(title=title, title_justify="left")
    for heading in _HEADINGS:
        table.add_column(heading, justify="right" if heading not in ("operation", "breaker") else "left")
    for row in rows:
        name, state, *rest = _cells(row, now)
        brk = row["breaker"]
        badge = Text(state, style=badge_style(state)) if brk else Text(state, style="dim")
        table.add_row(Text(name), badge, *rest)
    return table


def _active_table(active: list[RunEntry], now: float) -> Any:
    if not active:
        return Text("no recoveries running now", style="dim")
    table = Table(title="recoveries running now", title_justify="left")
    for heading in ("run", "operation", "attempt", "next try", "time used", "pid", "last error"):
        table.add_column(heading)
    for run in active:
        # The attempt running now (a command's first one has no failure yet), or the one that failed last.
        running = _attempt_now(run, now)
        shown = running if running is not None else run.attempts
        of = f"{shown} of {run.max_attempts}" if run.max_attempts else str(shown)
        of += " running" if running is not None else " failed"
        wait = f"in {countdown(run.next_try_at - now)}" if running is None and run.next_try_at else "now"
        used = countdown(now - run.started_at)
        if run.deadline_at is not None:
            used += f" of {countdown(run.deadline_at - run.started_at)}"
        error = one_line(f"{run.last_error_type}: {run.last_error}", 80) if run.last_error_type else ""
        table.add_row(
            run.run_id,
            Text(one_line(run.operation, 200)),
            of,
            wait,
            used,
            f"{run.pid}@{run.host}",
            Text(error, style="red"),
        )
    return table


# -- timeline ----------------------------------------------------------------------------------------


@cli.command("timeline")
@click.option("--op", "operation", metavar="NAME", help="Only this operation.")
@click.option(
    "--since", "since_text", default="1h", show_default=True, help="How far back: 90s, 15m, 1h, 2d."
)
@_json_option
@pass_app
def timeline(app: AppContext, operation: str | None, since_text: str, as_json: bool) -> None:
    """Recovery runs, their attempts and breaker changes on a time axis."""
    if operation is not None:
        check_operation(operation)
    until = time.time()
    since = until - _since(since_text)
    with Journal(app.database, timeout=app.timeout) as journal:
        runs = journal.runs(since=since, operation=operation)
        attempts = journal.attempts_of(r.run_id for r in runs)
        changes = journal.breaker_changes(since=since, name=operation)
    if as_json:
        echo_json(
            {
                "since": since,
                "until": until,
                "operation": operation,
                "runs": [
                    {**_run_json(r), "attempt_list": [asdict(a) for a in attempts[r.run_id]]} for r in runs
                ],
                "breaker_changes": [asdict(c) for c in changes],
            }
        )
        return
    console = _console()
    console.print(render_timeline(runs, attempts, changes, since=since, until=until, width=console.width))


# -- breaker -----------------------------------------------------------------------------------------


@cli.group("breaker")
def breaker_group() -> None:
    """Open, close, reset or disable a circuit breaker by hand; running programs follow within a second."""


def _manual(app: AppContext, name: str, action: str) -> None:
    check_operation(name)
    settings = app.settings()
    store = _store(app)
    if store is None:
        raise ConfigError(
            "store.backend",
            "memory",
            "'sqlite' or 'redis' to change a breaker from outside its program",
            hint="with the memory backend each program keeps its own breaker state",
        )
    known = name in _breakers(store)
    writer = JournalWriter(app.database, settings=settings, timeout=app.timeout).start()
    try:
        breaker = CircuitBreaker.from_settings(name, settings, store=store, timers=False)
        who = f"by hand from the command line ({action})"
        if action == "open":
            breaker.force_open(f"forced open {who}")
        elif action == "close":
            breaker.force_close(f"closed {who}")
        elif action == "disable":
            breaker.disable(f"disabled {who}")
        else:
            breaker.reset()
        state = breaker.state_name
    finally:
        writer.close()
    note = "" if known else " (no program had used this breaker yet)"
    click.echo(f"breaker {name}: {state}{note}")


@breaker_group.command("open")
@click.argument("name")
@pass_app
def breaker_open(app: AppContext, name: str) -> None:
    """Refuse every call of NAME until someone closes or resets it."""
    _manual(app, name, "open")


@breaker_group.command("close")
@click.argument("name")
@pass_app
def breaker_close(app: AppContext, name: str) -> None:
    """Let calls of NAME through again now (the window starts empty)."""
    _manual(app, name, "close")


@breaker_group.command("reset")
@click.argument("name")
@pass_app
def breaker_reset(app: AppContext, name: str) -> None:
    """Back to new: closed, empty window, no growing open time."""
    _manual(app, name, "reset")


@breaker_group.command("disable")
@click.argument("name")
@pass_app
def breaker_disable(app: AppContext, name: str) -> None:
    """Let every call of NAME through and count nothing, until closed or reset."""
    _manual(app, name, "disable")


# -- cancel ------------------------------------------------------------------------------------------


@cli.command("cancel")
@click.argument("run_id")
@click.option("--wait", "wait_seconds", type=click.FloatRange(0, 60), default=5.0, show_default=True,
              help="Seconds to wait for the run's program to stop it (0: do not wait).")  # fmt: skip
@pass_app
def cancel_run(app: AppContext, run_id: str, wait_seconds: float) -> None:
    """Stop the automatic recovery of run RUN_ID (see `bounceback status`), in whichever process it runs.

    Exits 0 once the run was stopped (or the request was written, with --wait 0), 1 when it had already
    ended or its program did not answer in time.
    """
    with Journal(app.database, timeout=app.timeout) as journal:
        run_id = journal.current_run_id(run_id)  # an announced command may have moved to its recovery's id
        if not journal.request_cancel(run_id, reason="cancelled from the command line"):
            click.echo(f"run {run_id} has already ended; nothing to cancel", err=True)
            sys.exit(1)
        deadline = time.monotonic() + wait_seconds
        while wait_seconds:
            request = journal.cancel_request(run_id)
            if request is not None and request.handled:
                click.echo(f"run {run_id}: automatic recovery stopped")
                return
            if time.monotonic() >= deadline:
                if journal.run(run_id) is None:
                    # An announced command whose first attempt succeeded meanwhile: its entry is gone.
                    click.echo(f"run {run_id} ended before its program acted on the cancel", err=True)
                    sys.exit(1)
                click.echo(
                    f"run {run_id}: cancel requested, but its program did not act within {wait_seconds:g} s "
                    "(it acts only while its journal is on: journal.enabled)",
                    err=True,
                )
                sys.exit(1)
            time.sleep(0.05)
    click.echo(f"run {run_id}: cancel requested")
