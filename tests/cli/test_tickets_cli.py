"""``bounceback tickets`` and the tickets of ``bounceback run``, as real commands in separate processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from bounceback.stores._tickets import SqliteTickets
from tests.cli.run_helpers import PtyProcess, bb, configure, count, flaky, plain, wait_for

FAST = {"retry.initial_delay": 0.01, "retry.max_delay": 0.05, "retry.jitter": "none"}

# A program that reads a meter, fails, and parks a ticket (nobody at a terminal: stdin is a pipe).
PARKING_PROGRAM = textwrap.dedent(
    """
    import sys
    from bounceback import Policy, RecoveryRequired
    from bounceback.core.policy._manual import ManualRecovery
    from bounceback.stores._tickets import SqliteTickets
    from bounceback.testing import FakeClock

    wait = float(sys.argv[1])
    calls = []

    def read_meter():
        calls.append(1)
        if len(calls) <= 3:
            raise ConnectionRefusedError(111, "[bold]refused[/] <script>x</script> Connect call failed ('10.0.0.7', 502)")
        return "42 kWh"

    recovery = ManualRecovery(store=SqliteTickets(), wait=wait, poll=0.02, skip="cached")  # manual.mode auto
    try:
        value = Policy("read-meter", attempts=3, clock=FakeClock(), fallback=recovery).call(read_meter)
    except RecoveryRequired as exc:
        print("parked", exc.ticket.id, flush=True)
        sys.exit(5)
    print("value", value, len(calls), flush=True)
    """
)


def program(home: Path, wait: float = 0.0) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", PARKING_PROGRAM, str(wait)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**_env(), "BOUNCEBACK_HOME": str(home)},
    )


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[2])
    return {**os.environ, "PYTHONPATH": root}


def park(home: Path) -> str:
    proc = program(home)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 5, err
    return out.split()[1]


def ok_json(*args: str) -> Any:
    done = bb(*args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def refused(*args: str) -> subprocess.CompletedProcess[str]:
    done = bb(*args)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done


def test_park_then_list_show_resolve_and_record_the_outcome(home: Path) -> None:
    ticket_id = park(home)
    [listed] = ok_json("tickets", "list")
    assert (listed["id"], listed["status"], listed["topic"]) == (ticket_id, "open", "connection-refused")
    shown = bb("tickets", "show", ticket_id)
    assert shown.returncode == 0
    text = shown.stdout
    assert "[bold]refused[/] <script>x</script>" in text  # untrusted text shown as written
    assert "Check that the service (or device) at 10.0.0.7:502" in text
    assert f"bounceback tickets resolve {ticket_id} --choice retry|retry-adjusted|skip|abort" in text
    done = ok_json(
        "tickets", "resolve", ticket_id, "--choice", "retry", "--did", "1", "--not-useful", "3", "--by", "ann"
    )
    assert done["status"] == "resolved" and done["resolution"]["by"] == "ann"
    assert done["resolution"]["did"] == ["service-up"] and done["resolution"]["not_useful"] == ["firewall"]
    recorded = ok_json("tickets", "outcome", ticket_id, "--succeeded")
    assert recorded["resolution"]["outcome"] == "succeeded"
    # the next ticket of this operation is ranked by what was learned
    later = park(home)
    steps = ok_json("tickets", "show", later)["guidance"]
    assert steps[0]["key"] == "service-up" and steps[0]["record"] == "worked 1 of 1 time"
    assert steps[-1]["key"] == "firewall" and steps[-1]["record"] == "marked not useful 1 time"
    assert ok_json("tickets", "show", later)["choices"][0]["record"] == "worked 1 of 1 time"
    assert [t["id"] for t in ok_json("tickets", "list", "--status", "resolved")] == [ticket_id]
    assert len(ok_json("tickets", "list", "--status", "all")) == 2


def test_refusals_exit_2_with_a_clear_message(home: Path) -> None:
    ticket_id = park(home)
    unknown = refused("tickets", "show", "nope")
    assert "expected the id of a recorded ticket" in unknown.stderr
    as_json = bb("tickets", "resolve", "nope", "--choice", "retry", "--json")
    assert as_json.returncode == 2 and json.loads(as_json.stdout)["field"] == "ticket"
    assert (
        "no limits unless the choice is retry-adjusted"
        in refused("tickets", "resolve", ticket_id, "--choice", "retry", "--attempts", "9").stderr
    )
    assert (
        "a duration such as"
        in refused("tickets", "resolve", ticket_id, "--choice", "retry-adjusted", "--deadline", "soon").stderr
    )
    assert (
        "step: got '7'" in refused("tickets", "resolve", ticket_id, "--choice", "retry", "--did", "7").stderr
    )
    assert "still open" in refused("tickets", "outcome", ticket_id, "--failed").stderr
    assert bb("tickets", "resolve", ticket_id, "--choice", "abort", "--by", "ann").returncode == 0
    again = refused("tickets", "resolve", ticket_id, "--choice", "retry", "--by", "bo")
    assert "already resolved by ann at" in again.stderr and "with 'abort'" in again.stderr
    assert "runs nothing again" in refused("tickets", "outcome", ticket_id, "--succeeded").stderr
    assert "Invalid value for '--choice'" in bb("tickets", "resolve", ticket_id, "--choice", "later").stderr


def test_two_people_resolving_at_once_one_wins(home: Path) -> None:
    for _ in range(2):
        ticket_id = park(home)
        procs = [
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bounceback",
                    "tickets",
                    "resolve",
                    ticket_id,
                    "--choice",
                    choice,
                    "--by",
                    who,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for who, choice in (("ann", "retry"), ("bo", "abort"))
        ]
        results = [(p.wait(60), p.communicate()[1]) for p in procs]
        codes = sorted(code for code, _ in results)
        assert codes == [0, 2], results
        winner = "ann" if results[0][0] == 0 else "bo"
        loser_err = next(err for code, err in results if code == 2)
        assert f"already resolved by {winner} at" in loser_err
        assert ok_json("tickets", "show", ticket_id)["resolution"]["by"] == winner


def test_a_waiting_program_carries_on_when_the_ticket_is_resolved_from_the_cli(home: Path) -> None:
    proc = program(home, wait=60)
    try:
        with SqliteTickets(home / "bounceback.db") as store:
            opened = wait_for(lambda: store.list("open"), seconds=30)
            assert opened, "the program never parked its ticket"
        ticket_id = opened[0].id
        resolved = bb("tickets", "resolve", ticket_id, "--choice", "retry-adjusted", "--attempts", "2")
        assert resolved.returncode == 0, resolved.stderr
        assert "a program waiting on this ticket carries on now" in resolved.stdout
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert out.split() == ["value", "42", "kWh", "4"]
    assert ok_json("tickets", "show", ticket_id)["resolution"]["outcome"] == "succeeded"


def test_skip_with_a_value_from_the_person(home: Path) -> None:
    proc = program(home, wait=60)
    try:
        with SqliteTickets(home / "bounceback.db") as store:
            opened = wait_for(lambda: store.list("open"), seconds=30)
        assert bb("tickets", "resolve", opened[0].id, "--choice", "skip", "--value", "17").returncode == 0
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert out.split() == ["value", "17", "3"]


def test_prune_and_list_when_empty(home: Path) -> None:
    assert bb("tickets", "list").stdout.strip() == "no open tickets"
    assert ok_json("tickets", "prune") == {"deleted": 0, "retention": 30 * 86400.0}


# -- bounceback run --------------------------------------------------------------------------------


def test_run_without_a_terminal_parks_a_ticket_and_keeps_the_exit_code(home: Path, tmp_path: Path) -> None:
    configure(home, FAST)
    counter = tmp_path / "n"
    done = bb(
        "run",
        "--op",
        "sync",
        "--attempts",
        "2",
        "--",
        *flaky(counter, 9, "--code", "75"),
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 75 and count(counter) == 2  # the command's own code, a ticket parked beside it
    [ticket] = ok_json("tickets", "list", "--op", "sync")
    assert f"parked as ticket {ticket['id']} for a person" in done.stderr
    assert f"bounceback tickets resolve {ticket['id']} --choice retry|retry-adjusted|abort" in done.stderr
    assert ticket["topic"] == "command-failed" and len(ticket["attempts"]) == 2
    assert ticket["facts"]["exit_code"] == "75" and "flaky_command.py" in ticket["facts"]["command"]
    resolved = bb("tickets", "resolve", ticket["id"], "--choice", "retry")
    assert "bounceback run --op sync -- " in resolved.stdout  # how to run it again
    # the next run gives up too: that is the failed follow-up of the person's retry
    assert (
        bb(
            "run", "--op", "sync", "--attempts", "1", "--", *flaky(counter, 9), stdin=subprocess.DEVNULL
        ).returncode
        == 75
    )
    assert ok_json("tickets", "show", ticket["id"])["resolution"]["outcome"] == "failed"
    # that run parked a new ticket; a person chooses retry again, and the next run succeeds
    [newest, _] = ok_json("tickets", "list", "--status", "all", "--op", "sync")
    assert bb("tickets", "resolve", newest["id"], "--choice", "retry").returncode == 0
    assert (
        bb("run", "--op", "sync", "--", *flaky(tmp_path / "fresh", 0), stdin=subprocess.DEVNULL).returncode
        == 0
    )
    assert ok_json("tickets", "show", newest["id"])["resolution"]["outcome"] == "succeeded"


def test_without_a_terminal_a_missing_program_exits_127_and_a_deadline_124(
    home: Path, tmp_path: Path
) -> None:
    configure(home, {**FAST, "retry.initial_delay": 0.3, "retry.max_delay": 0.3})
    missing = bb("run", "--op", "gone", "--", str(tmp_path / "no-such-program"), stdin=subprocess.DEVNULL)
    assert missing.returncode == 127 and "parked as ticket" in missing.stderr
    late = bb(
        "run",
        "--op",
        "late",
        "--deadline",
        "200ms",
        "--",
        *flaky(tmp_path / "n", 9),
        stdin=subprocess.DEVNULL,
    )
    assert late.returncode == 124 and "parked as ticket" in late.stderr
    assert {t["operation"] for t in ok_json("tickets", "list")} == {"gone", "late"}


def test_run_with_manual_mode_park_exits_4(home: Path, tmp_path: Path) -> None:
    configure(home, FAST)
    configure(home, {"manual.mode": "park"}, operation="nightly")
    done = bb(
        "run", "--op", "nightly", "--attempts", "1", "--", *flaky(tmp_path / "n", 9), stdin=subprocess.DEVNULL
    )
    assert done.returncode == 4 and "parked as ticket" in done.stderr
    configure(home, {"manual.mode": "raise"}, operation="quiet")
    done = bb(
        "run", "--op", "quiet", "--attempts", "1", "--", *flaky(tmp_path / "m", 9), stdin=subprocess.DEVNULL
    )
    assert done.returncode == 75 and "ticket" not in done.stderr
    assert [t["operation"] for t in ok_json("tickets", "list")] == ["nightly"]


def test_run_at_a_terminal_shows_the_ticket_and_runs_again_with_more_attempts(
    home: Path, tmp_path: Path
) -> None:
    configure(home, FAST)
    counter = tmp_path / "n"
    term = PtyProcess(
        ["run", "--op", "sync", "--attempts", "2", "--", *flaky(counter, 3, "--out", "synced\n")]
    )
    try:
        deadline = time.monotonic() + 30
        while (
            "Choose 1-3" not in plain(term.text())
            and time.monotonic() < deadline
            and term.proc.poll() is None
        ):
            term.pump()
        screen = plain(term.text())
        assert "recovery ticket" in screen and "What to check" in screen, screen
        assert "exited with code 75" in screen
        assert "[2] Retry with 4 attempts" in screen
        os.write(term.master, b"2\r\r\r\r")  # retry-adjusted; keep the suggested limits; no steps named
        assert term.wait() == 0
        screen = plain(term.text())
    finally:
        term.close()
    assert "synced" in screen and "the run again succeeded" in screen
    assert count(counter) == 4
    [ticket] = ok_json("tickets", "list", "--status", "resolved")
    assert (
        ticket["resolution"]["choice"] == "retry-adjusted" and ticket["resolution"]["outcome"] == "succeeded"
    )


@pytest.mark.parametrize(
    "command", ["list", "show X", "resolve X --choice retry", "outcome X --failed", "prune"]
)
def test_every_tickets_command_has_help(command: str) -> None:
    done = bb("tickets", *command.split()[:1], "--help")
    assert done.returncode == 0 and "--json" in done.stdout


def test_a_successful_run_after_a_retry_choice_is_recorded_as_its_follow_up(
    home: Path, tmp_path: Path
) -> None:
    from bounceback.cli._tickets_run import record_success

    ticket_id = park(home)
    assert record_success(home / "bounceback.db", "read-meter") is None  # nobody chose retry yet
    assert bb("tickets", "resolve", ticket_id, "--choice", "retry").returncode == 0
    assert record_success(home / "bounceback.db", "read-meter") == ticket_id
    assert ok_json("tickets", "show", ticket_id)["resolution"]["outcome"] == "succeeded"
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert record_success(blocker / "bounceback.db", "read-meter") is None  # store problems are not raised
