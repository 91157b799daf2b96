"""The retry engine: one decision path shared by sync calls, async calls and the iterator form.

Only the call and the wait differ between sync and async; classifying, counting, computing the delay,
checking the deadline and the budget, and emitting events happen in :meth:`Engine.after_failure`.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any, NoReturn, Protocol, cast

from bounceback.core._control import run_controls
from bounceback.core._events import (
    AttemptFailed,
    EventBus,
    RecoveryExhausted,
    RecoverySucceeded,
    RetryScheduled,
)
from bounceback.core._time import CancelToken, Clock
from bounceback.core.classify._rules import (
    DEFAULT_CLASSIFIER,
    Classification,
    ClassifierLike,
    ErrorKind,
    as_classifier,
    classify_by_defaults,
)
from bounceback.core.retry._state import (
    AttemptRecord,
    GiveUp,
    RetryConfig,
    Run,
    _cause,
    _message,
    attach_history,
)
from bounceback.errors import (
    BulkheadFull,
    CircuitOpenError,
    RecoveryCancelled,
    RequestThrottled,
    RetriesExhausted,
)

__all__ = [
    "AttemptRecord",
    "BreakerPort",
    "BudgetPort",
    "Engine",
    "GiveUp",
    "REFUSALS",
    "RetryConfig",
    "Run",
]

_RNG = random.Random()
_RESULT = Classification(ErrorKind.TRANSIENT, "the result was rejected by retry_if_result")

_INF = math.inf
_PERMANENT = ErrorKind.PERMANENT  # read on every failure: an enum member through its class costs a call
_THROTTLED = ErrorKind.THROTTLED
_TRANSIENT = ErrorKind.TRANSIENT
REFUSALS = (CircuitOpenError, BulkheadFull, RequestThrottled)
"""What a gate (breaker, bulkhead, throttle) raises to refuse an attempt without running it: a failed
attempt for the engine to decide on, never an error to let through."""


class BreakerPort(Protocol):
    """What the engine needs from a circuit breaker (``bounceback.CircuitBreaker`` implements it).

    ``fast_path`` is true while the breaker needs nothing per call but a success count: then the engine
    skips ``acquire``/``release`` and calls ``count_success()`` after a success (any thread, no lock).
    """

    name: str
    fast_path: bool

    def count_success(self) -> object:
        """Count one success made on the fast path (thread-safe and exact)."""
        ...

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
    """A retry budget: may this run spend one more retry? ``count_call()`` counts each call (the budget's
    denominator) on the success path: thread-safe, exact and cheap."""

    def count_call(self) -> object:
        """Count one call (a first attempt)."""
        ...

    def try_spend(self, operation: str) -> bool:
        """Take one retry from the budget; False when it is exhausted. A budget whose ``clock`` attribute is
        the engine's clock is called as ``try_spend(operation, now)``, ``now`` a fresh reading of it; if it
        also lays out ``grants`` (``until, tokens, issued``, as ``RetryBudget`` does), the engine pops a
        token itself while its reading is below ``until``, and calls ``try_spend`` only when none is left."""
        ...


class Engine:
    """The decisions of recovery for one policy. Holds no per-call state: a :class:`Run` does."""

    __slots__ = (
        "_plan",
        "breaker",
        "budget",
        "bus",
        "cancel",
        "cfg",
        "classifier",
        "classify",
        "clock",
        "held",
        "operation",
        "rng",
        "same_clock",
    )

    def __init__(
        self,
        operation: str,
        cfg: RetryConfig,
        classifier: ClassifierLike | None,
        clock: Clock,
        rng: random.Random | None,
        bus: EventBus,
        cancel: CancelToken | None,
        breaker: BreakerPort | None,
        budget: BudgetPort | None,
        /,
    ) -> None:
        self.operation = operation
        self.cfg = cfg
        """The limits in force (read it; :meth:`configure` replaces it)."""
        self._plan = _plan_of(cfg)
        self.classifier = DEFAULT_CLASSIFIER if classifier is None else as_classifier(classifier)
        # Bound once: classifying is on every failure. The defaults' common case is a plain function.
        self.classify: Callable[[BaseException], Classification] = (
            classify_by_defaults if self.classifier is DEFAULT_CLASSIFIER else self.classifier.classify
        )
        self.clock = clock
        # One generator for every policy unless a test injects its own: a Random each would cost 2.5 KB
        # and 20 µs to seed, and jitter needs no more than independent draws.
        self.rng = rng or _RNG
        self.bus = bus
        self.cancel = cancel
        self.breaker = breaker
        self.budget = budget
        # A budget on the engine's own clock is handed the reading the decision already took; any other
        # reads its own. (A flag, not a bound method: a policy's creation makes one object fewer.)
        same_clock = self.same_clock = budget is not None and getattr(budget, "clock", None) is clock
        # A budget on the engine's clock that lays out its grants: first() and charge() take one themselves.
        self.held: Any = budget if same_clock and isinstance(getattr(budget, "grants", None), tuple) else None

    def configure(self, cfg: RetryConfig) -> None:
        """Put the limits ``cfg`` in force (settings changed): :attr:`cfg` is replaced whole, and what
        :meth:`decide` reads of it on every failure is laid out once."""
        self._plan = _plan_of(cfg)
        self.cfg = cfg

    def start(self, started: float) -> Run:
        """A new run whose first attempt began at monotonic time ``started`` (negative: unknown, the first
        attempt was not timed; the run then starts now, when it failed)."""
        run = Run(started if started >= 0 else self.clock.monotonic(), self.clock, self.cancel)
        if run_controls.enabled:
            run.cancel = run_controls.open(run.run_id, self.cancel, self.operation)
        return run

    def next_attempt(self, run: Run) -> float:
        """After the wait: count the next attempt and return when it starts; -1.0 (the run marked and ended)
        when the cancel token fired during the wait."""
        if run.cancel is not None and self.cancelled_during_wait(run):
            return -1.0
        run.attempt += 1
        return self.clock.monotonic()

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

    def is_quiet(self) -> bool:
        """True when a recovery needs no run record to start with: nobody listens for events, and neither
        a cancel token nor the run controls (a journal's Cancel) can stop it."""
        return not self.bus.listening and self.cancel is None and not run_controls.enabled

    def decide(
        self,
        attempt: int,
        previous_delay: float,
        started: float,
        exc: BaseException | None,
        verdict: Classification,
        now: float,
        cancel: CancelToken | None,
    ) -> float | str:
        """The decision after failed attempt number ``attempt`` of a run that started at ``started``: the
        delay before the next attempt (a float), or why recovery gives up (a str: ``permanent``,
        ``cancelled``, ``attempts``, ``throttled``, ``breaker``, ``deadline``, ``retry-after``, ``budget``).

        The one place where recovery decides, for every form (decorator, call, block, sync and async). A
        retry it allows has been charged to the budget.
        """
        kind = verdict.kind
        if kind is _PERMANENT:
            return "permanent"
        if cancel is not None and cancel.is_cancelled:
            return "cancelled"
        limit, deadline, backoff, cap, _ = self._plan
        if attempt >= limit:
            return "attempts"
        delay = backoff(attempt - 1, previous_delay, self.rng)
        hint = verdict.retry_after
        if hint is None and kind is not _THROTTLED:
            # The common case: no hint, and not throttled (a breaker's refusal without a hint, forced open,
            # is one too: it changes nothing here).
            if (now - started) + delay >= deadline:
                # Waiting would end past the deadline: no attempt could start in time.
                return "deadline"
        else:
            why = "backoff"
            refused = isinstance(exc, CircuitOpenError)
            if hint is not None and min(hint, cap) > delay:
                delay = min(hint, cap)
                why = "breaker" if refused else "retry-after"
            if isinstance(exc, RequestThrottled):
                # Shed locally: a retry would most likely be shed too, and would count as one more request.
                return "throttled"
            if refused and hint is not None and hint > cap:
                # Fail fast: waiting out only part of an open time would meet the same refusal.
                return "breaker"
            if (now - started) + delay >= deadline:
                # So a call that meets an open breaker waits for its probe only when the probe comes within
                # the deadline.
                return "deadline" if why == "backoff" else why
        return self.charge(delay, now)

    def first(self, exc: BaseException | None, verdict: Classification, now: float) -> float | str:
        """:meth:`decide` for the first failed attempt of a run without a cancel token, failed at ``now``
        (the run's start, as far as the short routes know): what a wrapper asks before its one retry.

        Its common case (a transient error without a hint) is laid out here, without a call: the attempt
        is the first, so only a limit of one attempt stops it; no time has passed, so the deadline only
        bounds the wait; the wait is drawn from the backoff's first band (``Backoff.first_wait``); and a
        grant is taken from the budget as :meth:`charge` does. Everything else is :meth:`decide`'s.
        """
        if verdict.kind is not _TRANSIENT or verdict.retry_after is not None:
            return self.decide(1, 0.0, now, exc, verdict, now, None)
        limit, deadline, _, _, (low, width, cap) = self._plan
        if limit <= 1:
            return "attempts"
        delay = low if width is None else low + width * self.rng.random()
        if delay > cap:  # noqa: PLR1730 (a comparison costs less than a call of min())
            delay = cap
        if delay >= deadline:
            return "deadline"
        held = self.held
        if held is not None:
            # As in charge(), inlined: this is every first retry's path, and a call costs as much as it.
            until, tokens, _ = held.grants
            if tokens and now < until:
                try:
                    tokens.pop()
                except IndexError:
                    pass
                else:
                    return delay
        return self.charge(delay, now)

    def charge(self, delay: float, now: float) -> float | str:
        """Charge the retry after a wait of ``delay`` to the budget: ``delay``, or ``budget`` when the budget
        refuses it. ``now`` is a fresh reading of the engine's clock."""
        held = self.held
        if held is not None:
            # The budget's try_spend, its common case inlined: a grant laid out at its last settling.
            until, tokens, _ = held.grants
            if tokens and now < until:
                try:
                    tokens.pop()
                except IndexError:
                    pass  # another thread took the last one: the budget settles with its window
                else:
                    return delay
        budget: Any = self.budget  # on the engine's clock, try_spend takes the reading (see BudgetPort)
        if budget is None:
            return delay
        if not (
            budget.try_spend(self.operation, now) if self.same_clock else budget.try_spend(self.operation)
        ):
            # Waiting for a breaker's probe spends too: the simulator shows a surge outlasting its cause when
            # the calls that waited for probes are left out of the budget (docs/simulator.md).
            return "budget"
        return delay

    def after_failure(
        self,
        run: Run,
        exc: BaseException | None,
        verdict: Classification,
        attempt_started: float,
        now: float = -1.0,
    ) -> float | None:
        """Decide after a failed attempt of ``run`` and record it: the delay before the next one, or None
        to give up (``run.reason`` says why).

        ``now`` is the monotonic time if the caller has just read it (else it is read here).
        """
        if now < 0:
            now = self.clock.monotonic()
        decision = self.decide(run.attempt, run.previous_delay, run.started, exc, verdict, now, run.cancel)
        return self.record(run, exc, verdict, now - attempt_started, decision)

    def record(
        self,
        run: Run,
        exc: BaseException | None,
        verdict: Classification,
        duration: float,
        decision: float | str,
    ) -> float | None:
        """Write a decided failed attempt into ``run`` (and tell the listeners): the delay, or None."""
        run.last_error = exc
        run.last_classification = verdict
        if decision.__class__ is str:
            reason = decision
            run.history.append((run.attempt, exc, verdict, duration, None))
            run.reason = reason
            if self.bus.listening:
                self._emit_failure(run, exc, verdict, False)
                self._emit_exhausted(run, exc, verdict, reason)
            return None
        delay = cast(float, decision)
        run.history.append((run.attempt, exc, verdict, duration, delay))
        run.previous_delay = delay
        if self.bus.listening:
            self._emit_failure(run, exc, verdict, True)
            cfg = self.cfg
            wall = self.clock.wall()
            deadline_at = None if cfg.deadline == math.inf else run.started_wall + cfg.deadline
            hint = verdict.retry_after
            why = "backoff"
            if hint is not None and delay == min(hint, cfg.max_retry_after):
                why = "breaker" if isinstance(exc, CircuitOpenError) else "retry-after"
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

    def retried(
        self, started: float, exc: BaseException | None, verdict: Classification, delay: float
    ) -> Run:
        """The run of a recovery whose first attempt failed at ``started`` and was decided (``delay``) before
        any run was made (see :meth:`is_quiet`), now that its second attempt failed too: attempt 2 is on."""
        run = self.start(started)
        self.record(run, exc, verdict, 0.0, delay)
        run.attempt = 2
        return run

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
        if run.cancel is not self.cancel:
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

    def raise_for(self, run: Run, result: Any = None) -> NoReturn:
        """Raise what giving up on ``run`` means without a fallback: the original error (history attached),
        ``RecoveryCancelled`` when a person or token stopped it, ``RetriesExhausted`` for a rejected result."""
        exc = run.last_error
        if run.reason == "cancelled":
            reason = run.cancel.reason if run.cancel is not None and run.cancel.reason else "cancelled"
            raise RecoveryCancelled(self.operation, run.attempt, reason, exc) from exc
        if exc is None:
            raise RetriesExhausted(self.operation, run.attempt, result, run.reason)
        raise exc

    def finish(self, run: Run) -> None:
        """The end of a run that gave up: release its controls and attach the history to its error."""
        self.end(run)
        exc = run.last_error
        if exc is not None:
            attach_history(exc, self.operation, run, self.clock.monotonic() - run.started)

    def give_up(self, run: Run, result: Any = None) -> GiveUp:
        """Describe the end of ``run`` for fallbacks, and attach the history to the error."""
        self.finish(run)
        brk = self.breaker
        return GiveUp(
            self.operation,
            run.last_error,
            run.reason,
            run.records(),
            run.last_classification,
            run.run_id,
            self.clock.monotonic() - run.started,
            brk.state_name if brk is not None else None,
            result,
            _cause(run),
            self.cfg.attempts,
        )


def _plan_of(cfg: RetryConfig) -> Plan:
    """What :meth:`Engine.decide` and :meth:`Engine.first` read of ``cfg``: ``(attempts (infinite: no
    limit), deadline, the backoff's delay, max_retry_after, the backoff's first band)``. Configurations are
    shared (the policies left at the defaults have one), and so is the plan of the last one asked for."""
    last_cfg, plan = _LAST_PLAN[0]
    if last_cfg is cfg:
        return plan
    limit = _INF if cfg.attempts is None else cfg.attempts
    backoff = cfg.backoff
    plan = (limit, cfg.deadline, backoff.delay, cfg.max_retry_after, backoff.first_wait)
    _LAST_PLAN[0] = (cfg, plan)  # one tuple, swapped whole: a reader on another thread sees a matching pair
    return plan


Plan = tuple[float, float, Callable[[int, float, Any], float], float, tuple[float, float | None, float]]
_LAST_PLAN: list[tuple[RetryConfig | None, Plan]] = [(None, (0.0, 0.0, lambda *_: 0.0, 0.0, (0.0, 0.0, 0.0)))]
