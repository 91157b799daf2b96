"""Looking inside a home database after a fault: snapshots to compare, and consistency checks row by row."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from bounceback.core.settings._source import SCHEMA

__all__ = ["consistency_problems", "snapshot", "stored_data"]

_STATES = {"closed", "open", "half_open", "forced_open", "disabled"}


def _connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{path.absolute().as_uri()}?mode=ro", uri=True, timeout=10)


def snapshot(path: Path, *, skip: tuple[str, ...] = ()) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (sorted), for "nothing changed" comparisons."""
    if not path.exists():
        return {}
    conn = _connect(path)
    try:
        tables = [
            r[0]
            for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            if r[0] not in skip
        ]
        return {t: sorted(conn.execute(f'SELECT * FROM "{t}"').fetchall(), key=repr) for t in tables}
    finally:
        conn.close()


def stored_data(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """The rows people and programs stored: :func:`snapshot` without empty tables and schema bookkeeping.

    Opening a store may create its (empty) tables; that changes the schema, never what was stored.
    """
    skip = ("schema_migrations", "sqlite_sequence")
    return {table: rows for table, rows in snapshot(path, skip=skip).items() if rows}


def consistency_problems(path: Path) -> list[str]:
    """What is wrong with the database, row by row (an empty list when it is consistent).

    Checks: SQLite's own ``integrity_check`` and ``foreign_key_check``; journal attempts belong to a run
    and runs have sane counts; every settings value is the last word of its history; tickets are whole
    JSON, resolved exactly when they carry a resolution, and no give-up (run) has two tickets; breaker rows
    hold a known state with a version.
    """
    conn = _connect(path)
    problems: list[str] = []
    try:
        integrity = conn.execute("PRAGMA integrity_check").fetchall()
        if integrity != [("ok",)]:
            problems.append(f"integrity_check: {integrity[:5]}")
        fk = conn.execute("PRAGMA foreign_key_check").fetchall()
        if fk:
            problems.append(f"foreign_key_check: {fk[:5]}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "journal_runs" in tables:
            problems += _journal(conn)
        if "settings_values" in tables:
            problems += _settings(conn)
        if "tickets" in tables:
            problems += _tickets(conn)
        if "breaker_state" in tables:
            problems += _breakers(conn)
    finally:
        conn.close()
    return problems


def _journal(conn: sqlite3.Connection) -> list[str]:
    out = []
    orphans = conn.execute(
        "SELECT count(*) FROM journal_attempts a LEFT JOIN journal_runs r USING (run_id) WHERE r.run_id IS NULL"
    ).fetchone()[0]
    if orphans:
        out.append(f"journal: {orphans} attempt(s) without a run")
    bad = conn.execute(
        # attempts 0 only while no outcome: a `bounceback run` command announced at its first attempt.
        "SELECT run_id FROM journal_runs WHERE attempts < 0 OR (attempts = 0 AND outcome IS NOT NULL) "
        "OR (outcome IS NOT NULL AND ended_at IS NULL) "
        "OR outcome NOT IN ('recovered', 'gave-up') AND outcome IS NOT NULL"
    ).fetchall()
    if bad:
        out.append(f"journal: runs with impossible fields: {bad[:5]}")
    short = conn.execute(
        "SELECT r.run_id FROM journal_runs r WHERE r.outcome = 'recovered' AND NOT EXISTS "
        "(SELECT 1 FROM journal_attempts a WHERE a.run_id = r.run_id AND a.outcome = 'succeeded')"
    ).fetchall()
    if short:
        out.append(f"journal: recovered runs without their successful attempt: {short[:5]}")
    return out


def _settings(conn: sqlite3.Connection) -> list[str]:
    out = []
    last: dict[tuple[str, str], str | None] = {}
    for operation, key, new in conn.execute("SELECT operation, key, new FROM settings_history ORDER BY id"):
        last[(operation, key)] = new
    stored = {
        (op, key): value
        for op, key, value in conn.execute("SELECT operation, key, value FROM settings_values")
    }
    replayed = {k: v for k, v in last.items() if v is not None}
    if stored != replayed:
        diff = set(stored.items()) ^ set(replayed.items())
        out.append(f"settings: values differ from the history's last word: {sorted(diff)[:5]}")
    for (_op, key), value in stored.items():
        if key not in SCHEMA:
            out.append(f"settings: unknown key {key!r}")
            continue
        try:
            json.loads(value)
        except ValueError:
            out.append(f"settings: {key} holds half-written JSON {value!r}")
    return out


def _tickets(conn: sqlite3.Connection) -> list[str]:
    out = []
    runs: dict[str, str] = {}
    for ticket_id, status, body, resolution, choice in conn.execute(
        "SELECT id, status, body, resolution, choice FROM tickets"
    ):
        try:
            data = json.loads(body)
        except ValueError:
            out.append(f"tickets: {ticket_id} has a half-written body")
            continue
        if (status == "resolved") != (resolution is not None and choice is not None):
            out.append(f"tickets: {ticket_id} is {status} with resolution={resolution is not None}")
        run = data.get("run_id")
        if run:
            if run in runs:
                out.append(f"tickets: run {run} has two tickets ({runs[run]}, {ticket_id})")
            runs[run] = ticket_id
    return out


def _breakers(conn: sqlite3.Connection) -> list[str]:
    out = []
    for key, state, version in conn.execute("SELECT key, state, version FROM breaker_state"):
        if state not in _STATES or not isinstance(version, int) or version < 0:
            out.append(f"breakers: {key} holds state {state!r} version {version!r}")
    return out
