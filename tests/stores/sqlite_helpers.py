"""Helpers for tests that need real separate processes around a SQLite file."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_HOLDER = """
import sqlite3, sys
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
# EXCLUSIVE locking mode keeps the lock after the first write until the connection closes, so even
# WAL readers are shut out: the harshest "locked" a bounceback process can meet.
conn.execute("PRAGMA locking_mode = EXCLUSIVE")
conn.execute("BEGIN EXCLUSIVE")
for statement in sys.argv[2:]:
    conn.execute(statement)
conn.execute("COMMIT")
print("held", flush=True)
sys.stdin.read()
"""


@contextmanager
def exclusive_lock(path: Path, *statements: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` in another process (after running ``statements``) for the block."""
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(path), *(statements or ("CREATE TABLE IF NOT EXISTS held (x)",))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        line = holder.stdout.readline().strip()
        assert line == "held", holder.communicate(timeout=30)
        yield
    finally:
        holder.communicate("", timeout=30)


def run_python(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter: a real, separate process."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def snapshot(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the settings tables, read through a separate plain connection."""
    conn = sqlite3.connect(path)
    try:
        return {
            table: conn.execute(f"SELECT * FROM {table} ORDER BY rowid").fetchall()
            for table in ("settings_values", "settings_history")
        }
    finally:
        conn.close()


def corrupt(path: Path) -> None:
    """Overwrite ``path`` (and drop its WAL files) with bytes that are not a database."""
    for extra in (Path(f"{path}-wal"), Path(f"{path}-shm")):
        extra.unlink(missing_ok=True)
    path.write_bytes(b"definitely not SQLite " * 512)
