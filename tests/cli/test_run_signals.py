"""Ctrl-C, SIGTERM and SIGHUP at every point of `bounceback run`, on a real pseudo-terminal.

Each case runs `bounceback run` on a pty (so the manual-recovery prompt is offered), brings it to one point
(an attempt that ignores every signal, the wait before the next try, the prompt, a person's "Retry now"),
sends one signal and checks what an operator relies on: the documented exit code 128 + N, soon (not the
30 s wait or the 60 s command), the command and everything it started gone, and the ticket telling the
truth (none for a run nobody was asked about, open when nobody answered, resolved without an invented
outcome when the run again was stopped).
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

from bounceback.cli._run_support import EXIT_CODES
from bounceback.stores._tickets import SqliteTickets
from bounceback.stores.journal._journal import Journal
from tests.cli.run_helpers import PtyProcess, bb, configure, count, flaky, plain, wait_for

SIGNALS = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM", signal.SIGHUP: "SIGHUP"}


def _gone(pid_file: Path) -> bool:
    """The process whose pid is in ``pid_file`` no longer runs (gone, or a zombie waiting for init)."""
    try:
        state = Path(f"/proc/{pid_file.read_text()}/stat").read_text().split(")")[-1].split()[0]
    except FileNotFoundError:
        return True
    return state == "Z"


def _until(term: PtyProcess, predicate: object, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and term.proc.poll() is None:
        if callable(predicate) and predicate():
            return
        term.pump()
    raise AssertionError(f"never got there; the screen:\n{plain(term.text())[-3000:]}")


def _stop(term: PtyProcess, sig: int) -> tuple[int, float]:
    asked = time.monotonic()
    term.proc.send_signal(sig)
    code = term.wait(seconds=30)
    took = time.monotonic() - asked
    print(f"\n{signal.Signals(sig).name}: exit {code} after {took * 1000:.0f} ms")  # run with -s to see
    return code, took


def _tickets(home: Path) -> list:
    with SqliteTickets(home / "bounceback.db") as store:
        return store.list()


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_during_an_attempt_stops_the_whole_process_group(
    home: Path, tmp_path: Path, sig: int
) -> None:
    configure(home, {"retry.initial_delay": 0.01, "retry.jitter": "none"})
    counter, grandchild = tmp_path / "n", tmp_path / "child"
    # The command and its child ignore SIGINT, SIGTERM and SIGHUP: only the escalation to SIGKILL stops them.
    argv = flaky(counter, 9, "--hang", "--ignore-signals", "--child-pid", str(grandchild))
    term = PtyProcess(["run", "--op", "stuck", "--", *argv])
    try:
        _until(term, lambda: grandchild.exists() and grandchild.read_text())
        code, took = _stop(term, sig)
        screen = plain(term.text())
    finally:
        term.close()
    assert code == 128 + sig, screen
    assert took < 5, took  # the half-second escalation, not the command's 60 s
    assert f"stuck: stopped by {NAMES[sig]}" in screen
    assert count(counter) == 1  # no further attempt after the signal
    assert wait_for(lambda: _gone(grandchild), seconds=5)  # the command's own child too
    assert _tickets(home) == []  # nobody was asked: no ticket
    [run] = Journal(home / "bounceback.db").runs()
    assert (run.status, run.reason) == ("gave-up", "cancelled")


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_during_the_wait_ends_it_at_once(home: Path, tmp_path: Path, sig: int) -> None:
    configure(home, {"retry.initial_delay": 30, "retry.max_delay": 30, "retry.jitter": "none"})
    counter = tmp_path / "n"
    term = PtyProcess(["run", "--op", "waits", "--", *flaky(counter, 9)])
    journal = Journal(home / "bounceback.db")
    try:
        _until(term, lambda: journal.active_runs() and journal.active_runs()[0].next_try_at)
        code, took = _stop(term, sig)
        screen = plain(term.text())
    finally:
        term.close()
    assert code == 128 + sig, screen
    assert took < 5, took  # not the 30 s wait
    assert count(counter) == 1
    assert f"waits: stopped by {NAMES[sig]}" in screen
    assert _tickets(home) == []
    [run] = journal.runs()
    assert (run.status, run.reason) == ("gave-up", "cancelled")
    assert run.duration < 25  # measured, not the planned 30 s wait


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_at_the_prompt_ends_the_run_and_leaves_the_ticket_open(
    home: Path, tmp_path: Path, sig: int
) -> None:
    configure(home, {"retry.initial_delay": 0.01, "retry.max_delay": 0.05, "retry.jitter": "none"})
    counter = tmp_path / "n"
    term = PtyProcess(["run", "--op", "asks", "--attempts", "2", "--", *flaky(counter, 9)])
    try:
        _until(term, lambda: "Choose 1-" in plain(term.text()))
        code, took = _stop(term, sig)
        screen = plain(term.text())
    finally:
        term.close()
    assert code == 128 + sig, screen
    assert took < 5, took
    assert count(counter) == 2
    [ticket] = _tickets(home)
    assert ticket.status == "open" and ticket.resolution is None  # nobody decided
    assert f"ticket {ticket.id} stays open for a person" in screen
    assert f"asks: stopped by {NAMES[sig]}" in screen


@pytest.mark.parametrize("sig", SIGNALS, ids=lambda s: signal.Signals(s).name)
def test_a_signal_during_the_run_again_stops_it_without_inventing_an_outcome(
    home: Path, tmp_path: Path, sig: int
) -> None:
    configure(home, {"retry.initial_delay": 0.01, "retry.max_delay": 0.05, "retry.jitter": "none"})
    counter, grandchild = tmp_path / "n", tmp_path / "child"
    argv = flaky(counter, 2, "--hang-on", "3", "--ignore-signals", "--child-pid", str(grandchild))
    term = PtyProcess(["run", "--op", "again", "--attempts", "2", "--", *argv])
    try:
        _until(term, lambda: "Choose 1-" in plain(term.text()))
        os.write(term.master, b"1\r")  # Retry now
        _until(term, lambda: "Which steps did you take?" in plain(term.text()))
        os.write(term.master, b"\r")
        _until(term, lambda: count(counter) == 3 and grandchild.exists() and grandchild.read_text())
        code, took = _stop(term, sig)
        screen = plain(term.text())
    finally:
        term.close()
    assert code == 128 + sig, screen
    assert took < 5, took
    assert count(counter) == 3
    assert wait_for(lambda: _gone(grandchild), seconds=5)
    [ticket] = _tickets(home)
    assert ticket.status == "resolved" and ticket.resolution is not None
    assert ticket.resolution.choice.value == "retry" and ticket.resolution.outcome is None
    assert "stays resolved (retry) with no outcome recorded" in screen
    assert "failed too" not in screen


def test_the_exit_code_table_is_the_same_in_run_help_and_in_the_docs() -> None:
    help_text = bb("run", "--help").stdout
    docs = (Path(__file__).resolve().parents[2] / "docs" / "run.md").read_text()
    rows = re.findall(r"^\| (.+?) \| (.+?) \|$", docs.split("## Exit codes", 1)[1].split("\n## ", 1)[0], re.M)
    documented = [(code, meaning) for code, meaning in rows if code not in ("code", "---")]
    assert documented == list(EXIT_CODES)
    flat = " ".join(help_text.split())
    for code, meaning in EXIT_CODES:
        assert f"{code} {meaning}" in flat, (code, help_text)


def test_a_run_cancelled_from_outside_gets_a_true_ticket_at_the_terminal(home: Path, tmp_path: Path) -> None:
    # 5 attempts allowed, cancelled during the 30 s wait after the first: the ticket must say 1 attempt,
    # the measured time (not the planned wait), offer more than the 5 allowed, and name only real choices.
    configure(home, {"retry.initial_delay": 30, "retry.max_delay": 30, "retry.jitter": "none"})
    counter = tmp_path / "n"
    term = PtyProcess(["run", "--op", "watched", "--", *flaky(counter, 9)])
    journal = Journal(home / "bounceback.db")
    try:
        _until(term, lambda: journal.active_runs() and journal.active_runs()[0].next_try_at)
        [active] = journal.active_runs()
        assert bb("cancel", active.run_id).returncode == 0
        _until(term, lambda: "Choose 1-" in plain(term.text()))
        # The ticket panel only (the live display before it counted down from 30.0 s).
        screen = " ".join(plain(term.text()).split()).split("recovery ticket", 1)[1]
        os.write(term.master, b"3\r")  # Abort
        code = term.wait()
    finally:
        term.close()
    assert code == 3, screen
    [ticket] = _tickets(home)
    assert len(ticket.attempts) == 1 and ticket.elapsed < 25, ticket.elapsed
    assert "gave up after 1 attempt in" in screen and "30.0 s" not in screen
    assert "Retry with 10 attempts" in screen  # more room than the 5 allowed
    assert "skip" not in screen.lower()  # not offered, so not mentioned
    assert "code -" not in screen and "it exited with code 75" in screen


# -- at a real controlling terminal: the command owns the keyboard while it runs ---------------------


def test_the_command_reads_the_keyboard_at_its_first_attempt(home: Path, tmp_path: Path) -> None:
    reader = "import sys; print('got', sys.stdin.readline().strip(), flush=True)"
    term = PtyProcess(["run", "--op", "reader", "--", sys.executable, "-c", reader], controlling=True)
    try:
        time.sleep(0.5)  # typed while the command starts, as a person would
        os.write(term.master, b"hello\r")
        code = term.wait()
        screen = plain(term.text())
    finally:
        term.close()
    assert code == 0, screen
    assert "got hello" in screen
    assert "Input/output error" not in screen and "attempt 1 of 5 failed" not in screen
    assert Journal(home / "bounceback.db").runs() == []  # it worked at the first try


def test_ctrl_c_typed_at_the_terminal_during_an_attempt_stops_everything(home: Path, tmp_path: Path) -> None:
    configure(home, {"retry.initial_delay": 0.01, "retry.jitter": "none"})
    counter, grandchild = tmp_path / "n", tmp_path / "child"
    argv = flaky(counter, 9, "--hang", "--child-pid", str(grandchild))
    term = PtyProcess(["run", "--op", "typed", "--", *argv], controlling=True)
    try:
        _until(term, lambda: grandchild.exists() and grandchild.read_text())
        asked = time.monotonic()
        os.write(term.master, b"\x03")  # the key, not a signal sent to bounceback: it reaches the command
        code = term.wait(seconds=30)
        took = time.monotonic() - asked
        screen = plain(term.text())
    finally:
        term.close()
    assert code == 130, screen
    assert took < 5, took
    assert count(counter) == 1  # the person's Ctrl-C is not a transient failure to retry
    assert "typed: stopped by Ctrl-C" in screen
    assert wait_for(lambda: _gone(grandchild), seconds=5)
