"""``bounceback run --op NAME -- CMD [ARGS...]``: run any command under an operation's policy.

Settings come from the home database (explicit flags win); a circuit breaker named after the operation
keeps its state in the shared breaker store (the home database by default), so a cron job calling a dead
service fails fast across invocations. Live progress goes to stderr, the command's own output passes
through untouched, every run is journaled, and Ctrl-C stops the automatic recovery at once. The exit codes
are listed in ``_run_support``.
"""

from __future__ import annotations

import logging
import signal
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import click
from rich.console import Console

from bounceback.cli._app import AppContext, cli, pass_app
from bounceback.cli._run_support import (
    EXIT_CIRCUIT_OPEN,
    EXIT_CODES,
    EXIT_STOPPED,
    Interrupts,
    ManualStep,
    manual_handler,
    signal_name,
)
from bounceback.cli._tickets_run import record_success
from bounceback.console._progress import ProgressDisplay
from bounceback.console._text import clock_time, plural
from bounceback.core._control import run_controls
from bounceback.core._events import AttemptFailed, Event, RecoveryExhausted, RecoverySucceeded, default_bus
from bounceback.core._time import CancelToken, parse_duration
from bounceback.core.breaker._breaker import BreakerState, CircuitBreaker
from bounceback.core.policy._policy import Policy
from bounceback.core.settings._source import check_operation
from bounceback.errors import BulkheadFull, CircuitOpenError, RecoveryCancelled, StoreError
from bounceback.integrations._subprocess import (
    TIMEOUT_EXIT_CODE,
    CommandFailed,
    CommandRun,
    CommandRunner,
    ExitCodes,
    exit_code_of,
)
from bounceback.stores._shared import breaker_store_from_settings, store_options
from bounceback.stores.journal._writer import JournalWriter

__all__ = ["run_command_line"]

_log = logging.getLogger("bounceback.cli")


class _Duration(click.ParamType[float, Any]):
    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> float:
        if isinstance(value, (int, float)):
            return float(value)
        try:
            seconds = parse_duration(str(value), param.name if param and param.name else "duration")
        except ValueError as exc:
            self.fail(str(exc), param, ctx)
        if seconds <= 0:
            self.fail(f"got {value!r}; expected a duration > 0 such as 250ms, 30s or 5m", param, ctx)
        return seconds


class _Tracker:
    """Remembers the current run of this invocation (for the journal entry of an abort)."""

    def __init__(self) -> None:
        self.run_id: str | None = None
        """The run going on now (None between runs)."""
        self.last_run_id: str | None = None
        """The run that ended last."""
        self.started_at = 0.0
        self.started = 0.0
        self.attempts = 0

    def __call__(self, event: Event) -> None:
        if isinstance(event, AttemptFailed):
            if event.run_id != self.run_id:
                self.run_id, self.started = event.run_id, time.monotonic() - event.elapsed
                self.started_at = event.at - event.elapsed
            self.attempts = event.attempt
        elif isinstance(event, (RecoveryExhausted, RecoverySucceeded)) and event.run_id == self.run_id:
            self.last_run_id, self.run_id = self.run_id, None


def _say(text: str) -> None:
    click.echo(f"bounceback: {text}", err=True)


def _open_message(operation: str, exc: CircuitOpenError) -> str:
    if exc.retry_at is None:
        return (
            f"circuit open for {operation} until a person closes it ({exc.state}); "
            f"`bounceback breaker close {operation}` lets calls through again"
        )
    return (
        f"circuit open for {operation} until {clock_time(exc.retry_at, time.time())}; the command was not run "
        f"(`bounceback breaker close {operation}` lets calls through now)"
    )


def _refusal(breaker: CircuitBreaker) -> CircuitOpenError | None:
    """The breaker's refusal if it is open now (its rejection is counted and journaled), else None."""
    if breaker.state not in (BreakerState.OPEN, BreakerState.FORCED_OPEN):
        return None
    try:
        permit = breaker.acquire()
    except CircuitOpenError as exc:
        return exc
    except BulkheadFull:
        return None
    breaker.abandon(permit)  # the open time ended just now: the policy will take its own probe permit
    return None


def _breaker(app: AppContext, settings: Any, operation: str, values: Any) -> CircuitBreaker | None:
    if not values.get("breaker.enabled", True):
        return None
    store = breaker_store_from_settings(settings, path=app.database, timeout=app.timeout)
    return CircuitBreaker.from_settings(operation, settings, store=store, **store_options(settings))


def _epilog() -> str:
    width = max(len(code) for code, _ in EXIT_CODES)
    rows = [
        textwrap.fill(
            meaning,
            width=96,
            initial_indent=f"  {code:<{width}}  ",
            subsequent_indent=" " * (width + 4),
        )
        for code, meaning in EXIT_CODES
    ]
    # \b keeps click from re-wrapping the table into one paragraph.
    return "\b\nExit codes (the same table is in docs/run.md):\n" + "\n".join(rows)


_EPILOG = _epilog()


@cli.command(
    "run",
    context_settings={"allow_interspersed_args": False},
    epilog=_EPILOG,
)
@click.option(
    "--op", "operation", required=True, metavar="NAME", help="The operation: its settings and breaker."
)
@click.option("--attempts", type=click.IntRange(1, 1_000_000), help="Attempts in all (retry.max_attempts).")
@click.option("--deadline", type=_Duration(), help="Time limit of all attempts and waits (retry.deadline).")
@click.option(
    "--timeout",
    "attempt_timeout",
    type=_Duration(),
    help="Time limit of one attempt (retry.attempt_timeout).",
)
@click.option("--no-progress", is_flag=True, help="No live progress on stderr.")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@pass_app
def run_command_line(
    app: AppContext,
    operation: str,
    attempts: int | None,
    deadline: float | None,
    attempt_timeout: float | None,
    no_progress: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND, retrying it under the operation's policy: bounceback run --op NAME -- CMD [ARGS...]

    Exit codes 75 and death by SIGTERM/SIGKILL/SIGHUP are retried; 126 and 127 are not; other codes
    follow run.unknown_codes. The command's output passes through untouched; progress goes to stderr.
    """
    check_operation(operation)
    settings = app.settings()
    values = settings.effective(operation)
    codes = ExitCodes.from_settings(values)
    per_attempt = attempt_timeout if attempt_timeout is not None else values.get("retry.attempt_timeout")
    explicit: dict[str, Any] = {}
    if attempts is not None:
        explicit["attempts"] = attempts
    if deadline is not None:
        explicit["deadline"] = deadline
    elif settings.get("retry.deadline", operation).source == "default":
        # A command runs as long as it runs (a backup may take an hour): the library's 30 s default
        # deadline is for calls, so a command has none unless --deadline or retry.deadline sets one.
        explicit["deadline"] = None
    writer = _journal(app, settings, values)
    try:
        code = _run(
            app, settings, values, operation, list(command), codes, per_attempt, explicit, no_progress
        )
    finally:
        if writer is not None:
            writer.close()
    sys.exit(code)


def _journal(app: AppContext, settings: Any, values: Any) -> JournalWriter | None:
    if not values.get("journal.enabled", True):
        return None
    try:
        return JournalWriter(app.database, settings=settings, timeout=app.timeout).start()
    except StoreError as exc:
        # The journal is a record, not a reason to leave the command unrun.
        _say(f"warning: not journaling this run: {exc}")
        return None


def _run(
    app: AppContext,
    settings: Any,
    values: Any,
    operation: str,
    argv: list[str],
    codes: ExitCodes,
    per_attempt: float | None,
    explicit: dict[str, Any],
    no_progress: bool,
) -> int:
    breaker = _breaker(app, settings, operation, values)
    if breaker is not None:
        refused = _refusal(breaker)
        if refused is not None:
            _say(_open_message(operation, refused))
            return EXIT_CIRCUIT_OPEN
    mode = "off" if no_progress else str(values.get("display.progress", "auto"))
    display = ProgressDisplay(
        console=Console(stderr=True), mode=mode, refresh=float(values.get("display.refresh", 0.1))
    )
    tracker = _Tracker()
    stop_tracking = default_bus.subscribe(tracker)
    holder: list[CommandRunner] = []
    allowed: list[int | None] = [None]

    def forward(sig: int) -> bool:
        return bool(holder) and holder[-1].send_signal(sig)

    interrupts = Interrupts(CancelToken(), forward).install()
    # A person at the terminal: the command gets the keyboard (and Ctrl-C) while it runs.
    attended = sys.stdin.isatty()

    def stop_when() -> str | None:
        # A signal to bounceback run, or a Cancel from another process (the journal writer cancels the run).
        return interrupts.stop_reason() or run_controls.cancelled_reason()

    def execute(limits: dict[str, Any]) -> tuple[int, BaseException | None]:
        # Announced from its first attempt on (the journal lists it, a Cancel of its id stops it); a
        # signal cancels its token too, so a signal stops even a run that has not failed yet.
        announced = CommandRun(
            operation,
            argv,
            attempts=None,
            parent=interrupts.token,
            is_recovering=lambda: tracker.run_id is not None,
        )
        returncode = 1
        # Per-attempt timeouts are the runner's (it stops the process group); the policy must not add its own.
        policy = Policy(
            operation,
            attempt_timeout=None,
            settings=settings,
            breaker=breaker,
            cancel=announced.token,
            **limits,
        )
        deadline = policy.config.deadline
        allowed[0] = announced.attempts = policy.config.attempts
        announced.deadline = None if deadline == float("inf") else deadline
        runner = CommandRunner(
            argv,
            operation=operation,
            codes=codes,
            timeout=per_attempt,
            deadline=announced.deadline,
            around_attempt=display.suspended,
            stop_when=stop_when,
            terminal=attended,
            announce=announced,
        )
        holder.append(runner)
        try:
            with display:
                policy.call(runner.attempt)
            returncode = 0
        except RecoveryCancelled as exc:
            returncode = exit_code_of(runner.last_error)
            return EXIT_STOPPED, exc
        except (CommandFailed, CircuitOpenError, BulkheadFull, TimeoutError) as exc:
            reason = getattr(exc, "bounceback_reason", "")
            returncode = exit_code_of(runner.last_error)
            # A run that ran out of time exits as GNU timeout does, whatever its last attempt returned.
            return (TIMEOUT_EXIT_CODE if reason == "deadline" else returncode), exc
        finally:
            policy.close()
            announced.close(returncode, runner.attempts)
        return 0, None

    try:
        code, error = execute(explicit)
        if error is None:
            record_success(app.database, operation)  # a person's "retry" on an earlier ticket worked
            return 0
        interrupts.check()  # a signal stopped the run: nobody is asked, nothing is run again
        return _after_give_up(
            operation, argv, settings, code, error, tracker, holder, interrupts, execute, explicit, allowed[0]
        )
    except KeyboardInterrupt as exc:
        display.stop()
        signum = getattr(exc, "signum", signal.SIGINT)
        if tracker.run_id is not None:
            _abort(operation, tracker, signal_name(signum))  # a second signal ended the run mid-way
        _say(f"{operation}: stopped by {signal_name(signum)}; nothing bounceback started is still running.")
        return 128 + signum
    finally:
        interrupts.uninstall()
        stop_tracking()


def _after_give_up(
    operation: str,
    argv: list[str],
    settings: Any,
    code: int,
    error: BaseException,
    tracker: _Tracker,
    holder: list[CommandRunner],
    interrupts: Interrupts,
    execute: Callable[[dict[str, Any]], tuple[int, BaseException | None]],
    explicit: dict[str, Any],
    allowed: int | None,
) -> int:
    """The manual-fallback step: the installed handler decides, else the default exit code."""
    if isinstance(error, RecoveryCancelled):
        reason, default = "cancelled", EXIT_STOPPED
    elif isinstance(error, (CircuitOpenError, BulkheadFull)):
        reason, default = "breaker", EXIT_CIRCUIT_OPEN
    else:
        reason, default = str(getattr(error, "bounceback_reason", "attempts")), code
    attempts = holder[-1].attempts if holder else 0
    elapsed = time.monotonic() - tracker.started if tracker.started else 0.0
    cancelled: list[str | None] = [None]

    def rerun(attempts: int | None = None, deadline: float | None = None) -> int:
        limits = dict(explicit)
        if attempts is not None:
            limits["attempts"] = attempts
        if deadline is not None:
            limits["deadline"] = deadline
        interrupts.rearm(CancelToken())
        interrupts.check()
        again, why = execute(limits)
        interrupts.check()  # stopped by a signal: bounceback run ends here, nothing is recorded as failed
        cancelled[0] = (
            str(getattr(why, "reason", "cancelled")) if isinstance(why, RecoveryCancelled) else None
        )
        return again

    handler = manual_handler()
    if handler is not None:
        step = ManualStep(
            operation=operation,
            argv=argv,
            reason=reason,
            attempts=attempts,
            exit_code=default,
            error=error,
            run_id=tracker.run_id or tracker.last_run_id,
            attended=sys.stdin.isatty() and sys.stderr.isatty(),
            settings=settings,
            rerun=rerun,
            elapsed=elapsed,
            allowed_attempts=allowed,
            asking=interrupts.asking,
            rerun_cancelled=lambda: cancelled[0],
        )
        decided = handler(step)
        if decided is not None:
            return decided
    if reason == "cancelled":
        why = getattr(error, "reason", "cancelled")
        _say(
            f"{operation}: automatic recovery stopped ({why}) after {plural(attempts, 'attempt')}; nothing "
            f"is running now. Run the same command again when ready (exit code {EXIT_STOPPED})."
        )
    elif isinstance(error, CircuitOpenError):
        _say(_open_message(operation, error).replace("; the command was not run", ""))
    return default


def _abort(operation: str, tracker: _Tracker, why: str) -> None:
    """A second signal: the runner already stopped the command; close the journal entry as aborted."""
    if tracker.run_id is not None and default_bus.listening:
        elapsed = time.monotonic() - tracker.started
        default_bus.emit(
            RecoveryExhausted(
                operation,
                time.time(),
                tracker.run_id,
                tracker.attempts,
                elapsed,
                tracker.started_at,
                "aborted",
                "KeyboardInterrupt",
                f"aborted by {why}",
                None,
            )
        )
