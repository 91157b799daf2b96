"""The root ``bounceback`` command group and what every command shares.

Command modules attach themselves to :data:`cli` at import (``@cli.group()`` / ``@cli.command()``) and
``cli/__init__.py`` imports each of them in one line. Every command gets, for free: ``--home`` (or
``$BOUNCEBACK_HOME``), ``--timeout`` for database locks, and the rule that a ``ConfigError`` or
``StoreError`` prints a clear ``error:`` message (with any notes, one per line) and exits with code 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from bounceback.errors import ConfigError, StoreError
from bounceback.stores import HOME_ENV, SqliteSettings, database_path

__all__ = ["AppContext", "BouncebackGroup", "cli", "echo_json", "fail", "main", "pass_app"]

EXIT_USAGE = 2


@dataclass
class AppContext:
    """What the root group knows: the home folder (None: the default) and the lock timeout."""

    home: Path | None = None
    timeout: float = 5.0
    _settings: SqliteSettings | None = field(default=None, repr=False)

    @property
    def database(self) -> Path:
        """The home database file."""
        return database_path(self.home)

    def settings(self) -> SqliteSettings:
        """The settings store of the home database, opened once per command and closed after it."""
        if self._settings is None:
            self._settings = SqliteSettings(self.database, timeout=self.timeout)
            click.get_current_context().call_on_close(self._settings.close)
        return self._settings


pass_app = click.make_pass_decorator(AppContext, ensure=True)
"""Decorator that passes the :class:`AppContext` to a command as its first argument."""


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout (non-ASCII kept as is)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def fail(exc: BaseException) -> None:
    """Print ``error: <message>`` (and each note) on stderr and exit with code 2."""
    click.echo(f"error: {exc}", err=True)
    for note in getattr(exc, "__notes__", ()):
        click.echo(f"  - {note}", err=True)
    sys.exit(EXIT_USAGE)


class BouncebackGroup(click.Group):
    """A click group that turns ConfigError / StoreError from any subcommand into exit code 2."""

    def invoke(self, ctx: click.Context) -> Any:
        """Run the subcommand; refusals, store failures and a missing extra print a clear message instead of
        a traceback."""
        try:
            return super().invoke(ctx)
        except (ConfigError, StoreError) as exc:
            fail(exc)
        except ModuleNotFoundError as exc:
            from bounceback.cli import EXTRAS, missing_extra

            if exc.name is None or exc.name.partition(".")[0] not in EXTRAS:
                raise  # not an optional dependency: a real bug, keep its traceback
            name = ctx.invoked_subcommand or "this command"
            click.echo(missing_extra(exc.name, f"`bounceback {name}`"), err=True)
            sys.exit(EXIT_USAGE)


@click.group(cls=BouncebackGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--home",
    type=click.Path(file_okay=False, path_type=Path),
    envvar=HOME_ENV,
    help=f"The bounceback home folder (default: ${HOME_ENV}, else the user data folder).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0, 600),
    default=5.0,
    show_default=True,
    help="Seconds to wait for another process's database lock.",
)
@click.version_option(package_name="bounceback")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, timeout: float) -> None:
    """bounceback: recover from transient errors, and tune how from the command line."""
    ctx.obj = AppContext(home=home, timeout=timeout)


def main(argv: Sequence[str] | None = None) -> None:
    """Run the ``bounceback`` command line (the console script entry point)."""
    cli.main(args=list(argv) if argv is not None else None, prog_name="bounceback")
