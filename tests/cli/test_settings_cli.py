"""``bounceback settings``, run as a real command in separate processes."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bounceback.core.settings._source import SCHEMA
from bounceback.stores import open_home
from tests.stores.sqlite_helpers import corrupt, exclusive_lock, snapshot


def bb(*args: str, home: Path | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -m bounceback ARGS`` (with ``--home`` when given) and return the finished process."""
    prefix = ["--home", str(home)] if home is not None else []
    return subprocess.run(
        [sys.executable, "-m", "bounceback", *prefix, *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
        check=False,
    )


def ok(*args: str, home: Path | None = None, stdin: str | None = None) -> str:
    result = bb(*args, home=home, stdin=stdin)
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result.stdout


def ok_json(*args: str, home: Path | None = None) -> Any:
    return json.loads(ok(*args, "--json", home=home))


@pytest.fixture
def db(home: Path) -> Path:
    return home / "bounceback.db"


def test_help_lists_every_settings_command() -> None:
    out = ok("settings", "--help")
    for command in ("list", "get", "set", "reset", "history", "undo", "export", "import"):
        assert command in out
    assert "Usage: bounceback" in ok("--help")


def test_list_shows_value_default_source_unit_and_help(home: Path) -> None:
    ok("settings", "set", "retry.max_attempts", "7")
    ok("settings", "set", "retry.max_attempts", "2", "--op", "fetch")
    table = ok("settings", "list")
    for key in SCHEMA:
        assert key in table
    assert "Attempts in all, the first included." in table
    assert "operations with their own values: fetch" in table
    data = ok_json("settings", "list", "--op", "fetch")
    rows = {row["key"]: row for row in data["settings"]}
    assert list(rows) == list(SCHEMA)
    attempts = rows["retry.max_attempts"]
    assert (attempts["value"], attempts["source"], attempts["default"], attempts["unit"]) == (
        2,
        "operation",
        5,
        "attempts",
    )
    assert rows["retry.initial_delay"]["text"] == "200ms"
    assert rows["retry.deadline"]["value"] == 30.0
    assert data["operations"] == ["fetch"]
    changed = ok_json("settings", "list", "--changed")
    assert [row["key"] for row in changed["settings"]] == ["retry.max_attempts"]


def test_set_get_reset_persist_across_processes(home: Path) -> None:
    assert (
        ok("settings", "set", "retry.initial_delay", "250ms")
        == "retry.initial_delay: (not set) -> 250ms (change #1)\n"
    )
    assert ok("settings", "get", "retry.initial_delay") == "250ms\n"
    ok("settings", "set", "operations.api.v2.retry.deadline", "off")
    got = ok_json("settings", "get", "retry.deadline", "--op", "api.v2")
    assert (got["value"], got["source"], got["operation"]) == (None, "operation", "api.v2")
    assert "already 250ms" in ok("settings", "set", "retry.initial_delay", "0.25")
    out = ok("settings", "reset", "retry.initial_delay")
    assert out == "retry.initial_delay: 250ms -> 200ms (default; change #3)\n"
    assert "was not set" in ok("settings", "reset", "retry.initial_delay")
    assert ok("settings", "get", "retry.initial_delay") == "200ms\n"


def test_the_home_option_and_the_environment_pick_the_database(tmp_path: Path, home: Path) -> None:
    other = tmp_path / "elsewhere"
    ok("settings", "set", "retry.max_attempts", "3", home=other)
    assert (other / "bounceback.db").exists()
    assert ok("settings", "get", "retry.max_attempts") == "5\n"  # $BOUNCEBACK_HOME is untouched
    assert ok("settings", "get", "retry.max_attempts", home=other) == "3\n"


REFUSALS = [
    (["retry.max_attempts", "0"], ["retry.max_attempts", "'0'", "from 1 to 1000000"]),
    (["retry.max_attempts", "lots"], ["retry.max_attempts", "'lots'", "whole number"]),
    (["retry.multiplier", "nan"], ["retry.multiplier", "'nan'", "finite number from 1 to 1000"]),
    (["retry.multiplier", "inf"], ["retry.multiplier", "'inf'", "finite number"]),
    (["retry.initial_delay", "-1"], ["retry.initial_delay", "'-1'", "from 0s up to 3650d"]),
    (["retry.initial_delay", "1y"], ["retry.initial_delay", "'1y'", "duration"]),
    (["retry.max_delay", "100ms"], ["retry.max_delay", "'100ms'", ">= retry.initial_delay (200ms)"]),
    (["breaker.failure_rate", "120"], ["breaker.failure_rate", "'120'", "percentage from 1 to 100"]),
    (["breaker.enabled", "perhaps"], ["breaker.enabled", "'perhaps'", "true or false"]),
    (["retry.jitter", "ful"], ["retry.jitter", "'ful'", "one of none, full", "did you mean 'full'?"]),
    (["retry.max_atempts", "3"], ["'retry.max_atempts'", "did you mean 'retry.max_attempts'?"]),
    (["store.backend", "redis", "--op", "fetch"], ["operations.fetch.store.backend", "drop --op"]),
    (["store.redis_url", "http://x"], ["store.redis_url", "'http://x'", "redis://"]),
    (["run.permanent_codes", "75,126"], ["run.permanent_codes", "75 is in both"]),
    (["display.refresh", "5ms"], ["display.refresh", "'5ms'", "from 20ms up to 1s"]),
    (["retry.max_attempts", "3", "--op", " bad"], ["operation", "' bad'", "surrounding spaces"]),
]


@pytest.mark.parametrize(("args", "fragments"), REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_every_refusal_exits_2_names_key_value_and_range_and_writes_nothing(
    db: Path, args: list[str], fragments: list[str]
) -> None:
    ok("settings", "set", "retry.max_attempts", "4")
    before = snapshot(db)
    result = bb("settings", "set", *args)
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert result.stderr.startswith("error: ")
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stderr
    assert snapshot(db) == before


def test_history_and_undo(home: Path) -> None:
    ok("settings", "set", "retry.max_attempts", "7")
    ok("settings", "set", "retry.max_attempts", "8", "--op", "fetch")
    history = ok_json("settings", "history")
    assert [(h["id"], h["key"], h["operation"], h["old"], h["new"]) for h in history] == [
        (2, "retry.max_attempts", "fetch", None, 8),
        (1, "retry.max_attempts", None, None, 7),
    ]
    assert all(h["who"].split("/")[-1].isdigit() and "@" in h["who"] for h in history)
    table = ok("settings", "history")
    assert "operations.fetch.retry.max_attempts" in table
    assert "(not set)" in table
    assert ok("settings", "undo", "2").startswith(
        "undid #2: operations.fetch.retry.max_attempts: 8 -> (not set)"
    )
    assert ok("settings", "get", "retry.max_attempts", "--op", "fetch") == "7\n"
    assert [h["undoes"] for h in ok_json("settings", "history", "--limit", "1")] == [2]
    refused = bb("settings", "undo", "42")
    assert refused.returncode == 2
    assert "id: got 42" in refused.stderr


def test_undo_without_an_id_walks_back_through_the_last_changes(home: Path) -> None:
    ok("settings", "set", "retry.max_attempts", "7")
    ok("settings", "set", "retry.initial_delay", "1s")
    assert ok("settings", "undo").startswith("undid #2: retry.initial_delay: 1s -> (not set)")
    assert ok("settings", "undo").startswith("undid #1: retry.max_attempts: 7 -> (not set)")
    nothing = bb("settings", "undo")
    assert nothing.returncode == 2 and "every recorded change is undone already" in nothing.stderr
    assert ok("settings", "get", "retry.max_attempts") == "5\n"


def test_the_redis_backend_needs_its_url_first(home: Path) -> None:
    alone = bb("settings", "set", "store.backend", "redis")
    assert alone.returncode == 2 and "Traceback" not in alone.stderr
    assert "error: store.backend: got 'redis'" in alone.stderr and "store.redis_url" in alone.stderr
    assert ok("settings", "get", "store.backend") == "sqlite\n"  # nothing saved
    assert ok_json("status")["operations"] == []  # status still works
    ok("settings", "set", "store.redis_url", "redis://127.0.0.1:6399/0")
    ok("settings", "set", "store.backend", "redis")
    dropped = bb("settings", "reset", "store.redis_url")
    assert dropped.returncode == 2 and "set store.backend to sqlite first" in dropped.stderr


def test_export_and_import_round_trip_between_homes(tmp_path: Path, home: Path) -> None:
    ok("settings", "set", "retry.initial_delay", "250ms")
    ok("settings", "set", "retry.deadline", "off", "--op", "odd name")
    ok("settings", "set", "breaker.failure_rate", "25")
    toml_text = ok("settings", "export")
    assert "initial_delay = 0.25  # 250ms" in toml_text
    assert '[operations."odd name".retry]' in toml_text
    json_text = ok("settings", "export", "--format", "json")
    (tmp_path / "s.toml").write_text(toml_text)
    (tmp_path / "s.json").write_text(json_text)
    for name in ("s.toml", "s.json"):
        other = tmp_path / f"home-{name}"
        out = ok("settings", "import", str(tmp_path / name), home=other)
        assert out.startswith(f"imported {tmp_path / name}: 3 change(s)")
        assert ok("settings", "export", "--format", "json", home=other) == json_text
    # stdin works too, with the format given.
    third = tmp_path / "third"
    ok("settings", "import", "-", "--format", "json", home=third, stdin=json_text)
    assert ok("settings", "export", "--format", "json", home=third) == json_text


def test_an_import_with_bad_entries_lists_every_problem_and_imports_nothing(tmp_path: Path, db: Path) -> None:
    ok("settings", "set", "retry.max_attempts", "4")
    before = snapshot(db)
    bad = tmp_path / "bad.toml"
    bad.write_text(
        textwrap.dedent(
            """
            [retry]
            max_attempts = 9
            multiplier = nan
            jitter = "wobbly"

            [breaker]
            failure_ratio = 20

            [operations.fetch.display]
            progress = "rich"
            """
        )
    )
    result = bb("settings", "import", str(bad))
    assert result.returncode == 2
    assert "nothing was imported" in result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 4, result.stderr
    assert any("retry.multiplier: got nan" in p for p in problems)
    assert any("retry.jitter: got 'wobbly'" in p for p in problems)
    assert any("did you mean 'breaker.failure_rate'?" in p for p in problems)
    assert any("operations.fetch.display.progress" in p for p in problems)
    assert snapshot(db) == before
    syntax = tmp_path / "broken.toml"
    syntax.write_text("[retry\n")
    result = bb("settings", "import", str(syntax))
    assert result.returncode == 2
    assert "valid TOML document" in result.stderr


def test_import_replace_resets_the_rest(tmp_path: Path) -> None:
    ok("settings", "set", "retry.max_attempts", "4")
    only = tmp_path / "only.json"
    only.write_text('{"breaker": {"window": 50}}')
    changes = ok_json("settings", "import", str(only), "--replace")
    assert sorted(c["key"] for c in changes) == ["breaker.window", "retry.max_attempts"]
    assert ok_json("settings", "list", "--changed")["settings"][0]["key"] == "breaker.window"


def test_a_corrupt_database_is_a_clear_error(db: Path) -> None:
    corrupt(db)
    for args in (["list"], ["set", "retry.max_attempts", "3"], ["history"]):
        result = bb("settings", *args)
        assert result.returncode == 2
        assert "corrupt or not a bounceback database" in result.stderr
        assert "Traceback" not in result.stderr


def test_a_database_from_a_newer_bounceback_is_a_clear_error(db: Path) -> None:
    conn = open_home(db)
    conn.execute("INSERT INTO schema_migrations VALUES ('settings', 5, 0)")
    conn.close()
    result = bb("settings", "set", "retry.max_attempts", "3")
    assert result.returncode == 2
    assert "newer bounceback" in result.stderr
    assert "upgrade bounceback" in result.stderr


def test_a_locked_database_is_a_clear_error_after_the_timeout(db: Path) -> None:
    ok("settings", "set", "retry.max_attempts", "4")
    with exclusive_lock(db):
        started = time.monotonic()
        result = bb("--timeout", "0.2", "settings", "set", "retry.max_attempts", "3")
        assert time.monotonic() - started < 10
    assert result.returncode == 2
    assert "another process held the database lock" in result.stderr
    assert ok("settings", "get", "retry.max_attempts") == "4\n"


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A folder another user can enter (pytest's own temporary folders are private to root)."""
    path = Path(tempfile.mkdtemp(prefix="bb-ro-"))
    path.chmod(0o755)
    yield path
    for p in (path, *path.iterdir()):
        p.chmod(stat.S_IRWXU | p.stat().st_mode)
    shutil.rmtree(path)


READ_ONLY_RUN = """
import os, sys
from bounceback.cli import cli, main  # cli: every command is loaded before the privileges go
if os.geteuid() == 0:
    # root ignores file permissions: drop to nobody after the imports, as a locked-down service would run
    os.setgid(65534)
    os.setuid(65534)
main(sys.argv[1:])
"""


def test_a_read_only_database_is_a_clear_error(shared_dir: Path) -> None:
    ok("settings", "set", "retry.max_attempts", "4", home=shared_dir)
    db = shared_dir / "bounceback.db"
    before = snapshot(db)
    if os.geteuid() != 0:
        db.chmod(0o444)
        shared_dir.chmod(0o555)
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            READ_ONLY_RUN,
            "--home",
            str(shared_dir),
            "settings",
            "set",
            "retry.max_attempts",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result
    assert "read-only" in result.stderr
    assert "--home" in result.stderr  # says how to fix it
    shared_dir.chmod(0o755)
    db.chmod(0o644)
    assert snapshot(db) == before


def test_a_running_policy_sees_a_cli_change_within_a_second(home: Path) -> None:
    ok("settings", "set", "retry.max_attempts", "4")
    program = textwrap.dedent(
        """
        import time
        from bounceback import Policy
        from bounceback.stores import SqliteSettings

        policy = Policy("probe", settings=SqliteSettings())
        print("ready", policy.config.attempts, flush=True)
        calls = 0
        end = time.monotonic() + 30
        while time.monotonic() < end:
            calls += policy.call(lambda: 1)  # the protected calls keep succeeding meanwhile
            if policy.config.attempts != 4:
                print("seen", policy.config.attempts, time.time(), calls > 0, flush=True)
                break
            time.sleep(0.005)
        """
    )
    runner = subprocess.Popen(
        [sys.executable, "-c", program], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert runner.stdout is not None
        assert runner.stdout.readline().split() == ["ready", "4"]
        ok("settings", "set", "retry.max_attempts", "9", "--op", "probe")
        changed_at = time.time()
        out, err = runner.communicate(timeout=60)
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.communicate()
    word, attempts, seen_at, called = out.split()
    assert (word, attempts, called) == ("seen", "9", "True"), err
    assert float(seen_at) - changed_at < 1.0


def test_python_dash_m_and_the_console_script_agree(home: Path) -> None:
    script = shutil.which("bounceback")
    assert script is not None, "the console script is installed with the package"
    ok("settings", "set", "retry.max_attempts", "6")
    result = subprocess.run(
        [script, "settings", "get", "retry.max_attempts"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout == "6\n"


def test_the_settings_tables_hold_json_values(db: Path) -> None:
    ok("settings", "set", "run.transient_codes", "75,69")
    conn = sqlite3.connect(db)
    assert conn.execute("SELECT value FROM settings_values").fetchall() == [("[69, 75]",)]
    conn.close()
