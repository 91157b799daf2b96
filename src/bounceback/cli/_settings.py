"""``bounceback settings``: list, get, set, reset, history, undo, export and import user settings.

Thin commands over ``SqliteSettings``: validation, resolution and the history live in the library; these
only parse arguments and render. A refused value exits with code 2 and writes nothing.
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from bounceback.cli._app import AppContext, cli, echo_json, pass_app
from bounceback.console._text import one_line
from bounceback.core.settings._doc import MAX_DOCUMENT_BYTES, check_document_size
from bounceback.core.settings._source import (
    SCHEMA,
    Format,
    Resolved,
    check_operation,
    parse_document,
    split_key,
)
from bounceback.errors import ConfigError
from bounceback.stores import Change

__all__ = ["settings_group"]

_op_option = click.option(
    "--op", "operation", metavar="NAME", help="The operation's own value, on top of the global one."
)
_json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


@cli.group("settings")
def settings_group() -> None:
    """Show and change the settings every bounceback program reads (live, without a restart).

    Values resolve as default < global < per operation (--op NAME). Durations accept 250ms, 2s, 5m,
    1h or seconds; "off" turns off what may be turned off.
    """


def _source(resolved: Resolved, operation: str | None) -> str:
    return f"operation {operation}" if resolved.source == "operation" else resolved.source


def _row(resolved: Resolved, operation: str | None) -> dict[str, Any]:
    setting = SCHEMA[resolved.key]
    return {
        "key": resolved.key,
        "operation": operation,
        "value": setting.to_plain(resolved.value),
        "text": resolved.text,
        "source": resolved.source,
        "default": setting.to_plain(setting.default),
        "default_text": setting.to_text(setting.default),
        "unit": setting.unit,
        "allowed": setting.allowed(),
        "per_operation": setting.per_operation,
        "help": setting.help,
    }


def _console() -> Any:
    from rich.console import Console  # imported here: most commands never draw a table

    return Console(width=None if sys.stdout.isatty() else 160, highlight=False)


@settings_group.command("list")
@_op_option
@click.option("--changed", is_flag=True, help="Only the settings that differ from their default.")
@_json_option
@pass_app
def list_settings(app: AppContext, operation: str | None, changed: bool, as_json: bool) -> None:
    """Every setting with its value, default, source, unit and help."""
    store = app.settings()
    resolved = store.resolve(operation)
    rows = [_row(r, operation) for r in resolved.values() if not changed or r.source != "default"]
    operations = sorted(store.layers().operations)
    if as_json:
        echo_json({"operation": operation, "settings": rows, "operations": operations})
        return
    from rich.table import Table

    title = f"settings for operation {operation!r}" if operation else "settings"
    table = Table(title=f"{title} ({app.database})", title_justify="left")
    for column in ("key", "value", "default", "source", "unit", "help"):
        table.add_column(column, overflow="fold")
    for row in rows:
        value = row["text"] if row["source"] == "default" else f"[bold]{row['text']}[/bold]"
        source = _source(resolved[row["key"]], operation)
        table.add_row(row["key"], value, row["default_text"], source, row["unit"], row["help"])
    console = _console()
    console.print(table)
    if operations:
        console.print(f"operations with their own values: {', '.join(operations)} (see --op NAME)")


@settings_group.command("get")
@click.argument("key")
@_op_option
@_json_option
@pass_app
def get_setting(app: AppContext, key: str, operation: str | None, as_json: bool) -> None:
    """Print one setting's value (with --json: its source and default too)."""
    op, name = split_key(key, operation)
    resolved = app.settings().get(name, op)
    if as_json:
        echo_json(_row(resolved, op))
    else:
        click.echo(resolved.text)


def _change_plain(change: Change | None, key: str, operation: str | None) -> dict[str, Any]:
    if change is None:
        return {"changed": False, "key": key, "operation": operation}
    return {"changed": True, **change.to_plain()}


@settings_group.command("set", context_settings={"ignore_unknown_options": True})
@click.argument("key")
@click.argument("value")
@_op_option
@_json_option
@pass_app
def set_setting(app: AppContext, key: str, value: str, operation: str | None, as_json: bool) -> None:
    """Set KEY to VALUE, globally or for one operation (--op NAME)."""
    op, name = split_key(key, operation)
    change = app.settings().set(name, value, op)
    if as_json:
        echo_json(_change_plain(change, name, op))
    elif change is None:
        click.echo(f"{_field(name, op)} is already {app.settings().get(name, op).text}; nothing changed")
    else:
        click.echo(f"{change.field}: {change.text('old')} -> {change.text('new')} (change #{change.id})")


@settings_group.command("reset")
@click.argument("key")
@_op_option
@_json_option
@pass_app
def reset_setting(app: AppContext, key: str, operation: str | None, as_json: bool) -> None:
    """Remove KEY's value, so the global value (or the default) applies again."""
    op, name = split_key(key, operation)
    store = app.settings()
    change = store.reset(name, op)
    if as_json:
        echo_json(_change_plain(change, name, op))
        return
    now = store.get(name, op)
    if change is None:
        click.echo(f"{_field(name, op)} was not set; it is {now.text} ({now.source})")
    else:
        click.echo(f"{change.field}: {change.text('old')} -> {now.text} ({now.source}; change #{change.id})")


def _field(key: str, operation: str | None) -> str:
    return key if operation is None else f"operations.{operation}.{key}"


@settings_group.command("history")
@_op_option
@click.option("--key", metavar="KEY", help="Only changes of this setting.")
@click.option("--limit", type=click.IntRange(1), default=50, show_default=True, help="Newest changes shown.")
@_json_option
@pass_app
def show_history(app: AppContext, operation: str | None, key: str | None, limit: int, as_json: bool) -> None:
    """Every change: who, when, old and new value. Undo one with: bounceback settings undo ID."""
    if operation is not None:
        check_operation(operation)
    changes = app.settings().history(limit=limit, operation=operation, key=key)
    if as_json:
        echo_json([c.to_plain() for c in changes])
        return
    if not changes:
        click.echo("no changes recorded")
        return
    from rich.table import Table

    table = Table(title=f"settings history ({app.database})", title_justify="left")
    for column in ("id", "when", "who", "setting", "old", "new", "action"):
        table.add_column(column, overflow="fold")
    for c in changes:
        when = datetime.fromtimestamp(c.at).astimezone().strftime("%Y-%m-%d %H:%M:%S")
        action = f"undo #{c.undoes}" if c.undoes is not None else c.action
        table.add_row(str(c.id), when, c.who, c.field, c.text("old"), c.text("new"), action)
    _console().print(table)


def _last_change(changes: list[Change]) -> int:
    """The newest change that is not an undo and was not undone: repeated ``undo`` walks back in time."""
    undone = {c.undoes for c in changes if c.undoes is not None}
    for change in changes:  # newest first
        if change.undoes is None and change.id not in undone:
            return change.id
    raise ConfigError(
        "undo",
        "the last change",
        "a change that is not undone yet",
        hint="every recorded change is undone already, or none was made; see bounceback settings history",
    )


@settings_group.command("undo")
@click.argument("change_id", metavar="[ID]", type=int, required=False)
@_json_option
@pass_app
def undo_change(app: AppContext, change_id: int | None, as_json: bool) -> None:
    """Undo the last change, or change ID (from bounceback settings history), if its value is still in force."""
    store = app.settings()
    if change_id is None:
        change_id = _last_change(store.history(limit=None))
    change = store.undo(change_id)
    if as_json:
        echo_json(change.to_plain())
    else:
        click.echo(
            f"undid #{change_id}: {change.field}: {change.text('old')} -> {change.text('new')} "
            f"(change #{change.id})"
        )


@settings_group.command("export")
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), default="toml", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path), help="Write to a file.")
@pass_app
def export_settings(app: AppContext, fmt: Format, output: Path | None) -> None:
    """Print every stored value (not the defaults) as TOML or JSON, ready for: bounceback settings import."""
    text = app.settings().export(fmt)
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)


def _read_limited(file: Path, name: str) -> str:
    """The text of FILE (or stdin), refused before it is read whole when it is past the size limit."""
    limit = MAX_DOCUMENT_BYTES
    try:
        if str(file) == "-":
            data = sys.stdin.buffer.read(limit + 1)
        else:
            with file.open("rb") as handle:
                data = handle.read(limit + 1)
        if len(data) > limit:
            check_document_size(data, name)  # raises: past the limit
        return data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.FileError(name, hint=str(exc)) from exc


@settings_group.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["toml", "json"]), help="Default: from the file name.")
@click.option("--replace", is_flag=True, help="Also reset every stored value the file does not set.")
@click.option(
    "--allow-commands",
    is_flag=True,
    help="Accept the commands (notify.command) the file sets; without it they are shown and, at a "
    "terminal, confirmed first.",
)
@_json_option
@pass_app
def import_settings(
    app: AppContext, file: Path, fmt: Format | None, replace: bool, allow_commands: bool, as_json: bool
) -> None:
    """Set every value in FILE (TOML or JSON; - for stdin), all or nothing.

    Files are limited to 2 MiB and 20,000 values. A file that sets a command bounceback runs
    (notify.command) shows it first and asks (or needs --allow-commands when nobody can answer).
    """
    name = "<stdin>" if str(file) == "-" else str(file)
    text = _read_limited(file, name)
    chosen: Format = fmt or ("json" if file.suffix.lower() == ".json" else "toml")
    document = parse_document(text, chosen, source=name)
    store = app.settings()
    commands = [] if allow_commands else store.commands_in(document)
    if commands:
        click.echo(
            f"{name} sets {len(commands)} command(s) that bounceback runs when a person is needed:", err=True
        )
        for field, command in commands:
            click.echo(f"  {field} = {one_line(command, 2000)}", err=True)
        if str(file) == "-" or not sys.stdin.isatty():
            raise click.UsageError(
                "nothing was imported: a settings file may not choose a command to run without consent; "
                "read the command(s) above, then run again with --allow-commands"
            )
        if not click.confirm("Import them, so bounceback runs them?", default=False, err=True):
            click.echo("nothing was imported", err=True)
            raise SystemExit(1)
        allow_commands = True
    changes = store.import_document(document, replace=replace, source=name, allow_commands=allow_commands)
    if as_json:
        echo_json([c.to_plain() for c in changes])
        return
    click.echo(f"imported {name}: {len(changes)} change(s)")
    for change in changes:
        click.echo(f"  {change.field}: {change.text('old')} -> {change.text('new')} (change #{change.id})")
