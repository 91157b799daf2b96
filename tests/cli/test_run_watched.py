"""`bounceback run` seen from its first attempt: journaled, listed by `status`, cancellable, then closed.

Real processes throughout: `bounceback run` (python -m bounceback) runs ``tests/gate_command.py``, which
blocks on a FIFO until the test writes the exit code it must end with, so each step happens exactly when
the test says and nothing waits on a timer.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bounceback.stores.journal._journal import Journal
from bounceback.stores.journal._schema import RunEntry
from tests.cli.run_helpers import bb, bb_start, configure, wait_for
from tests.gate_command import release

GATE = str(Path(__file__).resolve().parents[1] / "gate_command.py")
# Tiny waits between attempts, and no parked ticket: these tests read the run's own exit codes.
FAST = {"retry.initial_delay": 0.01, "retry.max_delay": 0.05, "retry.jitter": "none", "manual.mode": "raise"}


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    fifo = tmp_path / "gate"
    os.mkfifo(fifo)
    return fifo


@pytest.fixture
def journal(home: Path) -> Iterator[Journal]:
    with Journal(home / "bounceback.db") as opened:
        yield opened


def _gate_argv(gate: Path, tmp_path: Path, *extra: str) -> list[str]:
    return [sys.executable, GATE, str(gate), "--pid", str(tmp_path / "pids"), *extra]


def _pids(tmp_path: Path) -> list[int]:
    path = tmp_path / "pids"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def _gone(pid: int) -> bool:
    """Process ``pid`` no longer runs (gone, or a zombie waiting for init to reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def _status() -> dict[str, Any]:
    done = bb("status", "--json")
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def _announced(journal: Journal) -> RunEntry:
    """The one active run, once the journal lists it (its first attempt's process started)."""
    active = wait_for(journal.active_runs)
    assert active, "the run never appeared in the journal"
    [run] = active
    return run


def test_a_run_is_listed_from_its_first_attempt_and_forgotten_when_that_attempt_succeeds(
    home: Path, tmp_path: Path, gate: Path, journal: Journal
) -> None:
    configure(home, FAST)
    proc = bb_start("run", "--op", "nightly-backup", "--attempts", "5", "--", *_gate_argv(gate, tmp_path))
    try:
        run = _announced(journal)
        # Nothing has failed, and the run is there: attempt 1 of 5 running, owned by `bounceback run`.
        assert (run.operation, run.status, run.attempts, run.max_attempts) == (
            "nightly-backup",
            "running",
            0,
            5,
        )
        assert (run.pid, run.last_error, run.next_try_at, run.outcome) == (proc.pid, None, None, None)
        # The journal lists the run when its command is spawned; the command writes its pid a moment later.
        assert wait_for(lambda: _pids(tmp_path)), "the listed run's command never started"
        data = _status()
        [listed] = data["active_runs"]
        assert listed["run_id"] == run.run_id
        assert (listed["attempts"], listed["attempt_now"], listed["max_attempts"]) == (0, 1, 5)
        [row] = [r for r in data["operations"] if r["name"] == "nightly-backup"]
        assert (row["running"], row["failed_attempts"]) == (1, 0)
        shown = bb("status")
        assert run.run_id in shown.stdout and "1 of 5 running" in shown.stdout, shown.stdout
        release(gate, 0)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # waits, and closes the pipes even when the test failed early
    assert proc.returncode == 0, err
    # Recorded as a first-try success always was: no run, no attempt, nothing counted.
    assert journal.active_runs() == [] and journal.runs() == [] and journal.attempts(run.run_id) == []
    assert "nightly-backup" not in journal.counts()
    assert _status()["active_runs"] == []


def test_when_the_first_attempt_fails_the_same_row_carries_the_recovery(
    home: Path, tmp_path: Path, gate: Path, journal: Journal
) -> None:
    configure(home, FAST)
    proc = bb_start("run", "--op", "sync", "--attempts", "4", "--", *_gate_argv(gate, tmp_path))
    try:
        first = _announced(journal)
        release(gate, 75)  # attempt 1 fails (transient); attempt 2 starts and waits on the gate again
        second = wait_for(lambda: [r for r in journal.active_runs() if r.attempts == 1])
        assert second, journal.runs()
        [recovery] = second
        # One row, moved to the recovery's id (the one its attempts and tickets use), its start kept.
        assert recovery.run_id != first.run_id and journal.run(first.run_id) is None
        assert recovery.started_at == pytest.approx(first.started_at, abs=1.0)
        assert (recovery.max_attempts, recovery.last_kind) == (4, "transient")
        assert wait_for(lambda: len(_pids(tmp_path)) == 2)
        [listed] = _status()["active_runs"]
        assert (listed["run_id"], listed["attempts"], listed["attempt_now"]) == (recovery.run_id, 1, 2)
        release(gate, 0)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # waits, and closes the pipes even when the test failed early
    assert proc.returncode == 0, err
    [run] = journal.runs()
    assert (run.run_id, run.status, run.attempts) == (recovery.run_id, "recovered", 2)
    assert [a.outcome for a in journal.attempts(run.run_id)] == ["failed", "succeeded"]


def test_bounceback_cancel_stops_the_first_attempt_and_its_process_group(
    home: Path, tmp_path: Path, gate: Path, journal: Journal
) -> None:
    configure(home, FAST)
    child = tmp_path / "child"
    argv = _gate_argv(gate, tmp_path, "--child-pid", str(child))
    proc = bb_start("run", "--op", "export", "--attempts", "5", "--", *argv)
    try:
        run = _announced(journal)
        assert wait_for(child.exists)
        cancel = bb("cancel", run.run_id)
        _out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()  # waits, and closes the pipes even when the test failed early
    assert cancel.returncode == 0 and "automatic recovery stopped" in cancel.stdout, cancel.stderr
    # Stopped as cancelled (3), not retried: one attempt, its command and the command's child gone.
    assert proc.returncode == 3, err
    assert "cancelled from the command line" in err
    [command] = _pids(tmp_path)
    assert _gone(command) and wait_for(lambda: _gone(int(child.read_text())), seconds=10)
    [ended] = journal.runs()
    assert (ended.status, ended.reason, ended.attempts) == ("gave-up", "cancelled", 1)
    assert journal.active_runs() == []
    request = journal.cancel_request(run.run_id)
    assert request is not None and request.handled
    again = bb("cancel", run.run_id)
    assert again.returncode == 2 and "bounceback status" in again.stderr  # its entry moved to the recovery


def test_a_library_call_that_succeeds_is_never_announced(home: Path) -> None:
    from bounceback import Policy
    from bounceback.events import EventBus
    from bounceback.integrations import run_command
    from bounceback.testing import RecordingSink

    bus, sink = EventBus(), RecordingSink()
    bus.subscribe(sink)
    assert Policy("quiet", attempts=3, bus=bus).call(lambda: 42) == 42
    assert run_command(["true"], Policy("quiet", attempts=3, bus=bus)).attempts == 1
    assert sink.events == []
