"""``bounceback dashboard``: serve the live web dashboard of this machine's home database."""

from __future__ import annotations

import asyncio
import webbrowser

import click

from bounceback.cli._app import AppContext, cli, pass_app

__all__ = ["dashboard"]


@cli.command("dashboard")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=0,
    show_default=True,
    help="Port to listen on (0: any free port).",
)
@click.option(
    "--allow-remote",
    is_flag=True,
    help="Allow a non-loopback --host. The access token is still required; put TLS in front of it.",
)
@click.option("--no-open", is_flag=True, help="Do not open a browser; just print the URL.")
@click.option(
    "--no-hooks", is_flag=True, help="Do not run the notify.command / notify.webhook hooks from here."
)
@pass_app
def dashboard(
    app: AppContext, host: str, port: int, allow_remote: bool, no_open: bool, no_hooks: bool
) -> None:
    """Serve the live dashboard: breakers, active recoveries, timeline, settings and tickets.

    Prints a URL carrying a fresh access token; every request needs it (the browser keeps it in a
    cookie after the first visit). Stop with Ctrl-C.
    """
    # the web extra: imported only when the dashboard runs
    from bounceback.web import DashboardServer
    from bounceback.web._server import is_loopback

    server = DashboardServer(
        app.database, host=host, port=port, allow_remote=allow_remote, hooks=not no_hooks
    )
    # Made before the URL is shown: a Ctrl-C pressed on seeing it then stops a whole loop (see run()).
    loop = asyncio.new_event_loop()
    try:
        click.echo(f"bounceback dashboard for {app.database}", err=True)
        click.echo(server.url)
        if not is_loopback(host):
            click.echo(f"warning: listening on {host}; anyone who has the URL can change breakers", err=True)
        if not no_open:
            webbrowser.open(server.url)
        server.run(loop)
    finally:
        loop.close()  # already closed by run(), unless Ctrl-C came before it
        click.echo("dashboard stopped", err=True)
