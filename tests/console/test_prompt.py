"""The interactive prompt: a real pseudo-terminal session, untrusted text shown as text, and answer handling."""

from __future__ import annotations

import fcntl
import io
import os
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

from rich.console import Console

from bounceback import GiveUp
from bounceback.console import TerminalPrompter, render_ticket
from bounceback.core.classify._rules import DEFAULT_CLASSIFIER
from bounceback.core.recovery._tickets import ChoiceKind, Record, Ticket, open_ticket, rank
from bounceback.stores._tickets import SqliteTickets
from bounceback.testing import FakeClock

PROGRAM = Path(__file__).with_name("prompt_program.py")
ROOT = Path(__file__).resolve().parents[2]
ANSI = re.compile(rb"\x1b\[[0-9;?]*[A-Za-z]")
NOW = 1_800_000_000.0
NASTY = "[bold red]boom[/] <script>alert(1)</script> \x1b[2J\x1b]0;pwned\x07 \u202eevil"


def ticket(
    message: str = NASTY, skip: bool = False, error: BaseException | None = None, now: float = NOW
) -> Ticket:
    error = error or ConnectionRefusedError(111, message + " Connect call failed ('10.0.0.7', 8080)")
    info = GiveUp("read-meter", error, "attempts", (), DEFAULT_CLASSIFIER.classify(error), "r", 2.0, None)
    return open_ticket(info, now=now, can_skip=skip)


class Terminal:
    """A child process on a pseudo-terminal 160 columns wide; reads what it draws, types answers."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 160, 0, 0))
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.data = b""

    def _pump(self, timeout: float) -> None:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if ready:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:  # the child closed the terminal
                chunk = b""
            if not chunk:
                raise EOFError
            self.data += chunk

    def expect(self, marker: bytes, timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while marker not in ANSI.sub(b"", self.data):
            if time.monotonic() > end:
                raise AssertionError(f"{marker!r} not shown; screen so far:\n{self.text}")
            try:
                self._pump(0.05)
            except EOFError:
                raise AssertionError(f"{marker!r} not shown before exit; screen:\n{self.text}") from None

    def type(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\r")

    def finish(self, timeout: float = 30.0) -> int:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                self._pump(0.05)
            except EOFError:
                break
            if self.proc.poll() is not None and not select.select([self.master], [], [], 0)[0]:
                break
        os.close(self.master)
        return self.proc.wait(timeout)

    @property
    def text(self) -> str:
        return ANSI.sub(b"", self.data).decode(errors="replace")


def test_a_person_at_a_terminal_sees_the_ticket_and_chooses(home: Path) -> None:
    # Five earlier tickets of this operation: the firewall step worked 4 of 5 times.
    with SqliteTickets(home / "bounceback.db") as store:
        for n in range(5):
            past = store.park(ticket("refused", now=time.time() - 3600))
            store.decide(past.id, "retry", by="bo", did=["firewall"])
            store.record_outcome(past.id, n != 2)
    env = {**os.environ, "BOUNCEBACK_HOME": str(home), "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    term = Terminal([sys.executable, str(PROGRAM)], env)
    term.expect(b"Choose 1-3")
    screen = term.text
    assert "recovery ticket" in screen and "read-meter" in screen
    # untrusted text: markup and HTML shown as written; its escape sequences never reach the terminal
    assert "[bold red]boom[/] <script>alert(1)</script>" in screen
    assert b"\x1b[2J" not in term.data and b"\x1b]0;pwned" not in term.data and b"\x07" not in term.data
    # guidance filled from the error, ranked by past outcomes
    assert re.search(
        r"1\.\s+Check that no firewall, VPN or container network rule blocks port 8080 on 10\.0\.0\.7\.",
        screen,
    )
    assert "(worked 4 of 5 times)" in screen
    assert re.search(r"\[1\] Retry now.*\(worked 4 of 5 times\)", screen)
    assert "[3] Abort" in screen
    term.type("x3")  # step 3 (the address check, after firewall and service-up) was not useful
    term.expect(b"step 3 was not useful")
    term.type("1")
    term.expect(b"Which steps did you take?")
    term.type("1")
    term.expect(b"result: 42 kWh after 4 calls")
    assert term.finish() == 0
    with SqliteTickets(home / "bounceback.db") as store:
        (latest, *_) = store.list()
        assert latest.resolution is not None
        assert latest.resolution.choice is ChoiceKind.RETRY and latest.resolution.by == "ann"
        assert latest.resolution.did == ("firewall",) and latest.resolution.not_useful == ("address",)
        assert latest.resolution.outcome == "succeeded"
        assert store.stats("read-meter", "connection-refused")["step:firewall"] == Record(6, 5)


def test_render_shows_untrusted_text_verbatim_and_without_controls() -> None:
    out = io.StringIO()
    Console(file=out, width=200, force_terminal=True).print(render_ticket(ticket(), now=NOW))
    raw = out.getvalue()
    plain = ANSI.sub(b"", raw.encode()).decode()
    assert "[bold red]boom[/] <script>alert(1)</script> [2J]0;pwned evil" in plain
    assert "\x1b[2J" not in raw and "\x07" not in raw and "\u202e" not in raw
    # markup in the text was not applied: no bold red style codes around "boom"
    assert "\x1b[1;31mboom" not in raw


def test_render_shows_records_attempts_and_resolution() -> None:
    ranked = rank(ticket("refused"), {"step:address": Record(5, 4), "choice:retry": Record(2, 1)})
    res = ranked.decide("retry", by="ann", at=NOW + 5, note="<b>rebooted</b>")
    from dataclasses import replace

    done = replace(ranked, status="resolved", resolution=replace(res, outcome="succeeded"))
    out = io.StringIO()
    Console(file=out, width=200).print(render_ticket(done, now=NOW, numbered_choices=False))
    text = out.getvalue()
    assert re.search(r"1\.\s+Check the address and port.*\(worked 4 of 5 times\)", text)
    assert re.search(r"retry\s+Retry now.*\(worked 1 of 2 times\)", text)
    assert "Resolved by ann at" in text and "with retry; the follow-up succeeded" in text
    assert "note: <b>rebooted</b>" in text


def run_prompt(answers: str, t: Ticket | None = None) -> tuple[object, str]:
    out = io.StringIO()
    prompter = TerminalPrompter(
        Console(file=out, width=150), input=io.StringIO(answers), who="ann", clock=FakeClock(wall_start=NOW)
    )
    return prompter.ask(t or ticket("refused")), out.getvalue()


def test_bad_answers_are_asked_again() -> None:
    res, out = run_prompt("\nseven\n0\n9\nx9\n?\n2\n0\n12\nsoon\n-5\n90s\n5, 2\n3 2\n")
    assert res.choice is ChoiceKind.RETRY_ADJUSTED  # type: ignore[attr-defined]
    assert (res.attempts, res.deadline, res.did) == (12, 90.0, ("firewall", "address"))  # type: ignore[attr-defined]
    assert out.count("please answer with a number from 1 to 3") == 4
    assert "not a step:" in out
    assert out.count("recovery ticket") == 2  # "?" showed it again
    assert "a whole number >= 1, please" in out and "deadline: got 'soon'" in out
    assert "step: got '5'" in out


def test_end_of_input_aborts_with_a_note_and_skip_needs_a_program_value() -> None:
    res, _ = run_prompt("")
    assert res.choice is ChoiceKind.ABORT and res.note == "no answer: the input ended"  # type: ignore[attr-defined]
    res, out = run_prompt("x1\nx2\n3\n", ticket("refused", skip=True))
    assert res.choice is ChoiceKind.SKIP and res.not_useful == ("service-up", "address")  # type: ignore[attr-defined]
    assert "[3] Skip: use the fallback value" in out


def test_not_attended_without_terminals() -> None:
    assert not TerminalPrompter(Console(file=io.StringIO()), input=io.StringIO()).is_attended()


def test_suggested_limits_are_kept_when_the_person_just_presses_enter() -> None:
    t = ticket("refused")
    res, _ = run_prompt("2\n\n\n\n", t)
    assert res.choice is ChoiceKind.RETRY_ADJUSTED  # type: ignore[attr-defined]
    assert res.attempts == t.choice("retry-adjusted").attempts  # type: ignore[attr-defined]
    res, _ = run_prompt("2\n\n", t)  # the input ended halfway: nobody is there to confirm, so abort
    assert res.choice is ChoiceKind.ABORT  # type: ignore[attr-defined]
