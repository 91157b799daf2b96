"""`bounceback status`, `timeline`, `breaker` and `cancel` end to end, against runs made by real processes."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from bounceback.stores.journal._journal import Journal
from tests.cli.run_helpers import bb, bb_start, configure, count, flaky, wait_for

# Tiny waits, and no parked ticket (exit 4): these tests read the command's own exit codes.
FAST = {"retry.initial_delay": 0.01, "retry.max_delay": 0.05, "retry.jitter": "none", "manual.mode": "raise"}


def _status() -> dict[str, Any]:
    done = bb("status", "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def _operation(data: dict[str, Any], name: str) -> dict[str, Any]:
    [row] = [r for r in data["operations"] if r["name"] == name]
    return row


def test_status_json_counts_breakers_and_next_probe(home: Path, tmp_path: Path) -> None:
    configure(home, FAST)
    # No jitter: the next probe time printed is then exactly the open time after the opening.
    configure(
        home,
        {"breaker.consecutive_failures": 3, "breaker.open_seconds": 240, "breaker.open_jitter": 0},
        operation="db",
    )
    assert bb("run", "--op", "api", "--", *flaky(tmp_path / "a", 2)).returncode == 0
    assert bb("run", "--op", "db", "--attempts", "3", "--", *flaky(tmp_path / "b", 9)).returncode == 75
    assert bb("run", "--op", "db", "--", *flaky(tmp_path / "b", 9)).returncode == 69
    before = time.time()
    data = _status()
    assert data["active_runs"] == [] and data["database"] == str(home / "bounceback.db")
    api, db = _operation(data, "api"), _operation(data, "db")
    assert (api["runs"], api["recovered"], api["gave_up"], api["failed_attempts"]) == (1, 1, 0, 2)
    assert api["breaker"]["state"] == "closed"
    assert (db["runs"], db["gave_up"], db["failed_attempts"], db["rejections"]) == (1, 1, 3, 1)
    assert db["breaker"]["state"] == "open"
    assert db["breaker"]["next_probe_at"] == pytest.approx(before + 240, abs=30)
    text = bb("status")
    assert text.returncode == 0
    assert re.search(r"db\s+│ open\s+│ \d\d:\d\d:\d\d \(in \d+ min", text.stdout), text.stdout
    assert "no recoveries running now" in text.stdout


def test_an_active_run_is_listed_and_cancelled_from_another_process(home: Path, tmp_path: Path) -> None:
    configure(home, {"retry.initial_delay": 30, "retry.max_delay": 30, "retry.jitter": "none"})
    counter = tmp_path / "n"
    proc = bb_start("run", "--op", "waiting", "--deadline", "10m", "--", *flaky(counter, 9))
    try:
        assert wait_for(lambda: Journal(home / "bounceback.db").active_runs())
        data = _status()
        [active] = data["active_runs"]
        assert (active["operation"], active["status"], active["attempts"], active["max_attempts"]) == (
            "waiting",
            "running",
            1,
            5,
        )
        assert active["pid"] == proc.pid and active["next_try_at"] > time.time() + 20
        assert active["deadline_at"] == pytest.approx(active["started_at"] + 600)
        assert "python exited with code 75" in active["last_error"]
        assert _operation(data, "waiting")["running"] == 1
        shown = bb("status")
        assert active["run_id"] in shown.stdout and "1 of 5" in shown.stdout
        asked = time.monotonic()
        cancel = bb("cancel", active["run_id"])
        _out, err = proc.communicate(timeout=20)
        took = time.monotonic() - asked
    finally:
        proc.kill()
        proc.communicate()  # waits, and closes the pipes even when the test failed early
    assert cancel.returncode == 0 and "automatic recovery stopped" in cancel.stdout, cancel.stderr
    assert proc.returncode == 3 and "cancelled from the command line" in err
    assert took < 10 and count(counter) == 1
    again = bb("cancel", active["run_id"])
    assert again.returncode == 1 and "already ended" in again.stderr
    unknown = bb("cancel", "no-such-run")
    assert unknown.returncode == 2 and "bounceback status" in unknown.stderr


def test_timeline_json_and_drawing(home: Path, tmp_path: Path) -> None:
    configure(home, FAST)
    assert bb("run", "--op", "alpha", "--", *flaky(tmp_path / "a", 2)).returncode == 0
    assert bb("run", "--op", "beta", "--attempts", "2", "--", *flaky(tmp_path / "b", 9)).returncode == 75
    done = bb("timeline", "--json", "--since", "10m")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert data["until"] - data["since"] == pytest.approx(600)
    runs = {r["operation"]: r for r in data["runs"]}
    assert [a["outcome"] for a in runs["alpha"]["attempt_list"]] == ["failed", "failed", "succeeded"]
    assert [a["delay"] for a in runs["alpha"]["attempt_list"]] == [0.01, 0.02, None]
    assert (runs["beta"]["status"], runs["beta"]["reason"]) == ("gave-up", "attempts")
    only = json.loads(bb("timeline", "--json", "--op", "beta").stdout)
    assert [r["operation"] for r in only["runs"]] == ["beta"]
    drawn = bb("timeline", "--since", "10m")
    assert drawn.returncode == 0
    assert re.search(r"alpha \w+-1 .*✓.*recovered, 3 attempts", drawn.stdout)
    assert re.search(r"beta \w+-1 .*✗.*gave-up, 2 attempts", drawn.stdout)
    assert re.search(r"\d\d:\d\d:\d\d", drawn.stdout.splitlines()[0])
    bad = bb("timeline", "--since", "yesterday")
    assert bad.returncode == 2 and "--since" in bad.stderr


def test_breaker_commands_reach_a_running_program(home: Path, tmp_path: Path) -> None:
    configure(
        home,
        {"retry.initial_delay": 1.5, "retry.max_delay": 1.5, "retry.jitter": "none", "manual.mode": "raise"},
    )
    counter = tmp_path / "n"
    proc = bb_start("run", "--op", "svc", "--", *flaky(counter, 9))
    try:
        assert wait_for(lambda: count(counter) == 1)
        forced = bb("breaker", "open", "svc")
        assert forced.returncode == 0 and forced.stdout.strip() == "breaker svc: forced_open"
        _out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.communicate()  # waits, and closes the pipes even when the test failed early
    # The waiting program's next attempt met the forced-open breaker: no more attempts ran.
    assert proc.returncode == 69, err
    assert count(counter) == 1
    assert "circuit open for svc until a person closes it (forced_open)" in err
    assert _operation(_status(), "svc")["breaker"]["state"] == "forced_open"
    refused = bb("run", "--op", "svc", "--", *flaky(counter, 0))
    assert refused.returncode == 69 and "until a person closes it" in refused.stderr
    assert bb("breaker", "disable", "svc").stdout.strip() == "breaker svc: disabled"
    assert bb("run", "--op", "svc", "--", *flaky(counter, 0)).returncode == 0
    assert bb("breaker", "close", "svc").stdout.strip() == "breaker svc: closed"
    assert bb("breaker", "reset", "svc").stdout.strip() == "breaker svc: closed"
    changes = [
        (c.old_state, c.new_state) for c in Journal(home / "bounceback.db").breaker_changes(name="svc")
    ]
    assert changes[0] == ("closed", "forced_open") and ("forced_open", "disabled") in changes
    fresh = bb("breaker", "open", "never-used")
    assert "(no program had used this breaker yet)" in fresh.stdout


def test_breaker_commands_need_a_shared_store(home: Path) -> None:
    configure(home, {"store.backend": "memory"})
    done = bb("breaker", "open", "svc")
    assert done.returncode == 2
    assert "error: store.backend: got 'memory'" in done.stderr and "own breaker state" in done.stderr


def test_status_shows_fault_injection_while_it_is_on(home: Path) -> None:
    assert _status()["chaos"] == []
    configure(home, {"chaos.enabled": True, "chaos.error_rate": 0.25}, operation="pricing")
    [entry] = _status()["chaos"]
    assert entry["operation"] == "pricing" and entry["error_rate"] == 0.25
    text = bb("status")
    assert text.returncode == 0
    assert "CHAOS: fault injection is ON for 'pricing': 25% connection errors" in text.stdout
    assert "chaos.enabled no --op pricing" in text.stdout
