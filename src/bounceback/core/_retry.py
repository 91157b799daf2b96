"""The retry engine: one decision path shared by sync calls, async calls and the iterator form.

Only the call and the wait differ between sync and async; classifying, counting, computing the delay,
checking the deadline and the budget, and emitting events happen in :meth:`Engine.after_failure`.
"""

from __future__ import annotations

import itertools
import math
import os
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

from bounceback.core._backoff import Backoff
from bounceback.core._classify import DEFAULT_CLASSIFIER, Classification, Classifier, ErrorKind
from bounceback.core._control import run_controls
from bounceback.core._events import (
    AttemptFailed,
    EventBus,
    RecoveryExhausted,
    RecoverySucceeded,
    RetryScheduled,
)
from bounceback.core._redact import redact
from bounceback.core._time import CancelToken, Clock
from bounceback.errors import AttemptTimeout, BulkheadFull, CircuitOpenError, ConfigError

__all__ = [
    "AttemptRecord",
    "BreakerPort",
    "BudgetPort",
    "Engine",
    "GiveUp",
    "RetryConfig",
    "Run",
]

# Run ids: unique across processes and restarts (random prefix per process), cheap per run (a counter).
_RUN_PREFIX = os.urandom(5).hex()
_run_numbers = itertools.count(1)

_RESULT = Classification(ErrorKind.TRANSIENT, "the result was rejected by retry_if_result")


class BreakerPort(Protocol):
    """What the engine needs from a circuit breaker (``bounceback.CircuitBreaker`` implements it).

    ``_fast`` is true while the breaker needs nothing per call but a success count: then the engine skips
    ``acquire``/``release`` and adds one to ``_fast_successes`` after a success.
    """

    name: str
    _fast: bool
    _fast_successes: int

    def acquire(self) -> Any:
        """Admit one call or raise CircuitOpenError / BulkheadFull; returns a permit for release()."""
        ...

    def release(self, permit: Any, failure: Classification | None) -> None:
        """Record the outcome of an admitted call (``failure`` None on success).

        ``permit`` is None for a call made on the fast path (admitted without ``acquire``).
        """
        ...

    def abandon(self, permit: Any) -> None:
        """Give back a permit whose call ended by KeyboardInterrupt, SystemExit or cancellation: no outcome."""
        ...

    @property
    def state_name(self) -> str:
        """The current state's value, for events."""
        ...


class BudgetPort(Protocol):
    """A retry budget: may this run spend one more retry?"""

    def try_spend(self, operation: str) -> bool:
        """Take one retry from the budget; False when it is exhausted."""
        ...


class AttemptRecord(NamedTuple):
    """One failed attempt, as attached to the re-raised error (``exc.bounceback_attempts``)."""

    attempt: int
    error_type: str
    error_message: str
    kind: str
    reason: str
    duration: float
    delay: float | None = None
    """The wait that followed this attempt (None when it was the last)."""


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """The limits of one policy, resolved and validated. Replaced whole when settings change."""

    attempts: int | None = 5
    deadline: float = math.inf
    attempt_timeout: float = math.inf
    backoff: Backoff = field(default_factory=Backoff)
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        a = self.attempts
        if a is not None and (isinstance(a, bool) or not isinstance(a, int) or a < 1):
            raise ConfigError("attempts", a, "a whole number >= 1, or None for no limit")
        if a is None and self.deadline == math.inf:
            raise ConfigError("attempts", a, "a limit: give attempts, a deadline, or both")


class Run:
    """The state of one call's recovery; created only when a first attempt fails.

    ``history`` holds raw ``(attempt, error, verdict, duration, delay)`` tuples: turning them into
    :class:`AttemptRecord` (and the error into text) waits until someone asks, usually never.
    """

    __slots__ = (
        "_clock",
        "_number",
        "attempt",
        "cancel",
        "history",
        "last_classification",
        "last_error",
        "previous_delay",
        "reason",
        "started",
    )

    def __init__(self, started: float, number: int, clock: Clock) -> None:
        self.started = started
        self._number = number
        self._clock = clock
        self.cancel: CancelToken | None = None
        self.attempt = 1
        self.previous_delay = 0.0
        self.history: list[tuple[int, BaseException | None, Classification, float, float | None]] = []
        self.reason = ""
        self.last_error: BaseException | None = None
        self.last_classification: Classification | None = None

    @property
    def run_id(self) -> str:
        """Unique across processes and restarts: a random per-process prefix and a counter."""
        return f"{_RUN_PREFIX}-{self._number}"

    @property
    def started_wall(self) -> float:
        """Wall time at which the first attempt started."""
        clock = self._clock
        return clock.wall() - (clock.monotonic() - self.started)

    def records(self) -> tuple[AttemptRecord, ...]:
        """The history as records."""
        return tuple(
            AttemptRecord(
                n,
                type(exc).__name__ if exc is not None else "result",
                _message(exc),
                verdict.kind.value,
                verdict.reason,
                duration,
                delay,
            )
            for n, exc, verdict, duration, delay in self.history
        )


@dataclass(frozen=True, slots=True)
class GiveUp:
    """What a fallback handler is told when automatic recovery ends without success."""

    operation: str
    error: BaseException | None
    reason: str
    attempts: tuple[AttemptRecord, ...]
    classification: Classification | None
    run_id: str
    elapsed: float
    breaker_state: str | None
    result: Any = None
    cause: BaseException | None = None
    """The last error from the dependency itself: when the final attempts were refused by an open breaker,
    ``error`` is that refusal and ``cause`` the failure that opened it (what a person must fix)."""


class Engine:
    """The decisions of recovery for one policy. Holds no per-call state: a :class:`Run` does."""

    __slots__ = (
        "breaker",
        "budget",
        "bus",
        "cancel",
        "cfg",
        "classifier",
        "classify",
        "clock",
        "operation",
        "rng",
    )

    def __init__(
        self,
        operation: str,
        cfg: RetryConfig,
        *,
        classifier: Classifier | None,
        clock: Clock,
        rng: random.Random | None,
        bus: EventBus,
        cancel: CancelToken | None,
        breaker: BreakerPort | None,
        budget: BudgetPort | None,
    ) -> None:
        self.operation = operation
        self.cfg = cfg
        self.classifier = classifier or DEFAULT_CLASSIFIER
        # Bound once: classifying is on every failure.
        self.classify: Callable[[BaseException], Classification] = self.classifier.classify
        self.clock = clock
        self.rng = rng or random.Random()
        self.bus = bus
        self.cancel = cancel
        self.breaker = breaker
        self.budget = budget

    def start(self, started: float) -> Run:
        """A new run whose first attempt began at monotonic time ``started``."""
        run = Run(started, next(_run_numbers), self.clock)
        if run_controls.enabled:
            run.cancel = run_controls.open(run.run_id, self.cancel, self.operation)
        else:
            run.cancel = self.cancel
        return run

    def end(self, run: Run) -> None:
        """The run is over (recovered or given up): release its controls."""
        if run.cancel is not None and run.cancel is not self.cancel:
            run_controls.close(run.run_id)

    def attempt_budget(self, run: Run) -> float:
        """Seconds the next attempt may take: the attempt timeout, bounded by what is left of the deadline."""
        cfg = self.cfg
        if cfg.deadline == math.inf:
            return cfg.attempt_timeout
        left = cfg.deadline - (self.clock.monotonic() - run.started)
        return max(0.0, min(cfg.attempt_timeout, left))

    def after_failure(
        self, run: Run, exc: BaseException | None, verdict: Classification, attempt_started: float
    ) -> float | None:
        """Record a failed attempt and decide: the delay before the next one, or None to give up."""
        cfg = self.cfg
        now = self.clock.monotonic()
        run.last_error = exc
        run.last_classification = verdict
        reason = ""
        delay = 0.0
        why = "backoff"
        if verdict.kind is ErrorKind.PERMANENT:
            reason = "permanent"
        elif run.cancel is not None and run.cancel.is_cancelled:
            reason = "cancelled"
        elif cfg.attempts is not None and run.attempt >= cfg.attempts:
            reason = "attempts"
        else:
            delay = cfg.backoff.delay(run.attempt - 1, run.previous_delay, self.rng)
            hint = verdict.retry_after
            if hint is not None:
                hint = min(hint, cfg.max_retry_after)
                if hint > delay:
                    delay = hint
                    why = "breaker" if isinstance(exc, CircuitOpenError) else "retry-after"
            if cfg.deadline != math.inf and (now - run.started) + delay >= cfg.deadline:
                # Waiting would end past the deadline: no attempt could start in time.
                reason = "deadline" if why == "backoff" else why
            elif self.budget is not None and not self.budget.try_spend(self.operation):
                reason = "budget"
        run.history.append((run.attempt, exc, verdict, now - attempt_started, None if reason else delay))
        if reason:
            run.reason = reason
            if self.bus.listening:
                self._emit_failure(run, exc, verdict, False)
                self._emit_exhausted(run, exc, verdict, reason)
            return None
        run.previous_delay = delay
        if self.bus.listening:
            self._emit_failure(run, exc, verdict, True)
            wall = self.clock.wall()
            deadline_at = None if cfg.deadline == math.inf else run.started_wall + cfg.deadline
            self.bus.emit(
                RetryScheduled(
                    self.operation,
                    wall,
                    run.run_id,
                    run.attempt + 1,
                    cfg.attempts,
                    delay,
                    wall + delay,
                    deadline_at,
                    run.started_wall,
                    why,
                )
            )
        return delay

    def _emit_failure(
        self, run: Run, exc: BaseException | None, verdict: Classification, will_retry: bool
    ) -> None:
        brk = self.breaker
        self.bus.emit(
            AttemptFailed(
                self.operation,
                self.clock.wall(),
                run.run_id,
                run.attempt,
                self.cfg.attempts,
                self.clock.monotonic() - run.started,
                type(exc).__name__ if exc is not None else "result",
                _message(exc),
                verdict,
                will_retry,
                brk.state_name if brk is not None else None,
            )
        )

    def _emit_exhausted(
        self, run: Run, exc: BaseException | None, verdict: Classification | None, reason: str
    ) -> None:
        self.bus.emit(
            RecoveryExhausted(
                self.operation,
                self.clock.wall(),
                run.run_id,
                run.attempt,
                self.clock.monotonic() - run.started,
                run.started_wall,
                reason,
                type(exc).__name__ if exc is not None else "result",
                _message(exc),
                verdict,
            )
        )

    def cancelled_during_wait(self, run: Run) -> bool:
        """After a wait: True (and the run marked) when the cancel token fired during it."""
        if run.cancel is not None and run.cancel.is_cancelled:
            run.reason = "cancelled"
            self.end(run)
            if self.bus.listening:
                self._emit_exhausted(run, run.last_error, run.last_classification, "cancelled")
            return True
        return False

    def succeeded(self, run: Run) -> None:
        """A later attempt of ``run`` succeeded."""
        self.end(run)
        if self.bus.listening:
            self.bus.emit(
                RecoverySucceeded(
                    self.operation,
                    self.clock.wall(),
                    run.run_id,
                    run.attempt,
                    self.clock.monotonic() - run.started,
                    run.started_wall,
                )
            )

    def give_up(self, run: Run, result: Any = None) -> GiveUp:
        """Describe the end of ``run`` for fallbacks, and attach the history to the error."""
        self.end(run)
        exc = run.last_error
        if exc is not None:
            attach_history(exc, self.operation, run, self.clock.monotonic() - run.started)
        brk = self.breaker
        return GiveUp(
            self.operation,
            exc,
            run.reason,
            run.records(),
            run.last_classification,
            run.run_id,
            self.clock.monotonic() - run.started,
            brk.state_name if brk is not None else None,
            result,
            _cause(run),
        )


def _cause(run: Run) -> BaseException | None:
    for _, exc, _, _, _ in reversed(run.history):
        if exc is not None and not isinstance(exc, (CircuitOpenError, BulkheadFull)):
            return exc
    return run.last_error


def _message(exc: BaseException | None) -> str:
    if exc is None:
        return "rejected result"
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable error>"
    # Remote error text can be huge and may carry credentials: events and notes keep a bounded,
    # redacted prefix (every subscriber, the journal and the logs read it from here).
    return redact(text, 500)


def attach_history(exc: BaseException, operation: str, run: Run, elapsed: float) -> None:
    """Add the attempt history to ``exc`` as notes and as ``exc.bounceback_attempts``."""
    if getattr(exc, "bounceback_run_id", None) == run.run_id:
        return
    lines = [
        f"bounceback: {operation}: gave up after {run.attempt} attempt(s) in {elapsed:.3g} s ({run.reason})"
    ]
    records = run.records()
    shown = records[-10:]
    if len(records) > len(shown):
        lines.append(f"  ... {len(records) - len(shown)} earlier attempt(s) not shown")
    for rec in shown:
        wait = f", then waited {rec.delay:.3g} s" if rec.delay is not None else ""
        lines.append(
            f"  attempt {rec.attempt}: {rec.error_type} ({rec.kind}: {rec.reason}) after {rec.duration:.3g} s{wait}"
        )
    try:
        exc.add_note("\n".join(lines))
        exc.bounceback_attempts = records  # type: ignore[attr-defined]
        exc.bounceback_reason = run.reason  # type: ignore[attr-defined]
        exc.bounceback_run_id = run.run_id  # type: ignore[attr-defined]
    except (AttributeError, TypeError):
        # Some extension exceptions take no attributes; the error itself still propagates.
        pass


def call_with_timeout(fn: Callable[..., Any], args: Any, kwargs: Any, timeout: float, operation: str) -> Any:
    """Run a sync ``fn`` on a worker thread and stop waiting for it after ``timeout`` seconds.

    Python cannot stop a thread: on timeout the attempt is abandoned (its result is discarded) and
    AttemptTimeout is raised, but the function keeps running until it returns by itself. Give blocking
    calls their own timeouts (socket timeouts, ``subprocess`` timeouts) so abandoned attempts end too.
    """
    import contextvars

    box: list[Any] = []
    done = threading.Event()
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box.append((True, ctx.run(fn, *args, **kwargs)))
        except BaseException as exc:  # handed back to the caller's thread below
            box.append((False, exc))
        finally:
            done.set()

    worker = threading.Thread(target=target, name=f"bounceback-attempt-{operation}", daemon=True)
    worker.start()
    if not done.wait(timeout):
        raise AttemptTimeout(operation, timeout)
    ok, value = box[0]
    if ok:
        return value
    raise value
