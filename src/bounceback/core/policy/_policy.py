"""``Policy``: per-attempt timeout → retry → circuit breaker → fallback, composed once for an operation.

Order of the layers, outermost first: the fallback (or manual hand-over) sees only the final outcome; the
retry loop decides and waits; each attempt passes the breaker (so every attempt counts there, and an open
breaker's "come back at T" becomes the wait); the timeout bounds one attempt inside the breaker, so a
timed-out attempt counts as a failure.

The success path is a clock read, a flag test and a call: no events, no allocations.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
import random
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypedDict, TypeVar, Unpack, cast, overload

from bounceback.core._events import EventBus, default_bus
from bounceback.core._registry import registry
from bounceback.core._time import SYSTEM_CLOCK, CancelToken, Clock, Duration, to_seconds, waits_enabled
from bounceback.core.classify._rules import Classification, ClassifierLike
from bounceback.core.policy._attempts import Attempts
from bounceback.core.policy._parts import (
    UNSET,
    FallbackArg,
    RetryAgain,
    Unset,
    _count_call,
    _FollowUp,
    _name_of,
)
from bounceback.core.policy._settings import (
    _from_settings,
    _limiter_from_settings,
    _rate_limit_from_settings,
    _throttle_from_settings,
)
from bounceback.core.retry._backoff import Backoff
from bounceback.core.retry._budget import budget_from_settings
from bounceback.core.retry._engine import (
    _RESULT,
    REFUSALS,
    BreakerPort,
    BudgetPort,
    Engine,
    RetryConfig,
    Run,
)
from bounceback.core.retry._state import call_with_timeout
from bounceback.core.settings._schema import SCHEMA
from bounceback.core.settings._source import SettingsSource
from bounceback.core.strategies._gates import Gates
from bounceback.core.strategies._limiter import ConcurrencyLimiter
from bounceback.core.strategies._rate import RateLimiter
from bounceback.core.strategies._throttle import AdaptiveThrottle
from bounceback.errors import (
    AttemptTimeout,
    ConfigError,
)

__all__ = ["Policy", "RetryAgain", "RetryOptions", "retry"]

P = ParamSpec("P")
_DEFAULT_BACKOFF = Backoff()  # immutable, so every policy without its own shares this one
T = TypeVar("T")


class Policy:
    """How an operation recovers: attempts, deadline, per-attempt timeout, backoff, breaker and fallback.

    Use it as a decorator (sync or ``async def``), with :meth:`call` / :meth:`acall`, or as a block with
    :meth:`attempts`.

    ``attempts`` counts every attempt including the first; ``deadline`` bounds the whole call from the start
    of the first attempt; ``attempt_timeout`` bounds one attempt (enforced for async; for sync code the
    attempt is abandoned on a worker thread, see the docs). ``retry_if_result`` retries when it returns
    true for a result. ``fallback`` is a value, or a function of :class:`GiveUp` returning the value (or a
    :class:`RetryAgain`), used when recovery gives up. Values not given come from ``settings`` (a
    ``SettingsSource``) for ``operation``, live, or from the built-in defaults.

    >>> from bounceback.testing import FakeClock
    >>> calls = []
    >>> @Policy("flaky", attempts=3, clock=FakeClock())
    ... def flaky():
    ...     calls.append(1)
    ...     if len(calls) < 3:
    ...         raise ConnectionResetError("reset by peer")
    ...     return "ok"
    >>> flaky(), len(calls)
    ('ok', 3)
    """

    __slots__ = (
        "__weakref__",
        "_breaker",
        "_budget_given",
        "_engine",
        "_explicit",
        "_fallback",
        "_fast",
        "_given_breaker",
        "_limiter",
        "_mode",
        "_rate_limit",
        "_result_check",
        "_settings",
        "_throttle",
        "_unsubscribe",
        "operation",
    )

    def __init__(
        self,
        operation: str | None = None,
        *,
        attempts: int | Unset | None = UNSET,
        deadline: Duration | Unset | None = UNSET,
        attempt_timeout: Duration | Unset | None = UNSET,
        backoff: Backoff | None = None,
        max_retry_after: Duration | Unset = UNSET,
        classifier: ClassifierLike | None = None,
        retry_if_result: Callable[[Any], bool] | None = None,
        breaker: BreakerPort | None = None,
        throttle: AdaptiveThrottle | None = None,
        limiter: ConcurrencyLimiter | None = None,
        rate_limit: RateLimiter | None = None,
        fallback: FallbackArg | Unset = UNSET,
        cancel: CancelToken | None = None,
        budget: BudgetPort | Unset | None = UNSET,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        bus: EventBus | None = None,
        settings: SettingsSource | None = None,
    ) -> None:
        if operation is not None and (not isinstance(operation, str) or not operation.strip()):
            raise ConfigError("operation", operation, "a non-empty name such as 'fetch-config'")
        self.operation = operation
        self._explicit = {
            k: v
            for k, v in {
                "attempts": attempts,
                "deadline": deadline,
                "attempt_timeout": attempt_timeout,
                "backoff": backoff,
                "max_retry_after": max_retry_after,
            }.items()
            if v is not UNSET and not (k == "backoff" and v is None)
        }
        self._settings = settings
        if throttle is None and settings is not None:
            throttle = _throttle_from_settings(settings, operation, clock)
        if throttle is not None and not isinstance(throttle, AdaptiveThrottle):
            raise ConfigError("throttle", throttle, "a bounceback.AdaptiveThrottle, or None")
        if limiter is None and settings is not None:
            limiter = _limiter_from_settings(settings, operation, clock)
        if limiter is not None and not isinstance(limiter, ConcurrencyLimiter):
            raise ConfigError("limiter", limiter, "a bounceback.ConcurrencyLimiter, or None")
        if rate_limit is None and settings is not None:
            rate_limit = _rate_limit_from_settings(settings, operation, clock)
        if rate_limit is not None and not isinstance(rate_limit, RateLimiter):
            raise ConfigError("rate_limit", rate_limit, "a bounceback.RateLimiter, or None")
        self._given_breaker = breaker
        self._throttle = throttle
        self._limiter = limiter
        self._rate_limit = rate_limit
        # What every attempt passes: the breaker alone, or the chain rate limit → limiter → throttle → breaker.
        if throttle is None and limiter is None and rate_limit is None:
            self._breaker = breaker
        else:
            self._breaker = Gates(rate_limit=rate_limit, limiter=limiter, throttle=throttle, breaker=breaker)
        self._fallback = fallback
        self._result_check = retry_if_result
        cfg = self._build_config()
        # A retry budget is on by default (``budget.enabled``); ``budget=None`` turns it off.
        self._budget_given = budget is not UNSET
        if isinstance(budget, Unset):
            budget = budget_from_settings(settings, operation, clock)
        self._engine = Engine(
            operation or "anonymous",
            cfg,
            classifier=classifier,
            clock=clock or SYSTEM_CLOCK,
            rng=rng,
            bus=bus or default_bus,
            cancel=cancel,
            breaker=breaker,
            budget=budget,
        )
        self._fast = self._compute_fast()
        self._unsubscribe: Callable[[], None] | None = None
        if settings is not None:
            # A weak reference: subscribing must not keep a dropped policy alive.
            ref = weakref.ref(self)

            def on_change() -> None:
                policy = ref()
                if policy is not None:
                    policy.reload()

            self._unsubscribe = settings.subscribe(on_change)
        if operation is not None:
            registry.add_policy(self)

    # -- configuration -------------------------------------------------------------------------------

    def _build_config(self) -> RetryConfig:
        values: dict[str, Any] = dict(_from_settings(self._settings, self.operation))
        values.update(self._explicit)
        attempts = values.get("attempts", SCHEMA["retry.max_attempts"].default)
        deadline = values.get("deadline", SCHEMA["retry.deadline"].default)
        return RetryConfig(
            attempts=attempts,
            deadline=to_seconds(deadline, "deadline", allow_none=True, allow_zero=False),
            attempt_timeout=to_seconds(
                values.get("attempt_timeout"), "attempt_timeout", allow_none=True, allow_zero=False
            ),
            backoff=values.get("backoff") or _DEFAULT_BACKOFF,
            max_retry_after=to_seconds(
                values.get("max_retry_after", SCHEMA["retry.max_retry_after"].default), "max_retry_after"
            ),
        )

    def _compute_fast(self) -> bool:
        cfg = self._engine.cfg
        fast = cfg.attempt_timeout == math.inf and self._result_check is None
        # The wrappers' one-look summary: 0 slow path; 1 fast, no deadline (the clock is read only on a
        # failure); 2 fast with a deadline (the clock is read before the first attempt).
        self._mode = 0 if not fast else (2 if cfg.deadline != math.inf else 1)
        return fast

    def reload(self) -> None:
        """Re-read the settings now (done by itself when the settings source reports a change).

        A bad stored value leaves the last good configuration in force.
        """
        try:
            cfg = self._build_config()
        except ConfigError:
            import logging

            logging.getLogger("bounceback.policy").warning(
                "settings for %r are invalid; keeping the last good values", self.operation, exc_info=True
            )
            return
        self._engine.cfg = cfg
        self._fast = self._compute_fast()

    @property
    def config(self) -> RetryConfig:
        """The limits in force now."""
        return self._engine.cfg

    @property
    def breaker(self) -> BreakerPort | None:
        """The circuit breaker every attempt passes, if any."""
        return self._given_breaker

    @property
    def throttle(self) -> AdaptiveThrottle | None:
        """The adaptive throttle every attempt asks first, if any."""
        return self._throttle

    @property
    def limiter(self) -> ConcurrencyLimiter | None:
        """The concurrency limiter every attempt passes, if any."""
        return self._limiter

    @property
    def rate_limit(self) -> RateLimiter | None:
        """The rate limiter every attempt passes first, if any."""
        return self._rate_limit

    def replace(self, **changes: Any) -> Policy:
        """A copy of this policy with some arguments changed (the breaker is shared, not copied)."""
        eng = self._engine
        kwargs: dict[str, Any] = {
            "classifier": eng.classifier,
            "retry_if_result": self._result_check,
            "breaker": self._given_breaker,
            "throttle": self._throttle,
            "limiter": self._limiter,
            "rate_limit": self._rate_limit,
            "fallback": self._fallback,
            "cancel": eng.cancel,
            "clock": eng.clock,
            "rng": eng.rng,
            "bus": eng.bus,
            "settings": self._settings,
            **self._explicit,
        }
        operation = changes.pop("operation", self.operation)
        if self._budget_given or operation == self.operation:
            kwargs["budget"] = eng.budget
        # else: the default budget is per operation, so a renamed copy gets its operation's own.
        kwargs.update(changes)
        return Policy(operation, **kwargs)

    # -- the three forms ----------------------------------------------------------------------------

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function (sync or async) so every call runs under this policy."""
        policy = self if self.operation is not None else self.replace(operation=_name_of(fn))
        if inspect.iscoroutinefunction(fn):
            return policy._wrap_async(fn)
        return policy._wrap_sync(fn)

    def _wrap_sync(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        eng = self._engine
        now = eng.clock.monotonic
        recover = self._recover_sync
        slow = self._call_sync
        classify = eng.classify
        # A budget's call counter and a breaker never change for a policy: look them up once.
        count_call = getattr(eng.budget, "count_call", None)
        brk = self._breaker
        policy = self

        # The fast path is inlined: the mode test, the call, and the clock only when a deadline needs it
        # (without one, a failure reads the clock and the first attempt's own duration is left out).
        # ``_mode`` is read per call because settings may change it while the program runs.
        if brk is None:

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                mode = policy._mode
                if mode:
                    started = now() if mode == 2 else -1.0
                    if count_call is not None:
                        count_call()
                    try:
                        return fn(*args, **kwargs)
                    except Exception as exc:
                        if started < 0:
                            started = now()
                        return recover(fn, args, kwargs, started, exc, classify(exc), None)
                return slow(fn, args, kwargs)

        else:
            count_success = brk.count_success

            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                mode = policy._mode
                if mode and brk.fast_path:
                    started = now() if mode == 2 else -1.0
                    if count_call is not None:
                        count_call()
                    try:
                        result = fn(*args, **kwargs)
                    except Exception as exc:
                        if started < 0:
                            started = now()
                        verdict = classify(exc)
                        brk.release(None, verdict)
                        return recover(fn, args, kwargs, started, exc, verdict, None)
                    count_success()
                    return result
                return slow(fn, args, kwargs)

        wrapper.policy = self  # type: ignore[attr-defined]
        return wrapper

    def _wrap_async(self, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        eng = self._engine
        now = eng.clock.monotonic
        recover = self._recover_async
        slow = self._call_async
        classify = eng.classify
        count_call = getattr(eng.budget, "count_call", None)
        brk = self._breaker
        policy = self

        # As in the sync wrapper, the fast path is inlined: no extra coroutine per call.
        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            mode = policy._mode
            if mode and (brk is None or brk.fast_path):
                started = now() if mode == 2 else -1.0
                if count_call is not None:
                    count_call()
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    if started < 0:
                        started = now()
                    verdict = classify(exc)
                    if brk is not None:
                        brk.release(None, verdict)
                    return await recover(fn, args, kwargs, started, exc, verdict, None)
                if brk is not None:
                    brk.count_success()
                return result
            return await slow(fn, args, kwargs)

        wrapper.policy = self  # type: ignore[attr-defined]
        return wrapper

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` under this policy and return its result."""
        return cast(T, self._call_sync(fn, args, kwargs))

    async def acall(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` under this policy and return its result."""
        return cast(T, await self._call_async(fn, args, kwargs))

    def attempts(self) -> Attempts:
        """Retry a block: ``for attempt in policy.attempts(): with attempt: ...`` (also ``async for``)."""
        return Attempts(self._engine, self._breaker, self._result_check)

    # -- sync ----------------------------------------------------------------------------------------

    def _call_sync(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        eng = self._engine
        brk = self._breaker
        started = eng.clock.monotonic()
        _count_call(eng.budget)
        if self._fast and (brk is None or brk.fast_path):
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                verdict = eng.classify(exc)
                if brk is not None:
                    brk.release(None, verdict)
                return self._recover_sync(fn, args, kwargs, started, exc, verdict, None)
            if brk is not None:
                brk.count_success()
            return result
        ok, value, verdict = self._attempt_sync(fn, args, kwargs, eng.cfg.attempt_timeout)
        if ok:
            return value
        if isinstance(value, BaseException):
            return self._recover_sync(fn, args, kwargs, started, value, verdict, None)
        return self._recover_sync(fn, args, kwargs, started, None, verdict, value)

    def _attempt_sync(
        self, fn: Callable[..., Any], args: Any, kwargs: Any, timeout: float
    ) -> tuple[bool, Any, Any]:
        """One attempt through breaker and timeout: (True, result, None) or (False, error|result, verdict)."""
        permit, refused = self._admit()
        if refused is not None:
            return refused
        try:
            if timeout != math.inf:
                result = call_with_timeout(fn, args, kwargs, timeout, self._engine.operation)
            else:
                result = fn(*args, **kwargs)
        except Exception as exc:
            return self._failed(permit, exc)
        except BaseException:
            self._abandon(permit)
            raise
        return self._settle(permit, result)

    def _recover_sync(
        self,
        fn: Callable[..., Any],
        args: Any,
        kwargs: Any,
        started: float,
        exc: BaseException | None,
        verdict: Classification,
        result: Any,
    ) -> Any:
        eng = self._engine
        run = eng.start(started)
        attempt_started = started
        while True:
            delay = eng.after_failure(run, exc, verdict, attempt_started)
            if delay is None:
                break
            if delay > 0 and waits_enabled():
                eng.clock.sleep(delay, run.cancel)
            if run.cancel is not None and eng.cancelled_during_wait(run):
                break
            run.attempt += 1
            attempt_started = eng.clock.monotonic()
            if self._fast and self._breaker is None:
                # Nothing to admit, time or check: call directly (the retry decision budget is tight).
                try:
                    value = fn(*args, **kwargs)
                except Exception as error:
                    exc, verdict, result = error, eng.classify(error), None
                    continue
                eng.succeeded(run)
                return value
            # Sync code cannot be interrupted: the deadline bounds an attempt only when a timeout is set.
            timeout = eng.attempt_budget(run) if eng.cfg.attempt_timeout != math.inf else math.inf
            ok, value, verdict = self._attempt_sync(fn, args, kwargs, timeout)
            if ok:
                eng.succeeded(run)
                return value
            exc, result = (value, None) if isinstance(value, BaseException) else (None, value)
        outcome = self._give_up(run, result)
        if isinstance(outcome, RetryAgain):
            again = self._again(outcome)
            value = again._call_sync(fn, args, kwargs)
            if isinstance(again._fallback, _FollowUp):
                again._fallback.succeeded()
            return value
        return outcome

    # -- the steps of one attempt, the same for sync and async: admission, outcome, result check ----

    def _admit(self) -> tuple[Any, tuple[bool, Any, Any] | None]:
        """Pass the breaker: (permit, None), or (None, a failed outcome) when it refuses."""
        brk = self._breaker
        if brk is None:
            return None, None
        try:
            return brk.acquire(), None
        except REFUSALS as exc:
            return None, (False, exc, self._engine.classify(exc))

    def _failed(self, permit: Any, exc: Exception) -> tuple[bool, Any, Any]:
        verdict = self._engine.classify(exc)
        if self._breaker is not None:
            self._breaker.release(permit, verdict)
        return False, exc, verdict

    def _abandon(self, permit: Any) -> None:
        if self._breaker is not None:
            self._breaker.abandon(permit)

    def _settle(self, permit: Any, result: Any) -> tuple[bool, Any, Any]:
        """A returned result: rejected by ``retry_if_result`` (a failure) or a success."""
        brk = self._breaker
        check = self._result_check
        if check is not None and check(result):
            if brk is not None:
                brk.release(permit, _RESULT)
            return False, result, _RESULT
        if brk is not None:
            brk.release(permit, None)
        return True, result, None

    def _give_up(self, run: Run, result: Any) -> Any:
        """The end of a run: the fallback's answer, or what giving up raises."""
        fallback = self._fallback
        if fallback is UNSET:
            # Nobody to describe the end to: attach the history and raise, without building a GiveUp.
            self._engine.finish(run)
            self._engine.raise_for(run, result)
        info = self._engine.give_up(run, result)
        return fallback(info) if callable(fallback) else fallback

    def _again(self, again: RetryAgain) -> Policy:
        """The policy to run again with, as a fallback's ``RetryAgain`` asks."""
        changes: dict[str, Any] = {}
        if again.attempts is not None:
            changes["attempts"] = again.attempts
        if again.deadline is not None:
            changes["deadline"] = again.deadline
        if again.on_outcome is not None:
            changes["fallback"] = _FollowUp(self._fallback, again.on_outcome)
        return self.replace(**changes)

    # -- async ---------------------------------------------------------------------------------------

    async def _call_async(self, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any) -> Any:
        eng = self._engine
        brk = self._breaker
        started = eng.clock.monotonic()
        _count_call(eng.budget)
        cfg = eng.cfg
        if self._fast and (brk is None or brk.fast_path):
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                verdict = eng.classify(exc)
                if brk is not None:
                    brk.release(None, verdict)
                return await self._recover_async(fn, args, kwargs, started, exc, verdict, None)
            if brk is not None:
                brk.count_success()
            return result
        # The deadline bounds a running attempt only through attempt_timeout, as in sync code: it stops
        # retrying, it does not cancel a call that is still working (a 30 s default must not cut a download).
        ok, value, verdict = await self._attempt_async(fn, args, kwargs, cfg.attempt_timeout)
        if ok:
            return value
        if isinstance(value, BaseException):
            return await self._recover_async(fn, args, kwargs, started, value, verdict, None)
        return await self._recover_async(fn, args, kwargs, started, None, verdict, value)

    async def _admit_async(self) -> tuple[Any, tuple[bool, Any, Any] | None]:
        """:meth:`_admit` for async calls: gates that queue or wait (a concurrency limit, a rate limit) await
        their turn on the event loop instead of refusing at once."""
        gates = self._breaker
        if not isinstance(gates, Gates):
            return self._admit()
        try:
            return await gates.acquire_async(), None
        except REFUSALS as exc:
            return None, (False, exc, self._engine.classify(exc))

    async def _attempt_async(
        self, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any, timeout: float
    ) -> tuple[bool, Any, Any]:
        permit, refused = await self._admit_async()
        if refused is not None:
            return refused
        try:
            if timeout != math.inf:
                try:
                    async with asyncio.timeout(timeout):
                        result = await fn(*args, **kwargs)
                except TimeoutError as exc:
                    # Ours only if our timer fired; a TimeoutError raised by fn itself stays as it is.
                    if exc.__context__ is None or not isinstance(exc.__context__, asyncio.CancelledError):
                        raise
                    raise AttemptTimeout(self._engine.operation, timeout) from None
            else:
                result = await fn(*args, **kwargs)
        except Exception as exc:
            return self._failed(permit, exc)
        except BaseException:
            self._abandon(permit)
            raise
        return self._settle(permit, result)

    async def _recover_async(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: Any,
        kwargs: Any,
        started: float,
        exc: BaseException | None,
        verdict: Classification,
        result: Any,
    ) -> Any:
        eng = self._engine
        run = eng.start(started)
        attempt_started = started
        while True:
            delay = eng.after_failure(run, exc, verdict, attempt_started)
            if delay is None:
                break
            if delay > 0 and waits_enabled():
                await eng.clock.async_sleep(delay, run.cancel)
            if eng.cancelled_during_wait(run):
                break
            run.attempt += 1
            attempt_started = eng.clock.monotonic()
            timeout = eng.attempt_budget(run) if eng.cfg.attempt_timeout != math.inf else math.inf
            ok, value, verdict = await self._attempt_async(fn, args, kwargs, timeout)
            if ok:
                eng.succeeded(run)
                return value
            exc, result = (value, None) if isinstance(value, BaseException) else (None, value)
        outcome = self._give_up(run, result)
        if inspect.isawaitable(outcome):
            outcome = await outcome
        if isinstance(outcome, RetryAgain):
            again = self._again(outcome)
            value = await again._call_async(fn, args, kwargs)
            if isinstance(again._fallback, _FollowUp):
                again._fallback.succeeded()
            return value
        return outcome

    def close(self) -> None:
        """Stop following settings changes."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def __repr__(self) -> str:
        cfg = self._engine.cfg
        return (
            f"Policy({self.operation!r}, attempts={cfg.attempts}, deadline={cfg.deadline:g}, "
            f"backoff={cfg.backoff!r}, breaker={getattr(self._given_breaker, 'name', None)!r})"
        )


class RetryOptions(TypedDict, total=False):
    """The keyword arguments of :func:`retry`: every argument of :class:`Policy` but the breaker, plus
    ``operation`` (default: the decorated function's name)."""

    operation: str | None
    attempts: int | None
    deadline: Duration | None
    attempt_timeout: Duration | None
    backoff: Backoff | None
    max_retry_after: Duration
    classifier: ClassifierLike | None
    retry_if_result: Callable[[Any], bool] | None
    throttle: AdaptiveThrottle | None
    limiter: ConcurrencyLimiter | None
    rate_limit: RateLimiter | None
    fallback: FallbackArg
    cancel: CancelToken | None
    budget: BudgetPort | None
    clock: Clock | None
    rng: random.Random | None
    bus: EventBus | None
    settings: SettingsSource | None


@overload
def retry(fn: Callable[P, Coroutine[Any, Any, T]], /) -> Callable[P, Coroutine[Any, Any, T]]: ...
@overload
def retry(fn: Callable[P, T], /) -> Callable[P, T]: ...
@overload
def retry(fn: None = None, /, **options: Unpack[RetryOptions]) -> Policy: ...


def retry(fn: Callable[..., Any] | None = None, /, **options: Unpack[RetryOptions]) -> Any:
    """Retry transient errors with exponential backoff and full jitter.

    ``@retry`` alone uses the defaults (5 attempts); ``@retry(attempts=..., deadline=..., ...)`` takes every
    argument of :class:`Policy` except a breaker. The operation is named after the function unless
    ``operation=`` is given.

    >>> from bounceback.testing import FakeClock
    >>> clock = FakeClock()
    >>> @retry(attempts=4, clock=clock)
    ... def read_sensor():
    ...     raise TimeoutError("no answer")
    >>> try:
    ...     read_sensor()
    ... except TimeoutError:
    ...     print(f"gave up after {len(clock.sleeps) + 1} attempts")
    gave up after 4 attempts
    """
    given: dict[str, Any] = dict(options)
    unknown = sorted(set(given) - set(RetryOptions.__annotations__))
    if unknown:
        hint = "a breaker goes to Policy(..., breaker=...)" if unknown[0] == "breaker" else None
        allowed = "one of retry()'s arguments: " + ", ".join(RetryOptions.__annotations__)
        raise ConfigError(unknown[0], given[unknown[0]], allowed, hint=hint)
    operation = given.pop("operation", None)
    policy = Policy(operation, **given)
    return policy(fn) if fn is not None else policy
