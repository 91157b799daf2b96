"""Run a command under a Policy: exit codes classified, a per-attempt timeout that stops the whole process group.

The command inherits stdin, stdout and stderr, so its output passes through untouched; only bounceback's
own display writes to stderr around it. Each attempt runs in a new process group, so a timeout (or a
cancel, or a signal to the wrapper) stops the command *and* everything it started: SIGTERM to the group,
then SIGKILL after ``kill_grace`` seconds (``stop_grace`` for a cancel), and SIGKILL again for anything of
the group left once the command itself has ended.

Exit codes, in this order (settings ``run.permanent_codes``, ``run.transient_codes``,
``run.unknown_codes``):

1. a code listed as permanent (default 126 "cannot execute", 127 "not found") is not retried;
2. a code listed as transient (default 75, ``EX_TEMPFAIL``) is retried;
3. death by SIGTERM, SIGKILL or SIGHUP (or a shell's ``128 + N`` for them) is transient: the command was
   stopped from outside, not wrong;
4. anything else follows ``run.unknown_codes`` (default transient).
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bounceback.core._control import RunControls, run_controls
from bounceback.core._events import EventBus, RunEnded, RunStarted, default_bus
from bounceback.core._time import SYSTEM_CLOCK, CancelToken, Clock
from bounceback.core.classify._rules import Classification, ErrorKind
from bounceback.core.policy._policy import Policy
from bounceback.core.retry._state import RUN_PREFIX
from bounceback.errors import AttemptTimeout, ConfigError

__all__ = [
    "CommandFailed",
    "CommandResult",
    "CommandRun",
    "CommandRunner",
    "ExitCodes",
    "TIMEOUT_EXIT_CODE",
    "exit_code_of",
    "run_command",
]

TIMEOUT_EXIT_CODE = 124
"""The exit code reported for an attempt stopped by its timeout (as GNU ``timeout`` does)."""

_TRANSIENT_SIGNALS = frozenset({signal.SIGTERM, signal.SIGKILL, signal.SIGHUP})


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


@dataclass(frozen=True, slots=True)
class ExitCodes:
    """How a command's exit code is classified; see the module docstring for the order of the rules.

    >>> codes = ExitCodes()
    >>> codes.classify(75).kind, codes.classify(127).kind, codes.classify(-15).kind
    (<ErrorKind.TRANSIENT: 'transient'>, <ErrorKind.PERMANENT: 'permanent'>, <ErrorKind.TRANSIENT: 'transient'>)
    >>> ExitCodes(unknown="permanent").classify(1).reason
    'not listed; run.unknown_codes says permanent'
    """

    transient: frozenset[int] = frozenset({75})
    permanent: frozenset[int] = frozenset({126, 127})
    unknown: ErrorKind | str = ErrorKind.TRANSIENT
    transient_signals: frozenset[int] = field(default=_TRANSIENT_SIGNALS)

    def __post_init__(self) -> None:
        object.__setattr__(self, "transient", frozenset(self.transient))
        object.__setattr__(self, "permanent", frozenset(self.permanent))
        try:
            object.__setattr__(self, "unknown", ErrorKind(str(getattr(self.unknown, "value", self.unknown))))
        except ValueError:
            raise ConfigError("run.unknown_codes", self.unknown, "'transient' or 'permanent'") from None
        for name in ("transient", "permanent"):
            bad = [
                c
                for c in getattr(self, name)
                if isinstance(c, bool) or not isinstance(c, int) or not 0 < c < 256
            ]
            if bad:
                raise ConfigError(f"run.{name}_codes", sorted(bad), "exit codes between 1 and 255")

    @classmethod
    def from_settings(cls, values: Mapping[str, Any]) -> ExitCodes:
        """Read ``run.transient_codes``, ``run.permanent_codes`` and ``run.unknown_codes``.

        >>> ExitCodes.from_settings({"run.transient_codes": (75, 111)}).transient == {75, 111}
        True
        """
        return cls(
            transient=frozenset(values.get("run.transient_codes", (75,))),
            permanent=frozenset(values.get("run.permanent_codes", (126, 127))),
            unknown=values.get("run.unknown_codes", "transient"),
        )

    def classify(self, returncode: int) -> Classification:
        """The verdict on one exit code (negative: killed by that signal, as ``subprocess`` reports it)."""
        if returncode in self.permanent:
            return Classification(ErrorKind.PERMANENT, "listed in run.permanent_codes")
        if returncode in self.transient:
            return Classification(ErrorKind.TRANSIENT, "listed in run.transient_codes")
        if returncode < 0 and -returncode in self.transient_signals:
            return Classification(ErrorKind.TRANSIENT, f"stopped by {_signal_name(-returncode)} from outside")
        if returncode > 128 and returncode - 128 in self.transient_signals:
            name = _signal_name(returncode - 128)
            return Classification(ErrorKind.TRANSIENT, f"a shell reporting {name} from outside")
        kind = ErrorKind(str(getattr(self.unknown, "value", self.unknown)))
        return Classification(kind, f"not listed; run.unknown_codes says {kind.value}")


class CommandFailed(subprocess.CalledProcessError):
    """A command ended with a non-zero exit code; ``verdict`` says whether that is worth another try.

    It carries its classification (``bounceback_kind``), so any Policy classifies it the same way.

    >>> err = CommandFailed(75, ["sync"], ExitCodes().classify(75))
    >>> str(err)
    'sync exited with code 75 (listed in run.transient_codes)'
    >>> err.cmd, err.verdict.kind.value
    (['sync'], 'transient')
    """

    def __init__(
        self, returncode: int, cmd: Sequence[str], verdict: Classification, detail: str = ""
    ) -> None:
        super().__init__(returncode, list(cmd))
        self.verdict = verdict
        self.detail = detail
        self.bounceback_kind = verdict.kind

    def __str__(self) -> str:
        if self.detail:
            what = self.detail
        elif self.returncode < 0:
            what = f"was killed by {_signal_name(-self.returncode)}"
        else:
            what = f"exited with code {self.returncode}"
        return f"{os.path.basename(self.cmd[0]) if self.cmd else 'command'} {what} ({self.verdict.reason})"


def exit_code_of(error: BaseException | None) -> int:
    """The exit code a wrapper should pass on for the error that ended the last attempt.

    Killed by signal N: ``128 + N`` (the shell's convention); timed out: 124; none: 0.

    >>> exit_code_of(None), exit_code_of(CommandFailed(-15, ["x"], ExitCodes().classify(-15)))
    (0, 143)
    """
    if error is None:
        return 0
    if isinstance(error, subprocess.CalledProcessError):
        code = int(error.returncode)
        return 128 - code if code < 0 else code
    if isinstance(error, AttemptTimeout):
        return TIMEOUT_EXIT_CODE
    return 1


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How a command run under a policy ended: ``returncode`` of the last attempt, ``attempts`` made."""

    returncode: int
    attempts: int


_RUN_PREFIX = RUN_PREFIX  # the core's: an announced command and its recovery share the process prefix
_run_numbers = itertools.count(1)


class CommandRun:
    """One run of a command as others see it: announced when its first attempt starts, cancellable from then on.

    A library call is journaled only once an attempt fails (its success path emits nothing). A command run
    by ``bounceback run`` may take an hour, and a person watches for it: a :class:`CommandRunner` given
    this object (``announce=``) calls :meth:`started` once its first attempt's process is running, which
    emits :class:`~bounceback.events.RunStarted`; :meth:`close` emits :class:`~bounceback.events.RunEnded` when the run
    is over. The journal shows the run as running attempt 1 in between, and forgets it when that attempt
    succeeded (no recovery took place, as for a library call).

    ``token`` is the cancel token to give the Policy that runs the command. While the run controls are
    enabled (a journal writer runs) it is registered under :attr:`run_id`, so a Cancel of the announced
    run (the dashboard, ``bounceback cancel``) cancels it: the runner's ``stop_when`` (polling
    ``run_controls.cancelled_reason()``) stops the attempt's process group, and the recovery that the
    failed attempt starts is a child of this token, so it ends as cancelled at once. ``parent`` (a token
    cancelled by signals) cancels it too. ``is_recovering`` (optional) tells that the policy already
    started a recovery (a breaker refused the first attempt): the command is not announced then, as the
    recovery is already shown.

    >>> bus, seen = EventBus(), []
    >>> _ = bus.subscribe(seen.append)
    >>> run = CommandRun("backup", ["true"], attempts=3, bus=bus)
    >>> runner = CommandRunner(["true"], operation="backup", announce=run)
    >>> Policy("backup", attempts=3, cancel=run.token).call(runner.attempt)
    0
    >>> run.close(0, runner.attempts)
    >>> [type(e).__name__ for e in seen], seen[0].attempts, seen[0].command
    (['RunStarted', 'RunEnded'], 3, ('true',))
    """

    def __init__(
        self,
        operation: str,
        argv: Sequence[str],
        *,
        attempts: int | None,
        deadline: float | None = None,
        parent: CancelToken | None = None,
        bus: EventBus | None = None,
        controls: RunControls = run_controls,
        clock: Clock = SYSTEM_CLOCK,
        is_recovering: Callable[[], bool] | None = None,
    ) -> None:
        self.operation = operation
        self.argv = tuple(argv)
        self.attempts = attempts
        self.deadline = None if deadline is None or deadline == math.inf else float(deadline)
        self.run_id = f"{_RUN_PREFIX}-c{next(_run_numbers)}"
        """The run's id while its first attempt runs (``bounceback cancel`` takes it)."""
        self._bus = bus or default_bus
        self._controls = controls
        self._clock = clock
        self._parent = parent
        self._is_recovering = is_recovering
        self._registered = controls.enabled
        if self._registered:
            self.token = controls.open(self.run_id, parent, operation)
        else:
            self.token = parent.child() if parent is not None else CancelToken()
        self._started: float | None = None
        self._announced = False
        self._closed = False

    @property
    def announced(self) -> bool:
        """True once :class:`~bounceback.events.RunStarted` was emitted for this run."""
        return self._announced

    def started(self, pid: int) -> None:
        """The first attempt's process ``pid`` is running: announce the run (once)."""
        if self._started is not None or self._closed:
            return
        self._started = self._clock.monotonic()
        if self._is_recovering is not None and self._is_recovering():
            return
        bus = self._bus
        if bus.listening:
            wall = self._clock.wall()
            deadline_at = None if self.deadline is None else wall + self.deadline
            self._announced = True
            bus.emit(
                RunStarted(self.operation, wall, self.run_id, self.attempts, deadline_at, pid, self.argv)
            )

    def close(self, returncode: int, attempts: int) -> None:
        """The run is over (``returncode`` of its last attempt, ``attempts`` made): say so, and unregister."""
        if self._closed:
            return
        self._closed = True
        if self._registered:
            self._controls.close(self.run_id)
        elif self._parent is not None:
            self._parent.forget(self.token)
        if self._announced and self._bus.listening and self._started is not None:
            elapsed = self._clock.monotonic() - self._started
            self._bus.emit(
                RunEnded(self.operation, self._clock.wall(), self.run_id, attempts, elapsed, returncode)
            )


class CommandRunner:
    """Runs attempts of one command; :meth:`attempt` is the function a Policy calls.

    ``timeout`` bounds each attempt (seconds, None for none) and ``deadline`` the whole run from the start
    of the first attempt, so an attempt is also stopped when the deadline passes. ``around_attempt``
    returns a context manager entered around each attempt (the CLI clears its live display with it).
    ``stop_when`` is polled (every 50 ms) while an attempt runs: when it returns a reason (the run was
    cancelled), the attempt's process group is stopped within ``stop_grace`` seconds and the attempt
    fails as transient, so the policy ends the run as cancelled rather than waiting for the command.
    With ``terminal`` (a person at the controlling terminal), each attempt's process group is made the
    terminal's foreground group while it runs, so the command can read the keyboard (a background group
    reading it is stopped or gets EIO), and Ctrl-C typed there reaches the command; a command that Ctrl-C
    ended is reported to this process as its own SIGINT (as a shell does), so recovery stops. With
    ``announce`` (a :class:`CommandRun`), the run is announced once the first attempt's process started.

    >>> runner = CommandRunner(["true"])
    >>> runner.attempt(), runner.attempts
    (0, 1)
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        operation: str = "command",
        codes: ExitCodes | None = None,
        timeout: float | None = None,
        deadline: float | None = None,
        kill_grace: float = 2.0,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        around_attempt: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
        clock: Clock = SYSTEM_CLOCK,
        stop_when: Callable[[], str | None] | None = None,
        stop_grace: float = 0.5,
        terminal: bool = False,
        announce: CommandRun | None = None,
    ) -> None:
        if not argv or not all(isinstance(a, str) for a in argv):
            raise ConfigError(
                "argv", argv, "a command and its arguments as strings, such as ['rsync', '-a', ...]"
            )
        self.argv = list(argv)
        self.operation = operation
        self.codes = codes or ExitCodes()
        self.timeout = math.inf if timeout is None else float(timeout)
        self.deadline = math.inf if deadline is None else float(deadline)
        self.kill_grace = kill_grace
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.around_attempt = around_attempt
        self.clock = clock
        self.stop_when = stop_when
        self.stop_grace = stop_grace
        self.terminal = terminal
        self.announce = announce
        self.attempts = 0
        self.last_error: BaseException | None = None
        self._started: float | None = None
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None

    # -- one attempt ---------------------------------------------------------------------------------

    def attempt(self) -> int:
        """Run the command once; return 0, or raise CommandFailed / AttemptTimeout."""
        why = self.stop_when() if self.stop_when is not None else None
        if why:
            # Stopped between two attempts (a zero wait): do not start another one.
            raise CommandFailed(
                -signal.SIGTERM, self.argv, Classification(ErrorKind.TRANSIENT, why), "was not run"
            )
        now = self.clock.monotonic()
        if self._started is None:
            self._started = now
        self.attempts += 1
        budget = min(self.timeout, self.deadline - (now - self._started))
        cm = self.around_attempt() if self.around_attempt is not None else contextlib.nullcontext()
        with cm:
            self.last_error = None
            try:
                self._run(max(0.0, budget))
            except BaseException as exc:
                self.last_error = exc
                raise
        return 0

    def _run(self, budget: float) -> None:
        tty = _own_terminal() if self.terminal else None
        try:
            # A group of its own: a timeout stops the command and everything it started. At a terminal
            # that group is the terminal's foreground while it runs (set in the child and here, as a
            # shell does, so neither order of the two races).
            proc = subprocess.Popen(
                self.argv,
                cwd=self.cwd,
                env=self.env,
                process_group=0,
                preexec_fn=_foreground_in_child(tty) if tty is not None else None,  # noqa: PLW1509
            )
        except FileNotFoundError as exc:
            _release(tty)  # the child may have taken the terminal before its exec failed
            raise CommandFailed(
                127, self.argv, self.codes.classify(127), f"was not found ({exc.strerror})"
            ) from exc
        except PermissionError as exc:
            _release(tty)  # the child may have taken the terminal before its exec failed
            raise CommandFailed(
                126, self.argv, self.codes.classify(126), f"cannot be run ({exc.strerror})"
            ) from exc
        with self._lock:
            self._proc = proc
        if tty is not None:
            _set_foreground(tty, proc.pid)
        if self.announce is not None and self.attempts == 1:
            self.announce.started(proc.pid)
        try:
            try:
                code = self._wait(proc, budget)
            except subprocess.TimeoutExpired:
                self._stop(proc)
                raise AttemptTimeout(self.operation, budget) from None
        except BaseException:
            # KeyboardInterrupt (second Ctrl-C) or anything else: leave no command running behind us.
            if proc.poll() is None:
                self._stop(proc, grace=0.0)
            raise
        finally:
            if tty is not None:
                _set_foreground(tty, os.getpgrp())  # the keyboard is ours again (the prompt, Ctrl-C)
                _release(tty)  # the child may have taken the terminal before its exec failed
            with self._lock:
                self._proc = None
        if tty is not None and code == -signal.SIGINT:
            # Ctrl-C typed at the terminal went to the command (the foreground group), not to us: it is the
            # person's Ctrl-C all the same, so this process hears it too (its handler stops recovery).
            os.kill(os.getpid(), signal.SIGINT)
        if code != 0:
            raise CommandFailed(code, self.argv, self.codes.classify(code))

    def _wait(self, proc: subprocess.Popen[bytes], budget: float) -> int:
        """The command's exit code; TimeoutExpired past ``budget``; CommandFailed when stopped on request."""
        if self.stop_when is None:
            return proc.wait(None if budget == math.inf else budget)
        # Real time, like the timeout of proc.wait: the command runs in the real world, not on self.clock.
        limit = math.inf if budget == math.inf else time.monotonic() + budget
        while True:
            left = limit - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(self.argv, budget)
            try:
                return proc.wait(min(0.05, left))
            except subprocess.TimeoutExpired:
                pass
            why = self.stop_when()
            if why:
                self._stop(proc, grace=self.stop_grace)
                # Transient whatever run.unknown_codes says: the run ends as cancelled, not as permanent.
                verdict = Classification(ErrorKind.TRANSIENT, why)
                raise CommandFailed(proc.returncode, self.argv, verdict, "was stopped")

    def _stop(self, proc: subprocess.Popen[bytes], grace: float | None = None) -> None:
        """SIGTERM to the group, then SIGKILL after the grace period; then SIGKILL to what is left of it."""
        grace = self.kill_grace if grace is None else grace
        if grace > 0:
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        if proc.poll() is None:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
        # The command ended; what it started may still run in its group (a child that ignores SIGTERM).
        _signal_group(proc.pid, signal.SIGKILL)

    # -- from other threads (signal handlers) -------------------------------------------------------------

    @property
    def running_pid(self) -> int | None:
        """The process id (and group id) of the attempt running now, if any."""
        with self._lock:
            return self._proc.pid if self._proc is not None else None

    def send_signal(self, sig: int) -> bool:
        """Send ``sig`` to the running attempt's process group; False when none is running."""
        pid = self.running_pid
        if pid is None:
            return False
        return _signal_group(pid, sig)


def _own_terminal() -> int | None:
    """A descriptor of our controlling terminal when this process is in its foreground, else None.

    None when there is no controlling terminal or this process is not in its foreground (run from a
    script, in the background, or under a pseudo-terminal that is not its controlling terminal).
    """
    try:
        fd = os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY)
    except OSError:
        return None
    try:
        if os.tcgetpgrp(fd) == os.getpgrp():
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _release(fd: int | None) -> None:
    """Take the terminal back for our own group (the prompt, our Ctrl-C) and close ``fd``."""
    if fd is not None:
        _set_foreground(fd, os.getpgrp())
        os.close(fd)


def _set_foreground(fd: int, pgid: int) -> None:
    # A process outside the foreground group that sets it gets SIGTTOU: blocked around the call.
    blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTTOU})
    try:
        os.tcsetpgrp(fd, pgid)
    except OSError:
        pass
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _foreground_in_child(fd: int) -> Callable[[], None]:
    """What the child runs between fork and exec: take the terminal for its new group before the command
    can read it (as a shell does), so even a command that reads at once never meets a background read."""

    def prepare() -> None:
        _set_foreground(fd, os.getpgrp())

    return prepare


def _signal_group(pgid: int, sig: int) -> bool:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def run_command(
    argv: Sequence[str],
    policy: Policy,
    *,
    codes: ExitCodes | None = None,
    timeout: float | None = None,
    kill_grace: float = 2.0,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
    around_attempt: Callable[[], contextlib.AbstractContextManager[Any]] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    stop_when: Callable[[], str | None] | None = None,
) -> CommandResult:
    """Run ``argv`` under ``policy`` until it exits 0 or recovery gives up (then the last error is raised).

    The policy's deadline bounds every attempt too; ``timeout`` bounds each one. ``clock`` should be the
    policy's clock (both measure the deadline). ``stop_when`` is polled while an attempt runs: return a
    reason (say, ``lambda: token.reason if token.is_cancelled else None`` for the policy's cancel token)
    and the attempt's process group is stopped at once (see :class:`CommandRunner`).

    >>> from bounceback import Policy
    >>> run_command(["true"], Policy("docs-true", attempts=2))
    CommandResult(returncode=0, attempts=1)
    """
    deadline = policy.config.deadline
    runner = CommandRunner(
        argv,
        operation=policy.operation or "command",
        codes=codes,
        timeout=timeout,
        deadline=None if deadline == math.inf else deadline,
        kill_grace=kill_grace,
        cwd=cwd,
        env=env,
        around_attempt=around_attempt,
        clock=clock,
        stop_when=stop_when,
    )
    policy.call(runner.attempt)
    return CommandResult(0, runner.attempts)
