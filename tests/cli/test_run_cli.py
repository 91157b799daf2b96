"""`bounceback run` end to end: real processes, real commands that fail a set number of times, a real home db."""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner

from bounceback.cli import cli
from bounceback.cli._run_support import ManualStep, set_manual_handler
from bounceback.stores.journal._journal import Journal
from tests.cli.run_helpers import (
    PtyProcess,
    bb,
    bb_start,
    configure,
    count,
    flaky,
    plain,
    wait_for,
)

# Tiny waits, and no recovery ticket: these tests check the command's own exit codes, which a parked
# ticket (exit 4, tested with the tickets) would replace.
FAST = {"retry.initial_delay": 0.01, "retry.max_delay": 0.05, "retry.jitter": "none", "manual.mode": "raise"}


@pytest.fixture
def fast(home: Path) -> Path:
    """Tiny waits between attempts: the tests never wait for backoff for real."""
    configure(home, FAST)
    return home


def test_retries_until_success_and_passes_output_through(fast: Path, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    done = bb("run", "--op", "sync", "--", *flaky(counter, 2, "--out", "payload\n", "--err", "note\n"))
    assert done.returncode == 0, done.stderr
    assert count(counter) == 3
    assert done.stdout == "payload\n"  # the command's stdout, untouched and alone
    err = done.stderr
    assert "\x1b" not in err  # not a terminal: plain lines, no ANSI
    assert err.startswith("bounceback: sync: attempt 1 of 5 failed: CommandFailed: python")
    assert "exited with code 75 (listed in run.transient_codes) (transient)" in err
    assert "bounceback: sync: retrying in 0.01 s (attempt 2 of 5" in err
    assert "bounceback: sync: recovered after 3 attempts in" in err
    assert err.index("retrying in 0.02 s") < err.index("note\n") < err.index("recovered after")


def test_success_at_first_try_prints_nothing_of_its_own(fast: Path, tmp_path: Path) -> None:
    done = bb("run", "--op", "quiet", "--", *flaky(tmp_path / "n", 0, "--out", "hi\n"))
    assert (done.returncode, done.stdout, done.stderr) == (0, "hi\n", "")
    assert Journal(fast / "bounceback.db").runs() == []  # a success is not a recovery: nothing journaled


def test_gives_up_with_the_commands_last_exit_code(fast: Path, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    done = bb("run", "--op", "sync", "--attempts", "3", "--", *flaky(counter, 9, "--code", "9"))
    assert done.returncode == 9 and count(counter) == 3
    assert "bounceback: sync: gave up after 3 attempts in" in done.stderr
    assert "(no attempts left)" in done.stderr
    [run] = Journal(fast / "bounceback.db").runs()
    assert (run.operation, run.status, run.reason, run.attempts) == ("sync", "gave-up", "attempts", 3)
    assert run.last_kind == "transient" and "exited with code 9" in (run.last_error or "")


def test_permanent_codes_and_missing_programs_are_not_retried(fast: Path, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    done = bb("run", "--op", "perm", "--", *flaky(counter, 9, "--code", "126"))
    assert done.returncode == 126 and count(counter) == 1
    assert "(a permanent error)" in done.stderr
    missing = bb("run", "--op", "perm", "--", str(tmp_path / "no-such-program"))
    assert missing.returncode == 127 and "was not found" in missing.stderr


def test_exit_code_settings_and_explicit_flags_win(fast: Path, tmp_path: Path) -> None:
    configure(fast, {"run.permanent_codes": [3], "run.unknown_codes": "permanent", "retry.max_attempts": 2})
    configure(fast, {"run.transient_codes": [42]}, operation="custom")
    counter = tmp_path / "n"
    assert bb("run", "--op", "custom", "--", *flaky(counter, 1, "--code", "42")).returncode == 0
    assert count(counter) == 2  # 42 is transient for this operation
    counter.unlink()
    assert bb("run", "--op", "custom", "--", *flaky(counter, 5, "--code", "1")).returncode == 1
    assert count(counter) == 1  # an unknown code is permanent by the global setting
    counter.unlink()
    assert bb("run", "--op", "custom", "--", *flaky(counter, 9, "--code", "42")).returncode == 42
    assert count(counter) == 2  # retry.max_attempts 2 from the settings ...
    counter.unlink()
    assert (
        bb("run", "--op", "custom", "--attempts", "4", "--", *flaky(counter, 9, "--code", "42")).returncode
        == 42
    )
    assert count(counter) == 4  # ... and the flag wins


def test_a_timed_out_attempt_is_stopped_and_reported_as_124(fast: Path, tmp_path: Path) -> None:
    counter, grandchild = tmp_path / "n", tmp_path / "child"
    started = time.monotonic()
    done = bb(
        "run", "--op", "slow", "--attempts", "2", "--timeout", "300ms", "--",
        *flaky(counter, 9, "--hang", "--child-pid", str(grandchild)),
    )  # fmt: skip
    assert done.returncode == 124 and count(counter) == 2
    assert time.monotonic() - started < 20
    assert "AttemptTimeout: slow: attempt timed out after 0.3 s" in done.stderr
    assert wait_for(lambda: not Path(f"/proc/{grandchild.read_text()}").exists() or _zombie(grandchild))


def _zombie(pid_file: Path) -> bool:
    try:
        return Path(f"/proc/{pid_file.read_text()}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_bad_flags_and_settings_exit_2_and_run_nothing(fast: Path, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    for args in (["--deadline", "soon"], ["--attempts", "0"], ["--timeout", "-1s"]):
        done = bb("run", "--op", "x", *args, "--", *flaky(counter, 0))
        assert done.returncode == 2, (args, done.stderr)
    bad_op = bb("run", "--op", " padded ", "--", *flaky(counter, 0))
    assert bad_op.returncode == 2 and "error: operation" in bad_op.stderr
    assert count(counter) == 0


def test_fail_fast_across_invocations_then_the_half_open_probe(fast: Path, tmp_path: Path) -> None:
    configure(
        fast,
        # Open long enough for the next process to start on a busy machine, short enough to wait out.
        {"breaker.consecutive_failures": 2, "breaker.open_seconds": 3.0, "breaker.half_open_calls": 1},
        operation="remote",
    )
    counter = tmp_path / "n"
    first = bb("run", "--op", "remote", "--attempts", "2", "--", *flaky(counter, 2))
    assert first.returncode == 75 and count(counter) == 2
    assert re.search(r"breaker remote: closed -> open until \d\d:\d\d:\d\d", first.stderr)
    # The next invocation (a cron job, say) does not run the command at all while the circuit is open.
    started = time.monotonic()
    refused = bb("run", "--op", "remote", "--", *flaky(counter, 2))
    assert refused.returncode == 69 and count(counter) == 2
    assert re.search(r"circuit open for remote until \d\d:\d\d:\d\d; the command was not run", refused.stderr)
    assert time.monotonic() - started < 10
    # After the open time, one probe is let through; it succeeds and the circuit closes.
    results = []

    def probe() -> bool:
        done = bb("run", "--op", "remote", "--", *flaky(counter, 2, "--out", "probe ok\n"))
        results.append(done)
        return done.returncode != 69

    assert wait_for(probe, seconds=20, step=0.2)
    assert results[-1].returncode == 0 and results[-1].stdout == "probe ok\n"
    assert count(counter) == 3
    status = bb("status", "--json")
    [row] = [r for r in json.loads(status.stdout)["operations"] if r["name"] == "remote"]
    assert row["breaker"]["state"] == "closed" and row["rejections"] >= 1
    changes = [
        (c.old_state, c.new_state) for c in Journal(fast / "bounceback.db").breaker_changes(name="remote")
    ]
    assert ("closed", "open") in changes and changes[-1][1] == "closed"


def test_live_progress_on_a_terminal_shows_the_countdown(home: Path, tmp_path: Path) -> None:
    configure(home, {"retry.initial_delay": 0.6, "retry.max_delay": 0.6, "retry.jitter": "none"})
    counter = tmp_path / "n"
    term = PtyProcess(["run", "--op", "live", "--", *flaky(counter, 1, "--out", "finished\n")])
    try:
        assert term.wait() == 0
        text = term.text()
    finally:
        term.close()
    assert "\x1b[" in text  # a terminal gets rich drawing ...
    visible = plain(text)
    readings = set(re.findall(r"next try in (\d\.\d) s", visible))
    assert len(readings) >= 3, visible  # ... and a countdown that moves while it waits
    assert "live  attempt 2 of 5" in visible and "breaker closed" in visible
    assert "finished" in visible
    assert "live: recovered after 2 attempts in" in visible


def test_ctrl_c_while_waiting_stops_recovery_at_once(home: Path, tmp_path: Path) -> None:
    configure(home, {"retry.initial_delay": 30, "retry.max_delay": 30, "retry.jitter": "none"})
    counter = tmp_path / "n"
    proc = bb_start("run", "--op", "waits", "--", *flaky(counter, 9))
    journal = Journal(home / "bounceback.db")
    try:
        assert wait_for(lambda: journal.active_runs() and journal.active_runs()[0].next_try_at)
        asked = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
        took = time.monotonic() - asked
    finally:
        proc.kill()
        proc.communicate()  # waits, and closes the pipes even when the test failed early
    assert proc.returncode == 130, err
    assert took < 5  # not the 30 s wait
    assert count(counter) == 1
    assert "waits: stopped by Ctrl-C; nothing bounceback started is still running" in err
    [run] = journal.runs()
    assert (run.status, run.reason) == ("gave-up", "cancelled")


def test_cancel_from_another_process_stops_the_attempt_in_flight(home: Path, tmp_path: Path) -> None:
    # The first attempt fails at once (so the run is journaled), the second hangs with a child of its own.
    configure(home, {**FAST, "manual.mode": "auto"})
    counter, grandchild = tmp_path / "n", tmp_path / "child"
    proc = bb_start(
        "run", "--op", "busy", "--",
        *flaky(counter, 1, "--hang-on", "2", "--ignore-signals", "--child-pid", str(grandchild)),
    )  # fmt: skip
    journal = Journal(home / "bounceback.db")
    try:
        assert wait_for(lambda: count(counter) == 2 and grandchild.exists() and grandchild.read_text())
        [active] = journal.active_runs()
        asked = time.monotonic()
        assert bb("cancel", active.run_id).returncode == 0
        _out, err = proc.communicate(timeout=30)
        took = time.monotonic() - asked
    finally:
        proc.kill()
        proc.communicate()  # waits, and closes the pipes even when the test failed early
    assert proc.returncode == 3, err  # cancelled from outside, handed to a person: the ticket is parked
    assert took < 10  # not the command's 60 s
    assert wait_for(lambda: _zombie(grandchild), seconds=5)
    assert count(counter) == 2
    assert "parked as ticket" in err and "cancelled from the command line" in err
    [run] = journal.runs()
    assert (run.status, run.reason) == ("gave-up", "cancelled")


def test_a_second_signal_while_the_first_is_handled_kills_the_group_at_once(
    home: Path, tmp_path: Path
) -> None:
    configure(home, FAST)
    counter, grandchild = tmp_path / "n", tmp_path / "child"
    proc = bb_start(
        "run", "--op", "stuck", "--",
        *flaky(counter, 1, "--hang-on", "2", "--ignore-signals", "--child-pid", str(grandchild)),
    )  # fmt: skip
    try:
        assert wait_for(lambda: count(counter) == 2 and grandchild.exists() and grandchild.read_text())
        proc.send_signal(signal.SIGINT)  # passed on to the command, which ignores it
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.communicate()  # waits, and closes the pipes even when the test failed early
    assert proc.returncode == 130, err
    assert "stuck: stopped by Ctrl-C" in err
    assert wait_for(lambda: _zombie(grandchild), seconds=10)
    db = home / "bounceback.db"
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    [run] = Journal(db).runs()
    assert run.status == "gave-up" and run.reason in ("aborted", "cancelled")


def test_the_manual_fallback_hook_decides_and_can_run_again(fast: Path, tmp_path: Path) -> None:
    counter = tmp_path / "n"
    seen: list[ManualStep] = []

    def handler(step: ManualStep) -> int | None:
        seen.append(step)
        return step.rerun(5, None)  # a person chose "retry with more attempts"

    previous = set_manual_handler(handler)
    try:
        result = CliRunner().invoke(
            cli,
            ["run", "--op", "manual", "--attempts", "2", "--", *flaky(counter, 3)],
            catch_exceptions=False,
        )
    finally:
        set_manual_handler(previous)
    [step] = seen
    assert (step.operation, step.reason, step.attempts, step.exit_code) == ("manual", "attempts", 2, 75)
    assert step.run_id is not None and step.attended is False
    assert result.exit_code == 0 and count(counter) == 4


def test_sigterm_to_bounceback_stops_the_command_too(home: Path, tmp_path: Path) -> None:
    configure(home, FAST)
    counter, grandchild = tmp_path / "n", tmp_path / "child"
    proc = bb_start(
        "run", "--op", "supervised", "--", *flaky(counter, 9, "--hang", "--child-pid", str(grandchild))
    )
    try:
        assert wait_for(lambda: grandchild.exists() and grandchild.read_text())
        proc.send_signal(signal.SIGTERM)  # a supervisor (systemd, a cron timeout) stops bounceback run
        _out, err = proc.communicate(timeout=20)
    finally:
        proc.kill()
        proc.communicate()  # waits, and closes the pipes even when the test failed early
    assert proc.returncode == 143, err
    assert "supervised: stopped by SIGTERM" in err
    assert count(counter) == 1  # no retry after being told to stop
    # The signal went to the command's whole process group: nothing it started is left running.
    assert wait_for(lambda: _zombie(grandchild), seconds=10)
