"""Commands under a policy: exit codes classified, output passed through, timeouts stop the process group."""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bounceback import AttemptTimeout, Backoff, ErrorKind, Policy
from bounceback.events import EventBus
from bounceback.integrations._subprocess import (
    CommandFailed,
    CommandRunner,
    ExitCodes,
    exit_code_of,
    run_command,
)
from bounceback.testing import FakeClock, RecordingSink

FLAKY = str(Path(__file__).resolve().parents[1] / "flaky_command.py")
QUICK = Backoff(initial=0.5, max_delay=10, jitter="none")


def flaky(counter: Path, failures: int, *extra: str) -> list[str]:
    return [sys.executable, FLAKY, str(counter), str(failures), *extra]


def policy(attempts: int = 5, **kw: object) -> Policy:
    # Waits happen on a fake clock: the test never sleeps between attempts.
    return Policy("cmd", attempts=attempts, backoff=QUICK, clock=FakeClock(), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "kind", "reason"),
    [
        (75, "transient", "listed in run.transient_codes"),
        (126, "permanent", "listed in run.permanent_codes"),
        (127, "permanent", "listed in run.permanent_codes"),
        (-signal.SIGTERM, "transient", "stopped by SIGTERM from outside"),
        (-signal.SIGKILL, "transient", "stopped by SIGKILL from outside"),
        (-signal.SIGHUP, "transient", "stopped by SIGHUP from outside"),
        (143, "transient", "a shell reporting SIGTERM from outside"),
        (1, "transient", "not listed; run.unknown_codes says transient"),
        (-signal.SIGSEGV, "transient", "not listed; run.unknown_codes says transient"),
    ],
)
def test_default_exit_code_classification(code: int, kind: str, reason: str) -> None:
    verdict = ExitCodes().classify(code)
    assert (verdict.kind.value, verdict.reason) == (kind, reason)


def test_exit_codes_from_settings_and_refusals() -> None:
    codes = ExitCodes.from_settings(
        {"run.transient_codes": (1, 75), "run.permanent_codes": (2,), "run.unknown_codes": "permanent"}
    )
    assert codes.classify(1).kind is ErrorKind.TRANSIENT
    assert codes.classify(2).kind is ErrorKind.PERMANENT
    assert codes.classify(3).kind is ErrorKind.PERMANENT
    # Listed as both: permanent wins (never retry what someone said cannot work).
    assert ExitCodes(transient={5}, permanent={5}).classify(5).kind is ErrorKind.PERMANENT
    with pytest.raises(ValueError, match=r"run\.unknown_codes: got 'maybe'"):
        ExitCodes(unknown="maybe")
    with pytest.raises(ValueError, match=r"run.transient_codes: got \[0, 300\]"):
        ExitCodes(transient={0, 300, 75})
    with pytest.raises(ValueError, match="argv"):
        CommandRunner([])


def test_retries_until_the_command_succeeds_and_output_passes_through(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    counter = tmp_path / "n"
    argv = flaky(counter, 2, "--out", "payload ünïcode\ttab\n", "--err", "warn\n", "--fail-out", "partial")
    result = run_command(argv, policy())
    assert (result.returncode, result.attempts) == (0, 3)
    assert counter.read_text() == "3"
    out, err = capfd.readouterr()
    # The command wrote straight to the inherited descriptors: nothing added, nothing lost.
    assert out == "partial\npartial\npayload ünïcode\ttab\n"
    assert err == "warn\n"


def test_permanent_codes_and_missing_commands_are_not_retried(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    with pytest.raises(CommandFailed) as info:
        run_command(flaky(counter, 9, "--code", "126"), policy())
    assert counter.read_text() == "1" and info.value.returncode == 126
    assert info.value.verdict.kind is ErrorKind.PERMANENT
    with pytest.raises(CommandFailed) as missing:
        run_command([str(tmp_path / "no-such-program")], policy())
    assert missing.value.returncode == 127 and "was not found" in str(missing.value)
    assert exit_code_of(missing.value) == 127


def test_unknown_codes_follow_the_setting(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    with pytest.raises(CommandFailed) as info:
        run_command(flaky(counter, 9, "--code", "1"), policy(), codes=ExitCodes(unknown="permanent"))
    assert counter.read_text() == "1" and exit_code_of(info.value) == 1
    counter.unlink()
    with pytest.raises(CommandFailed):
        run_command(flaky(counter, 9, "--code", "1"), policy(attempts=3))
    assert counter.read_text() == "3"


def test_death_by_sigterm_is_retried_and_reported_as_128_plus_n(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    bus = EventBus()
    with RecordingSink(bus) as sink:
        with pytest.raises(CommandFailed) as info:
            run_command(flaky(counter, 9, "--signal", "SIGTERM"), policy(attempts=2, bus=bus))
    assert counter.read_text() == "2"
    assert info.value.returncode == -signal.SIGTERM and exit_code_of(info.value) == 143
    failed = sink.events[0]
    assert "was killed by SIGTERM" in failed.error_message  # type: ignore[attr-defined]


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return True
    return state == "Z"  # a zombie has exited; only its parent's bookkeeping is left


def test_a_timeout_stops_the_whole_process_group(tmp_path: Path) -> None:
    counter, child_pid = tmp_path / "n", tmp_path / "grandchild"
    started = time.monotonic()
    with pytest.raises(AttemptTimeout) as info:
        run_command(
            flaky(counter, 9, "--hang", "--child-pid", str(child_pid)),
            policy(attempts=1),
            timeout=0.5,
            kill_grace=0.5,
        )
    took = time.monotonic() - started
    assert exit_code_of(info.value) == 124
    assert took < 5
    grandchild = int(child_pid.read_text())
    deadline = time.monotonic() + 5
    while not _gone(grandchild) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _gone(grandchild), "the command's own child survived the timeout"


def test_the_policy_deadline_bounds_a_running_attempt(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    started = time.monotonic()
    with pytest.raises(AttemptTimeout):
        run_command(flaky(counter, 9, "--hang"), Policy("cmd", attempts=5, deadline=0.5), kill_grace=0.2)
    assert time.monotonic() - started < 4
    assert counter.read_text() == "1"  # no time was left for a second attempt


def test_send_signal_reaches_the_running_group(tmp_path: Path) -> None:
    counter = tmp_path / "n"
    runner = CommandRunner(flaky(counter, 1, "--hang"), kill_grace=0.2)
    assert runner.send_signal(signal.SIGTERM) is False  # nothing running yet
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            runner.attempt()
        except BaseException as exc:
            errors.append(exc)

    worker = threading.Thread(target=attempt)
    worker.start()
    deadline = time.monotonic() + 10
    while (runner.running_pid is None or not counter.exists()) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert runner.send_signal(signal.SIGTERM)
    worker.join(10)
    [error] = errors
    assert isinstance(error, CommandFailed) and error.returncode == -signal.SIGTERM
    assert runner.running_pid is None


def test_a_cancel_token_stops_the_running_attempt_and_its_group(tmp_path: Path) -> None:
    from bounceback.core._time import CancelToken
    from bounceback.errors import RecoveryCancelled

    token = CancelToken()
    marker = tmp_path / "started"
    script = (
        "import pathlib, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "pathlib.Path(sys.argv[1]).write_text('x'); time.sleep(60)"
    )
    threading.Thread(
        target=lambda: (wait_until(marker.exists), token.cancel("operator pressed Cancel")), daemon=True
    ).start()
    policy = Policy("cancel-me", attempts=3, cancel=token)
    started = time.monotonic()
    with pytest.raises(RecoveryCancelled) as caught:
        run_command(
            [sys.executable, "-c", script, str(marker)],
            policy,
            stop_when=lambda: token.reason if token.is_cancelled else None,
        )
    assert time.monotonic() - started < 30  # not the command's 60 s: stopped, even though it ignores SIGTERM
    assert caught.value.attempts == 1 and "operator pressed Cancel" in caught.value.reason


def wait_until(predicate: Callable[[], bool], seconds: float = 20.0) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.02)
    return predicate()
