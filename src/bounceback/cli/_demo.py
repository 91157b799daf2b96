"""``bounceback demo``: a flaky device fleet on 127.0.0.1, recovered live, with a summary at the end."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from bounceback.cli._app import AppContext, cli, echo_json, pass_app
from bounceback.console import ProgressDisplay
from bounceback.console._prompt import TerminalPrompter
from bounceback.stores import open_home

if TYPE_CHECKING:
    from bounceback.demo._job import DemoResult

__all__ = ["demo_command"]

_STYLE = {"ok": "green", "recovered": "cyan", "ticket": "yellow", "error": "red"}


@cli.command("demo")
@click.option("--fast", is_flag=True, help="Ten times faster (for tests and impatient people).")
@click.option("--speed", type=click.FloatRange(0.1, 100), default=None, help="Time scale (1: real time).")
@click.option("--dashboard", is_flag=True, help="Serve the live dashboard beside the demo.")
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Dashboard port (0: any free one).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-progress", is_flag=True, help="No live progress on stderr.")
@pass_app
def demo_command(
    app: AppContext,
    fast: bool,
    speed: float | None,
    dashboard: bool,
    port: int,
    as_json: bool,
    no_progress: bool,
) -> None:
    """Pull the configuration of eight flaky plant devices, recovering what can be recovered.

    The devices are served on 127.0.0.1 with real faults: slow, flapping, throttling with Retry-After,
    down for a while, cutting connections, refusing connections, and rejecting credentials. Breakers,
    the journal and tickets live in the home database, so `bounceback status`, `timeline`, `tickets`
    and the dashboard see the run. Without a terminal, tickets are parked and listed.
    """
    # the demo extra (httpx): imported only when the demo runs
    from bounceback.demo._job import demo_devices, run_job

    scale = speed if speed is not None else (10.0 if fast else 1.0)
    database = app.database
    open_home(database).close()
    err = Console(stderr=True, highlight=False)
    err.print(
        Text.assemble(
            ("bounceback demo", "bold"), f": {len(demo_devices())} devices on 127.0.0.1, home {database}"
        )
    )
    server = _start_dashboard(app, port, err) if dashboard else None
    display = ProgressDisplay(console=err, mode="off" if no_progress else "auto")
    prompter = TerminalPrompter(console=err)
    try:
        with display:
            result = run_job(
                database=database,
                speed=scale,
                prompter=prompter if prompter.is_attended() else None,
            )
        if as_json:
            echo_json(_as_json(result))
        else:
            # Off a terminal rich would assume 80 columns and fold every cell; a log has room for the table.
            out = Console(highlight=False)
            if not out.is_terminal:
                out = Console(highlight=False, width=110)
            _summary(result, out)
            _next_steps(result, err)
        _keep_serving(server, err)
    finally:
        if server is not None:
            server.stop()


def _as_json(result: DemoResult) -> dict[str, Any]:
    return {
        "seconds": round(result.seconds, 3),
        "database": str(result.database),
        "devices": [
            {
                "device": o.device,
                "kind": o.kind,
                "fault": o.fault,
                "outcome": o.outcome,
                "attempts": o.attempts,
                "seconds": round(o.seconds, 3),
                "detail": o.detail,
                "ticket": o.ticket_id,
                "guidance": o.guidance,
                "decision": o.decision,
            }
            for o in result.outcomes
        ],
        "tickets": result.tickets,
    }


def _summary(result: DemoResult, console: Console) -> None:
    table = Table(title=f"pulled configuration from {len(result.outcomes)} devices in {result.seconds:.1f} s")
    for column in ("device", "fault", "outcome", "attempts", "time"):
        table.add_column(column, justify="right" if column in ("attempts", "time") else "left", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for o in result.outcomes:
        table.add_row(
            o.device,
            o.fault,
            Text(
                o.outcome
                + (f" {o.ticket_id}" if o.ticket_id else "")
                + (f" ({o.decision})" if o.decision else ""),
                style=_STYLE.get(o.outcome, ""),
            ),
            str(o.attempts),
            f"{o.seconds:.2f} s",
            Text(o.detail),  # error text is untrusted: never markup
        )
    console.print(table)


def _next_steps(result: DemoResult, console: Console) -> None:
    parked = [o for o in result.outcomes if o.ticket_id and o.outcome == "ticket" and not o.decision]
    if parked:
        console.print(Text("Recovery tickets waiting for a person:", style="bold yellow"))
        for o in parked:
            console.print(Text(f"  {o.device}: {o.guidance}"))
            console.print(Text(f"    bounceback tickets show {o.ticket_id}", style="bold"))
    console.print(
        Text("See the run: bounceback status   bounceback timeline --since 10m   bounceback dashboard")
    )


def _start_dashboard(app: AppContext, port: int, console: Console) -> Any:
    """Serve the dashboard on 127.0.0.1 beside the demo (when the web extra is installed)."""
    try:
        from bounceback.web import DashboardServer
    except ImportError as exc:  # the dashboard is an optional extra
        console.print(Text(f"dashboard not available ({exc}): pip install 'bounceback[web]'", style="yellow"))
        return None
    server = DashboardServer(app.database, host="127.0.0.1", port=port).start()
    console.print(Text.assemble(("dashboard: ", "bold"), server.url), soft_wrap=True)
    return server


def _keep_serving(server: Any, console: Console) -> None:
    """After the job, keep the dashboard up for a person at the terminal until Ctrl-C."""
    if server is None or not (sys.stdin.isatty() and console.is_terminal):
        return
    console.print(Text(f"the dashboard stays up at {server.url}; press Ctrl-C to stop", style="bold"))
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        console.print()
