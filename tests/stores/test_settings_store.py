"""SqliteSettings on real SQLite files, with real separate processes."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounceback import ConfigError, EventBus, SettingsChanged, StoreError
from bounceback.core.settings._source import (
    SettingsLayers,
    SettingsSource,
    layers_to_document,
    parse_document,
)
from bounceback.stores import SqliteSettings, open_home
from bounceback.stores._home import registered_migrations
from bounceback.testing import FakeClock, RecordingSink
from tests.core.settings.settings_strategies import valid_layers
from tests.stores.sqlite_helpers import corrupt, exclusive_lock, run_python, snapshot

WHO = re.compile(r"^[^@\s]+@[^/\s]+/\d+$")


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bounceback.db"


@pytest.fixture
def store(db: Path) -> Any:
    s = SqliteSettings(db)
    yield s
    s.close()


def wait_until(predicate: Any, seconds: float) -> bool:
    """Poll ``predicate`` for up to ``seconds`` (real time: another process is involved)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return bool(predicate())


# -- basic reads and writes ---------------------------------------------------------------------------


def test_set_get_reset_with_sources(store: SqliteSettings) -> None:
    assert isinstance(store, SettingsSource)
    assert store.get("retry.max_attempts").source == "default"
    store.set("retry.max_attempts", "7")
    store.set("retry.max_attempts", 2, operation="fetch")
    store.set("operations.upload.retry.initial_delay", "1s")
    assert (store.get("retry.max_attempts").value, store.get("retry.max_attempts").source) == (7, "global")
    fetch = store.get("retry.max_attempts", "fetch")
    assert (fetch.value, fetch.source) == (2, "operation")
    assert store.get("operations.upload.retry.initial_delay").value == 1.0
    assert store.effective("other")["retry.max_attempts"] == 7
    store.reset("retry.max_attempts", "fetch")
    assert store.get("retry.max_attempts", "fetch").source == "global"
    assert store.reset("retry.max_attempts", "fetch") is None  # not set: nothing to do, no history
    assert store.set("retry.max_attempts", 7) is None  # same value: no change recorded
    assert len(store.history()) == 4


def test_values_persist_for_a_new_instance(db: Path) -> None:
    with SqliteSettings(db) as first:
        first.set("retry.deadline", "off", operation="fetch")
        first.set("retry.deadline", "20s")
        first.set("run.transient_codes", "75,69")
    with SqliteSettings(db) as second:
        assert second.effective("fetch")["retry.deadline"] is None
        assert second.effective()["retry.deadline"] == 20.0
        assert second.effective()["run.transient_codes"] == (69, 75)


def test_values_persist_across_processes(db: Path, store: SqliteSettings) -> None:
    result = run_python(
        """
        import sys
        from bounceback.stores import SqliteSettings
        with SqliteSettings(sys.argv[1]) as s:
            s.set("breaker.failure_rate", "25%")
            s.set("retry.max_attempts", "3", operation="payments")
        """,
        str(db),
    )
    assert result.returncode == 0, result.stderr
    assert store.get("breaker.failure_rate").value == 25.0
    assert store.get("retry.max_attempts", "payments").value == 3
    store.set("retry.multiplier", "3.5")
    result = run_python(
        """
        import sys, json
        from bounceback.stores import SqliteSettings
        with SqliteSettings(sys.argv[1]) as s:
            print(json.dumps(s.effective("payments")["retry.multiplier"]))
        """,
        str(db),
    )
    assert result.stdout.strip() == "3.5", result.stderr


# -- history and undo ----------------------------------------------------------------------------------


def test_history_records_who_when_old_new_and_action(db: Path) -> None:
    clock = FakeClock(wall_start=1_900_000_000.0)
    with SqliteSettings(db, clock=clock) as s:
        s.set("retry.max_attempts", 7)
        clock.advance(60)
        s.set("retry.max_attempts", 9, operation="fetch")
        clock.advance(60)
        s.reset("retry.max_attempts")
        history = s.history()
    assert [c.id for c in history] == [3, 2, 1]
    reset, op_set, first = history
    assert (first.at, first.action, first.key, first.operation) == (
        1_900_000_000.0,
        "set",
        "retry.max_attempts",
        None,
    )
    assert (first.old_set, first.new_set, first.new) == (False, True, 7)
    assert (op_set.at, op_set.operation, op_set.field) == (
        1_900_000_060.0,
        "fetch",
        "operations.fetch.retry.max_attempts",
    )
    assert (reset.action, reset.old, reset.new_set) == ("reset", 7, False)
    assert all(WHO.match(c.who) and c.who.endswith(f"/{os.getpid()}") for c in history)
    assert first.describe().startswith("#1 retry.max_attempts: (not set) -> 7 (set by ")
    with SqliteSettings(db) as s:
        assert [c.id for c in s.history(operation="fetch")] == [2]
        assert [c.id for c in s.history(key="retry.max_attempts", limit=1)] == [3]


def test_undo_restores_the_old_value_and_is_itself_undoable(store: SqliteSettings) -> None:
    store.set("retry.initial_delay", "1s")
    change = store.set("retry.initial_delay", "2s")
    assert change is not None
    undo = store.undo(change.id)
    assert (undo.action, undo.undoes, undo.new) == ("undo", change.id, 1.0)
    assert store.get("retry.initial_delay").value == 1.0
    store.undo(undo.id)
    assert store.get("retry.initial_delay").value == 2.0
    store.undo(change.id)
    # Undoing the very first set removes the value again (back to the default).
    store.undo(1)
    assert store.get("retry.initial_delay").source == "default"


def test_undo_is_refused_when_the_value_changed_since_or_the_id_is_unknown(
    store: SqliteSettings, db: Path
) -> None:
    first = store.set("retry.max_attempts", 7)
    store.set("retry.max_attempts", 8)
    before = snapshot(db)
    assert first is not None
    with pytest.raises(ConfigError, match="changed again since"):
        store.undo(first.id)
    with pytest.raises(ConfigError, match="bounceback settings history"):
        store.undo(999)
    assert snapshot(db) == before


def test_undo_that_would_break_a_combination_is_refused(store: SqliteSettings, db: Path) -> None:
    change = store.set("retry.max_delay", "2m")
    store.set("retry.initial_delay", "1m")
    assert change is not None
    before = snapshot(db)
    with pytest.raises(ConfigError, match=r"retry\.max_delay"):
        store.undo(change.id)  # back to the default 30s, below the 1m initial delay
    assert snapshot(db) == before


# -- refusals write nothing ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "operation"),
    [
        ("retry.max_attempts", "0", None),
        ("retry.max_attempts", "many", None),
        ("retry.multiplier", "nan", None),
        ("retry.multiplier", "inf", "fetch"),
        ("retry.max_delay", "100ms", None),
        ("retry.initial_delay", "-1", "fetch"),
        ("retry.max_atempts", "3", None),
        ("breaker.failure_rate", "150", None),
        ("retry.jitter", "sometimes", None),
        ("store.backend", "redis", "fetch"),
        ("store.redis_url", "http://127.0.0.1:6379", None),
        ("run.permanent_codes", "75", None),
        ("retry.max_attempts", "3", " padded "),
    ],
)
def test_a_refused_set_writes_nothing(
    store: SqliteSettings, db: Path, key: str, value: str, operation: str | None
) -> None:
    store.set("retry.max_attempts", 4)
    store.set("retry.max_attempts", 6, operation="fetch")
    before = snapshot(db)
    with pytest.raises(ConfigError):
        store.set(key, value, operation)
    assert snapshot(db) == before
    assert store.effective("fetch")["retry.max_attempts"] == 6


def test_a_reset_that_would_break_a_combination_is_refused(store: SqliteSettings, db: Path) -> None:
    store.set("retry.max_delay", "2m")
    store.set("retry.initial_delay", "1m")
    before = snapshot(db)
    with pytest.raises(ConfigError, match=r"retry\.max_delay"):
        store.reset("retry.max_delay")
    assert snapshot(db) == before


# -- import and export ------------------------------------------------------------------------------------


def test_an_import_with_bad_entries_imports_nothing_and_lists_every_problem(
    store: SqliteSettings, db: Path
) -> None:
    store.set("retry.max_attempts", 4)
    before = snapshot(db)
    document = {
        "retry": {"max_attempts": 9, "multiplier": "nan", "max_delay": "1ms"},
        "breaker": {"failure_rate": 500},
        "bogus": {"key": 1},
        "operations": {"fetch": {"store": {"backend": "redis"}}},
    }
    with pytest.raises(ConfigError) as info:
        store.import_document(document, source="team.toml")
    notes = getattr(info.value, "__notes__", [])
    assert "team.toml" in str(info.value)
    assert "nothing was imported" in str(info.value)
    fields = [n.split(":")[0] for n in notes]
    assert sorted(fields) == sorted(
        [
            "retry.multiplier",
            "breaker.failure_rate",
            "key",
            "operations.fetch.store.backend",
            "retry.max_delay",
        ]
    )
    assert snapshot(db) == before


def test_import_checks_combinations_against_the_stored_values(store: SqliteSettings) -> None:
    store.set("retry.max_delay", "2m")
    # 1m is above the default max delay but fine with the stored 2m.
    changes = store.import_document({"retry": {"initial_delay": "1m"}})
    assert [c.key for c in changes] == ["retry.initial_delay"]
    assert changes[0].action == "import"
    with pytest.raises(ConfigError, match=r"retry\.initial_delay"):
        store.import_document({"retry": {"initial_delay": "3m"}})


def test_import_replace_resets_what_the_file_does_not_set(store: SqliteSettings) -> None:
    store.set("retry.max_attempts", 4)
    store.set("retry.max_attempts", 2, operation="fetch")
    changes = store.import_document({"breaker": {"window": 50}}, replace=True)
    assert sorted(c.field for c in changes) == [
        "breaker.window",
        "operations.fetch.retry.max_attempts",
        "retry.max_attempts",
    ]
    layers = store.layers()
    assert layers == SettingsLayers({"breaker.window": 50}, {})


def test_export_then_import_into_another_database(tmp_path: Path, store: SqliteSettings) -> None:
    store.set("retry.initial_delay", "250ms")
    store.set("retry.deadline", "off", operation='odd "name" ü')
    store.set("notify.command", "say 'done'")
    for fmt in ("toml", "json"):
        text = store.export(fmt)  # type: ignore[arg-type]
        with SqliteSettings(tmp_path / f"copy-{fmt}.db") as copy:
            # notify.command is set: an import needs consent to choose a command (see the test below).
            copy.import_document(parse_document(text, fmt), allow_commands=True)  # type: ignore[arg-type]
            assert copy.layers() == store.layers()
    assert store.export("toml").startswith("# bounceback settings from ")


def _fresh(tmp_path: Path) -> Path:
    return tmp_path / f"{uuid.uuid4().hex}.db"


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layers=valid_layers(), fmt=st.sampled_from(["toml", "json"]))
def test_any_valid_settings_survive_save_load_export_import(
    tmp_path: Path, layers: SettingsLayers, fmt: Any
) -> None:
    first, second = _fresh(tmp_path), _fresh(tmp_path)
    with SqliteSettings(first) as s:
        s.import_document(layers_to_document(layers), allow_commands=True)
        text = s.export(fmt)
    with SqliteSettings(first) as loaded:
        assert loaded.layers() == layers
        for op in [None, *layers.operations]:
            assert dict(loaded.effective(op)) == layers.effective(op)
    with SqliteSettings(second) as other:
        other.import_document(parse_document(text, fmt), allow_commands=True)
        assert other.layers() == layers
        assert other.export(fmt).split("\n", 2)[2:] == text.split("\n", 2)[2:]  # same but the header


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(layers=valid_layers())
def test_any_valid_settings_survive_one_set_at_a_time(tmp_path: Path, layers: SettingsLayers) -> None:
    path = _fresh(tmp_path)
    with SqliteSettings(path) as s:
        # Some orders pass through an invalid combination (initial delay above max delay): retry the
        # refused steps until every one went in. A valid target is always reachable this way.
        pending = list(layers.entries())
        while pending:
            refused = []
            for op, key, value in pending:
                try:
                    s.set(key, value, op)
                except ConfigError:
                    refused.append((op, key, value))
            assert len(refused) < len(pending), refused
            pending = refused
    with SqliteSettings(path) as loaded:
        assert loaded.layers() == layers


# -- concurrency ------------------------------------------------------------------------------------------

WRITER = """
import sys
from bounceback.stores import SqliteSettings
path, index = sys.argv[1], int(sys.argv[2])
with SqliteSettings(path, timeout=30) as s:
    for j in range(50):
        s.set("retry.max_attempts", index * 1000 + j + 1)
print("done")
"""


def test_concurrent_writers_lose_no_update_and_the_history_is_complete(db: Path) -> None:
    open_home(db).close()
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(db), str(i)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(1, 5)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, outputs
    with SqliteSettings(db) as s:
        history = list(reversed(s.history(limit=None, key="retry.max_attempts")))
        final = s.get("retry.max_attempts").value
    assert len(history) == 200
    assert sorted(c.new for c in history) == sorted(i * 1000 + j + 1 for i in range(1, 5) for j in range(50))
    # Each change saw the value the previous one wrote: no read-modify-write raced.
    assert history[0].old_set is False
    for earlier, later in zip(history, history[1:]):
        assert later.old == earlier.new
    assert final == history[-1].new
    assert len({c.who for c in history}) == 4


# -- live pick-up -----------------------------------------------------------------------------------------


def test_a_change_in_another_process_reaches_subscribers_within_a_second(
    db: Path, store: SqliteSettings
) -> None:
    bus = EventBus()
    watched = SqliteSettings(db, bus=bus)
    sink = RecordingSink(bus)
    seen = threading.Event()
    values: list[int] = []

    def on_change() -> None:
        values.append(watched.effective("fetch")["retry.max_attempts"])
        if values[-1] == 9:
            seen.set()

    watched.subscribe(on_change)
    try:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent("""
                import sys
                from bounceback.stores import SqliteSettings
                with SqliteSettings(sys.argv[1]) as s:
                    s.set("retry.max_attempts", 9, operation="fetch")
            """),
                str(db),
            ],
        )
        assert proc.wait(timeout=60) == 0
        done = time.monotonic()
        assert seen.wait(1.0), values
        assert time.monotonic() - done < 1.0
        events = sink.of(SettingsChanged)
        assert [(e.operation, e.key, e.old, e.new) for e in events] == [
            ("fetch", "retry.max_attempts", None, 9)
        ]
        assert events[0].source.endswith(f"/{proc.pid}")
    finally:
        sink.stop()
        watched.close()


def test_own_writes_notify_subscribers_and_emit_events(db: Path) -> None:
    bus = EventBus()
    sink = RecordingSink(bus)
    with SqliteSettings(db, bus=bus) as s:
        calls: list[int] = []
        stop = s.subscribe(lambda: calls.append(s.effective()["retry.max_attempts"]))
        s.set("retry.max_attempts", 3)
        s.reset("retry.max_attempts")
        stop()
        s.set("retry.max_attempts", 4)
    assert calls == [3, 5]
    assert [(e.old, e.new) for e in sink.of(SettingsChanged)] == [(None, 3), (3, None), (None, 4)]


def test_the_success_path_runs_no_query(db: Path) -> None:
    with SqliteSettings(db, poll_interval=0.05) as s:
        s.subscribe(lambda: None)
        statements: list[tuple[int, str]] = []
        assert s._conn is not None
        s._conn.set_trace_callback(lambda sql: statements.append((threading.get_ident(), sql)))
        main = threading.get_ident()
        for _ in range(20_000):
            s.effective("fetch")
        # The watcher does poll (the trace works) but never on the caller's thread.
        assert wait_until(lambda: any("data_version" in sql for _, sql in statements), 2.0)
        assert [sql for thread, sql in statements if thread == main] == []


def test_without_a_watcher_effective_checks_at_most_once_per_poll_interval(db: Path) -> None:
    clock = FakeClock()
    with SqliteSettings(db, clock=clock, poll_interval=0.25) as s:
        s.effective()
        statements: list[str] = []
        assert s._conn is not None
        s._conn.set_trace_callback(statements.append)
        for _ in range(100):
            s.effective()
        assert statements == []
        clock.advance(0.25)
        s.effective()
        assert sum("data_version" in sql for sql in statements) == 1


def test_the_watcher_stops_on_close(db: Path) -> None:
    s = SqliteSettings(db, poll_interval=0.01)
    s.subscribe(lambda: None)
    watcher = s._watcher
    assert watcher is not None and watcher.daemon and watcher.is_alive()
    s.close()
    assert not watcher.is_alive()


# -- a reader keeps running when the database is in trouble ---------------------------------------------


def test_a_reader_of_a_corrupt_database_uses_defaults_and_warns_once(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corrupt(db)
    with caplog.at_level(logging.WARNING, "bounceback.settings"), SqliteSettings(db) as s:
        assert s.effective("fetch")["retry.max_attempts"] == 5
        assert s.subscribe(lambda: None) is not None
        for _ in range(3):
            assert s.refresh() is False
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "built-in defaults" in warnings[0].getMessage()
    assert "corrupt" in warnings[0].getMessage()


def test_a_reader_starting_while_the_database_is_locked_uses_defaults_then_catches_up(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with SqliteSettings(db) as writer:
        writer.set("retry.max_attempts", 7)
    reader = SqliteSettings(db)
    changed = threading.Event()
    try:
        with caplog.at_level(logging.WARNING, "bounceback.settings"):
            with exclusive_lock(db):
                started = time.monotonic()
                assert reader.effective()["retry.max_attempts"] == 5
                reader.subscribe(changed.set)
                assert time.monotonic() - started < 2.5  # short lock waits, never the 5 s busy timeout
                assert "built-in defaults" in caplog.text
            assert wait_until(lambda: reader.effective()["retry.max_attempts"] == 7, 1.0)
        assert changed.is_set()
        assert "readable again" in caplog.text
    finally:
        reader.close()


def test_a_reader_keeps_the_last_good_values_when_the_file_is_corrupted_under_it(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with SqliteSettings(db) as writer:
        writer.set("retry.max_attempts", 7)
    with SqliteSettings(db) as reader, caplog.at_level(logging.WARNING, "bounceback.settings"):
        assert reader.effective()["retry.max_attempts"] == 7
        corrupt(db)
        for _ in range(3):
            assert reader.refresh() is False
        assert reader.effective()["retry.max_attempts"] == 7
        reader._drop_connection()  # as after any failed poll: the next poll opens the file again
        assert reader.refresh() is False
        assert reader.effective()["retry.max_attempts"] == 7
    assert "using the last good values" in caplog.text


def test_a_database_upgraded_by_a_newer_version_keeps_the_reader_on_its_last_values(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with SqliteSettings(db) as writer:
        writer.set("retry.max_attempts", 7)
    with SqliteSettings(db) as reader:
        assert reader.effective()["retry.max_attempts"] == 7
        conn = open_home(db)
        newer = len(registered_migrations()["settings"]) + 1
        conn.execute("INSERT INTO schema_migrations VALUES ('settings', ?, 0)", (newer,))
        conn.execute("UPDATE settings_values SET value = '9'")
        conn.close()
        with caplog.at_level(logging.WARNING, "bounceback.settings"):
            assert reader.refresh() is False
        assert reader.effective()["retry.max_attempts"] == 7
        assert "newer bounceback" in caplog.text
        with pytest.raises(StoreError, match="newer bounceback"):
            reader.set("retry.max_attempts", 3)
    with SqliteSettings(db) as fresh, caplog.at_level(logging.WARNING, "bounceback.settings"):
        assert fresh.effective()["retry.max_attempts"] == 5  # defaults, not a crash


def test_writes_to_a_troubled_database_raise_clear_store_errors(db: Path) -> None:
    with SqliteSettings(db) as s:
        s.set("retry.max_attempts", 4)
    with exclusive_lock(db), SqliteSettings(db, timeout=0.1) as s, pytest.raises(StoreError, match="lock"):
        s.set("retry.max_attempts", 5)
    corrupt(db)
    with SqliteSettings(db) as s:
        with pytest.raises(StoreError, match="corrupt"):
            s.set("retry.max_attempts", 5)
        with pytest.raises(StoreError, match="corrupt"):
            s.history()


def test_a_stored_row_this_version_cannot_use_is_skipped_with_a_warning(
    db: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with SqliteSettings(db) as s:
        s.set("retry.max_attempts", 4)
    conn = open_home(db)
    conn.execute("INSERT INTO settings_values VALUES ('', 'retry.from_the_future', '1', 0)")
    conn.execute("INSERT INTO settings_values VALUES ('', 'retry.multiplier', '\"lots\"', 0)")
    conn.close()
    with caplog.at_level(logging.WARNING, "bounceback.settings"), SqliteSettings(db) as s:
        assert s.effective()["retry.max_attempts"] == 4
        assert s.effective()["retry.multiplier"] == 2.0
    assert "retry.from_the_future" in caplog.text
    assert "retry.multiplier" in caplog.text


def test_json_of_a_change_is_plain_data(store: SqliteSettings) -> None:
    change = store.set("run.permanent_codes", "126,127,2")
    assert change is not None
    plain = change.to_plain()
    assert json.loads(json.dumps(plain)) == plain
    assert plain["new"] == [2, 126, 127]


def test_a_home_of_the_old_defaults_keeps_working_through_the_open_time_migration(db: Path) -> None:
    import sqlite3

    # A home database as the first release left it: settings schema version 1, values set by a person.
    first = registered_migrations()["settings"][0]
    conn = sqlite3.connect(db)
    conn.executescript(first)
    conn.executescript(
        """
        CREATE TABLE schema_migrations (component TEXT NOT NULL, version INTEGER NOT NULL,
                                        applied_at REAL NOT NULL, PRIMARY KEY (component, version));
        INSERT INTO schema_migrations VALUES ('settings', 1, 0);
        INSERT INTO settings_values VALUES ('', 'breaker.open_seconds', '60.0', 0);       -- valid under the 300 s cap
        INSERT INTO settings_values VALUES ('slow-api', 'breaker.open_seconds', '120.0', 0);
        INSERT INTO settings_values VALUES ('quick', 'breaker.open_seconds', '10.0', 0);  -- under the new cap
        INSERT INTO settings_values VALUES ('', 'retry.max_attempts', '7', 0);
        """
    )
    conn.commit()
    conn.close()
    with SqliteSettings(db) as settings:
        values = settings.effective(None)
        # Nothing was reset, and the old cap was written down where the new default would break the rule.
        assert (values["breaker.open_seconds"], values["breaker.open_seconds_max"]) == (60.0, 300.0)
        assert values["retry.max_attempts"] == 7
        assert settings.effective("slow-api")["breaker.open_seconds_max"] == 300.0
        assert settings.effective("quick")["breaker.open_seconds_max"] == 300.0  # the global cap applies
        layers = settings.layers()
        assert "breaker.open_seconds_max" not in layers.operations.get("quick", {})
        assert "breaker.open_seconds_max" not in layers.operations.get(
            "slow-api", {}
        )  # the global one serves
        upgrades = [c for c in settings.history() if c.key == "breaker.open_seconds_max"]
        assert [(c.operation, c.text("new")) for c in upgrades] == [(None, "5m")]
        assert upgrades[0].who.startswith("bounceback upgrade")
