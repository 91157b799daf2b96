"""The bounceback home: where it lives, connections, error messages and per-component migrations."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from bounceback import ConfigError, StoreError
from bounceback.stores import _home
from bounceback.stores._home import (
    connect,
    database_path,
    explain,
    home_dir,
    migrate,
    open_home,
    register_migrations,
    registered_migrations,
    schema_versions,
    transaction,
)


@pytest.fixture
def scratch_registry() -> Iterator[None]:
    """Let a test register components without leaving them behind for other tests."""
    saved = dict(_home._registry)
    yield
    _home._registry.clear()
    _home._registry.update(saved)


# -- where the home is -------------------------------------------------------------------------------


def test_bounceback_home_wins_over_everything() -> None:
    env = {"BOUNCEBACK_HOME": "~/bb", "XDG_DATA_HOME": "/data", "HOME": "/home/ann"}
    assert home_dir(env, "linux") == Path("~/bb").expanduser()
    assert home_dir(env, "darwin") == Path("~/bb").expanduser()


@pytest.mark.parametrize(
    ("env", "platform", "expected"),
    [
        ({"XDG_DATA_HOME": "/data", "HOME": "/home/ann"}, "linux", "/data/bounceback"),
        ({"XDG_DATA_HOME": "relative", "HOME": "/home/ann"}, "linux", "/home/ann/.local/share/bounceback"),
        ({"HOME": "/home/ann"}, "linux", "/home/ann/.local/share/bounceback"),
        ({"HOME": "/Users/ann"}, "darwin", "/Users/ann/Library/Application Support/bounceback"),
        ({"HOME": "/h", "LOCALAPPDATA": "/w/Local", "APPDATA": "/w/Roaming"}, "win32", "/w/Local/bounceback"),
        ({"HOME": "/h", "APPDATA": "/w/Roaming"}, "win32", "/w/Roaming/bounceback"),
        ({"HOME": "/h"}, "win32", "/h/AppData/Local/bounceback"),
    ],
)
def test_platform_user_data_directory(env: dict[str, str], platform: str, expected: str) -> None:
    assert home_dir(env, platform) == Path(expected)


def test_database_path_is_in_the_home(home: Path) -> None:
    assert database_path() == home / "bounceback.db"
    assert database_path("/srv/bb") == Path("/srv/bb/bounceback.db")


# -- connections ---------------------------------------------------------------------------------------


def test_connect_creates_the_folder_and_sets_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "bounceback.db"
    conn = connect(path, timeout=2.5)
    try:
        assert path.exists()
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 2500
        assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert conn.isolation_level is None  # transactions are explicit
    finally:
        conn.close()


def test_connect_without_create_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="cannot be opened"):
        connect(tmp_path / "missing.db", create=False)


def test_a_corrupt_file_is_a_clear_store_error(tmp_path: Path) -> None:
    path = tmp_path / "bounceback.db"
    path.write_bytes(b"this is not a database at all" * 200)
    with pytest.raises(StoreError) as info:
        open_home(path)
    assert info.value.store == f"sqlite:{path}"
    assert "corrupt or not a bounceback database" in str(info.value)
    assert "move it aside" in str(info.value)


def test_explain_names_the_cause_and_the_fix() -> None:
    assert "read-only" in explain(sqlite3.OperationalError("attempt to write a readonly database"))
    assert "lock" in explain(sqlite3.OperationalError("database is locked"))
    assert "corrupt" in explain(sqlite3.DatabaseError("database disk image is malformed"))
    assert "disk is full" in explain(sqlite3.OperationalError("database or disk is full"))
    assert explain(sqlite3.OperationalError("something else")) == "something else"


def test_transaction_rolls_back_on_error_and_commits_otherwise(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    conn = connect(path)
    conn.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(ValueError, match="stop"), transaction(conn, path, "insert"):
        conn.execute("INSERT INTO t VALUES (1)")
        raise ValueError("stop")
    with transaction(conn, path, "insert"):
        conn.execute("INSERT INTO t VALUES (2)")
    assert conn.execute("SELECT x FROM t").fetchall() == [(2,)]
    with pytest.raises(StoreError, match="could not insert"), transaction(conn, path, "insert"):
        conn.execute("INSERT INTO missing VALUES (3)")
    assert not conn.in_transaction
    conn.close()


def test_a_locked_database_gives_a_store_error_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "bounceback.db"
    open_home(path).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                """
                import sqlite3, sys
                conn = sqlite3.connect(sys.argv[1], isolation_level=None)
                conn.execute("PRAGMA locking_mode = EXCLUSIVE")
                conn.execute("BEGIN EXCLUSIVE")
                conn.execute("CREATE TABLE held (x)")
                conn.execute("COMMIT")
                print("held", flush=True)
                sys.stdin.read()
                """
            ),
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(StoreError, match="another process held the database lock"):
            open_home(path, timeout=0.1)
    finally:
        holder.communicate("", timeout=30)


# -- migrations ---------------------------------------------------------------------------------------


def test_registered_migrations_are_applied_once_each_in_order(tmp_path: Path, scratch_registry: None) -> None:
    register_migrations("gadgets", ["CREATE TABLE gadgets (id INTEGER PRIMARY KEY, name TEXT)"])
    path = tmp_path / "bounceback.db"
    conn = open_home(path)
    assert schema_versions(conn)["gadgets"] == 1
    conn.execute("INSERT INTO gadgets (name) VALUES ('a')")
    conn.close()
    # A later release appends a second script: only that one runs, and the data stays.
    register_migrations(
        "gadgets",
        [
            "CREATE TABLE gadgets (id INTEGER PRIMARY KEY, name TEXT)",
            "ALTER TABLE gadgets ADD COLUMN colour TEXT DEFAULT 'red'; CREATE INDEX gadgets_name ON gadgets (name)",
        ],
    )
    conn = open_home(path)
    assert schema_versions(conn)["gadgets"] == 2
    assert conn.execute("SELECT name, colour FROM gadgets").fetchall() == [("a", "red")]
    rows = conn.execute(
        "SELECT version, applied_at FROM schema_migrations WHERE component = 'gadgets' ORDER BY version"
    ).fetchall()
    assert [r[0] for r in rows] == [1, 2]
    assert all(r[1] > 1_600_000_000 for r in rows)
    conn.close()
    # Opening again changes nothing.
    conn = open_home(path)
    assert (
        conn.execute("SELECT count(*) FROM schema_migrations WHERE component = 'gadgets'").fetchone()[0] == 2
    )
    conn.close()


def test_scripts_with_semicolons_inside_strings_and_triggers_are_split_correctly(
    tmp_path: Path, scratch_registry: None
) -> None:
    register_migrations(
        "audit",
        [
            """
            -- a comment; with a semicolon
            CREATE TABLE audit_items (id INTEGER PRIMARY KEY, note TEXT DEFAULT 'a; b');
            CREATE TABLE audit_log (item INTEGER, what TEXT);
            CREATE TRIGGER audit_items_insert AFTER INSERT ON audit_items BEGIN
                INSERT INTO audit_log VALUES (new.id, 'inserted; really');
                INSERT INTO audit_log VALUES (new.id, 'twice');
            END;
            """
        ],
    )
    conn = open_home(tmp_path / "bounceback.db", timeout=1)
    conn.execute("INSERT INTO audit_items DEFAULT VALUES")
    assert conn.execute("SELECT note FROM audit_items").fetchone() == ("a; b",)
    assert conn.execute("SELECT what FROM audit_log").fetchall() == [("inserted; really",), ("twice",)]
    conn.close()


def test_a_failing_script_leaves_nothing_behind(tmp_path: Path, scratch_registry: None) -> None:
    register_migrations("broken", ["CREATE TABLE broken_a (x); CREATE TABLE broken_b (y; "])
    path = tmp_path / "bounceback.db"
    with pytest.raises(StoreError, match="apply migration broken 1"):
        open_home(path)
    conn = connect(path)
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert "broken_a" not in tables
    assert "broken" not in schema_versions(conn)
    conn.close()


def test_released_scripts_cannot_change_and_names_are_checked(scratch_registry: None) -> None:
    register_migrations("things", ["CREATE TABLE things (x)"])
    register_migrations("things", ["CREATE TABLE things (x)"])  # the same again is harmless
    with pytest.raises(ConfigError, match="must never change"):
        register_migrations("things", ["CREATE TABLE things (x, y)"])
    with pytest.raises(ConfigError, match="component"):
        register_migrations("Bad Name", ["CREATE TABLE t (x)"])
    with pytest.raises(ConfigError, match="scripts"):
        register_migrations("empty", [])
    assert registered_migrations()["things"] == ("CREATE TABLE things (x)",)


def test_a_database_from_a_newer_bounceback_is_refused(tmp_path: Path, scratch_registry: None) -> None:
    register_migrations("widgets", ["CREATE TABLE widgets (x)"])
    path = tmp_path / "bounceback.db"
    conn = open_home(path)
    conn.execute("INSERT INTO schema_migrations VALUES ('widgets', 7, 0)")
    conn.close()
    with pytest.raises(StoreError) as info:
        open_home(path)
    message = str(info.value)
    assert "newer bounceback" in message
    assert "widgets schema version 7" in message
    assert "upgrade" in message


def test_migrate_refuses_an_unregistered_component(tmp_path: Path) -> None:
    conn = connect(tmp_path / "x.db")
    with pytest.raises(ConfigError, match="register_migrations"):
        migrate(conn, tmp_path / "x.db", ["never-registered"])
    conn.close()


def test_an_up_to_date_read_only_database_opens_without_writing(tmp_path: Path) -> None:
    path = tmp_path / "bounceback.db"
    open_home(path).close()
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True, isolation_level=None)
    # migrate() only reads when nothing is missing, so a read-only connection is enough.
    assert migrate(conn, path)["settings"] == len(registered_migrations()["settings"])
    conn.close()


def test_processes_opening_a_new_database_at_once_apply_each_migration_once(tmp_path: Path) -> None:
    path = tmp_path / "bounceback.db"
    code = """
        import sys
        from bounceback.stores import open_home, register_migrations
        register_migrations("race", ["CREATE TABLE race_a (x)", "CREATE TABLE race_b (y)"])
        open_home(sys.argv[1]).close()
        print("ok")
    """
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code), str(path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    outputs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    conn = connect(path)
    rows = conn.execute(
        "SELECT component, version, count(*) FROM schema_migrations GROUP BY component, version"
    ).fetchall()
    assert ("race", 1, 1) in rows
    assert ("race", 2, 1) in rows
    assert all(count == 1 for _, _, count in rows)
    conn.close()
