"""``Policy``: fallback → retry → gates (limits, throttle, breaker) → attempt timeout → hedge, composed once.

Order of the layers, outermost first: the fallback (or manual hand-over) sees only the final outcome; the
retry loop decides and waits; each attempt passes the gates (rate limit, concurrency limit, throttle,
breaker: every attempt counts there, and an open breaker's "come back at T" becomes the wait); the timeout
bounds one attempt inside the gates, so a timed-out attempt counts as a failure; a hedge races copies of
the attempt inside the timeout, so the gates and the retry see one outcome per attempt.

This module holds the composition and the reading of arguments; the attempt loop is
:mod:`~bounceback.core.policy._loop`, the decorator wrappers :mod:`~bounceback.core.policy._wrap`, the
reading of settings :mod:`~bounceback.core.policy._settings`.
"""

from __future__ import annotations

import inspect
import logging
import random
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import Any, ParamSpec, TypedDict, TypeVar, Unpack, cast, overload

from bounceback.core._events import EventBus, default_bus
from bounceback.core._registry import registry
from bounceback.core._time import SYSTEM_CLOCK, CancelToken, Clock, Duration
from bounceback.core.classify._rules import ClassifierLike
from bounceback.core.policy._attempts import Attempts
from bounceback.core.policy._loop import AttemptLoop
from bounceback.core.policy._parts import UNSET, FallbackArg, RetryAgain, Unset, _FollowUp, _name_of
from bounceback.core.policy._settings import (
    _limiter_from_settings,
    _rate_limit_from_settings,
    _throttle_from_settings,
    read_limits,
)
from bounceback.core.policy._wrap import wrap_async, wrap_sync
from bounceback.core.retry._backoff import Backoff
from bounceback.core.retry._budget import budget_from_settings
from bounceback.core.retry._engine import BreakerPort, BudgetPort, Engine, RetryConfig
from bounceback.core.settings._source import SettingsSource
from bounceback.core.strategies._gates import Gates
from bounceback.core.strategies._hedge import Hedge
from bounceback.core.strategies._limiter import ConcurrencyLimiter
from bounceback.core.strategies._rate import RateLimiter
from bounceback.core.strategies._throttle import AdaptiveThrottle
from bounceback.errors import ConfigError

__all__ = ["Policy", "RetryAgain", "RetryOptions", "retry"]

P = ParamSpec("P")
T = TypeVar("T")


_NONE_GIVEN: Mapping[str, Any] = MappingProxyType({})
"""No limit given in code (shared, read-only)."""

_BUILT_IN_LIMITS: RetryConfig = read_limits(None, None, _NONE_GIVEN)
"""The limits of a policy given none, without settings: the built-in defaults."""


class Policy:
    """How an operation recovers: attempts, deadline, per-attempt timeout, backoff, breaker and fallback.

    Use it as a decorator (sync or ``async def``), with :meth:`call` / :meth:`acall`, or as a block with
    :meth:`attempts`.

    ``attempts`` counts every attempt including the first; ``deadline`` bounds the recovery: no attempt
    starts after it. It counts from the start of the first attempt when that attempt is timed (an
    ``attempt_timeout``, ``retry_if_result`` or ``hedge`` is given), else from the moment the first attempt
    failed, so that a call that succeeds never reads the clock. ``attempt_timeout`` bounds one attempt (enforced for
    async; for sync code the attempt is abandoned on a worker thread, see the docs). ``retry_if_result``
    retries when it returns true for a result. ``hedge`` (a :class:`Hedge`, spending from this policy's
    budget) races copies of each attempt inside the gates and the timeout. ``fallback`` is a value, or a
    function of :class:`GiveUp` returning the value (or a :class:`RetryAgain`), used when recovery gives up.
    Values not given come from ``settings`` (a ``SettingsSource``) for ``operation``, live, or from the
    built-in defaults.

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
        "_budget_given",
        "_explicit",
        "_loop",
        "_settings",
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
        hedge: Hedge | None = None,
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
        if (
            attempts is UNSET
            and deadline is UNSET
            and attempt_timeout is UNSET
            and backoff is None
            and max_retry_after is UNSET
        ):
            explicit: Mapping[str, Any] = _NONE_GIVEN  # the common case: read from the defaults
        else:
            explicit = {
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
        self._explicit = explicit
        self._settings = settings
        if settings is not None:
            if throttle is None:
                throttle = _throttle_from_settings(settings, operation, clock)
            if limiter is None:
                limiter = _limiter_from_settings(settings, operation, clock)
            if rate_limit is None:
                rate_limit = _rate_limit_from_settings(settings, operation, clock)
        if throttle is not None and not isinstance(throttle, AdaptiveThrottle):
            raise ConfigError("throttle", throttle, "a bounceback.AdaptiveThrottle, or None")
        if limiter is not None and not isinstance(limiter, ConcurrencyLimiter):
            raise ConfigError("limiter", limiter, "a bounceback.ConcurrencyLimiter, or None")
        if rate_limit is not None and not isinstance(rate_limit, RateLimiter):
            raise ConfigError("rate_limit", rate_limit, "a bounceback.RateLimiter, or None")
        # Nothing given and no settings: the built-in limits, one immutable RetryConfig for every such policy.
        no_source = settings is None and explicit is _NONE_GIVEN
        cfg = _BUILT_IN_LIMITS if no_source else read_limits(settings, operation, explicit)
        # A retry budget is on by default (``budget.enabled``); ``budget=None`` turns it off.
        self._budget_given = budget is not UNSET
        if isinstance(budget, Unset):
            # With a hedge that spends from a budget, that is the pool: hedges and retries share one.
            pool: BudgetPort | None = hedge.budget if isinstance(hedge, Hedge) else None
            if pool is None:
                pool = budget_from_settings(settings, operation, clock)
            budget = pool
        if hedge is not None:
            _check_hedge(hedge, budget)
        # What every attempt passes: the breaker alone, or the chain rate limit → limiter → throttle → breaker.
        gates: BreakerPort | None = breaker
        if throttle is not None or limiter is not None or rate_limit is not None:
            gates = Gates(rate_limit=rate_limit, limiter=limiter, throttle=throttle, breaker=breaker)
        # The parts take their arguments by position: a class called with keywords builds a dict of them,
        # which cost a new operation's Policy a sixth of its creation.
        engine = Engine(
            operation or "anonymous", cfg, classifier, clock or SYSTEM_CLOCK, rng, bus or default_bus, cancel,
            breaker, budget,
        )  # fmt: skip
        # Only a fallback can ask to run again: without one the loop holds nothing that leads back here, so a
        # policy made per call is freed when dropped, not left to the cycle collector.
        again = None if fallback is UNSET else self._again
        self._loop = AttemptLoop(engine, gates, retry_if_result, fallback, hedge, again)
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

    def reload(self) -> None:
        """Re-read the settings now (done by itself when the settings source reports a change).

        A bad stored value leaves the last good configuration in force.
        """
        try:
            cfg = read_limits(self._settings, self.operation, self._explicit)
        except ConfigError:
            logging.getLogger("bounceback.policy").warning(
                "settings for %r are invalid; keeping the last good values", self.operation, exc_info=True
            )
            return
        self._loop.configure(cfg)

    @property
    def config(self) -> RetryConfig:
        """The limits in force now."""
        return self._loop.engine.cfg

    @property
    def breaker(self) -> BreakerPort | None:
        """The circuit breaker every attempt passes, if any."""
        return self._loop.engine.breaker

    @property
    def throttle(self) -> AdaptiveThrottle | None:
        """The adaptive throttle every attempt asks first, if any."""
        gates = self._loop.gates  # the parts are kept once, where the attempts use them
        return gates.throttle if isinstance(gates, Gates) else None

    @property
    def limiter(self) -> ConcurrencyLimiter | None:
        """The concurrency limiter every attempt passes, if any."""
        gates = self._loop.gates
        return gates.limiter if isinstance(gates, Gates) else None

    @property
    def rate_limit(self) -> RateLimiter | None:
        """The rate limiter every attempt passes first, if any."""
        gates = self._loop.gates
        return gates.rate_limit if isinstance(gates, Gates) else None

    @property
    def hedge(self) -> Hedge | None:
        """The hedge that races copies of every attempt, if any."""
        return self._loop.hedge

    @property
    def budget(self) -> BudgetPort | None:
        """The retry budget every retry (and every hedge) spends from, if any."""
        return self._loop.engine.budget

    @property
    def fallback(self) -> Any:
        """What recovery hands over to when it gives up (:data:`UNSET`: nothing, the error is raised)."""
        return self._loop.fallback

    def replace(self, **changes: Any) -> Policy:
        """A copy of this policy with some arguments changed (the breaker is shared, not copied)."""
        loop = self._loop
        eng = loop.engine
        kwargs: dict[str, Any] = {
            "classifier": eng.classifier,
            "retry_if_result": loop.result_check,
            "breaker": eng.breaker,
            "throttle": self.throttle,
            "limiter": self.limiter,
            "rate_limit": self.rate_limit,
            "hedge": loop.hedge,
            "fallback": loop.fallback,
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

    def _again(self, again: RetryAgain) -> Policy:
        """The policy to run again with, as a fallback's ``RetryAgain`` asks."""
        changes: dict[str, Any] = {}
        if again.attempts is not None:
            changes["attempts"] = again.attempts
        if again.deadline is not None:
            changes["deadline"] = again.deadline
        if again.on_outcome is not None:
            changes["fallback"] = _FollowUp(self._loop.fallback, again.on_outcome)
        return self.replace(**changes)

    # -- the three forms ----------------------------------------------------------------------------

    @overload
    def __call__(self, fn: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function (sync or async) so every call runs under this policy."""
        if self.operation is None:
            return self.replace(operation=_name_of(fn))(fn)
        if inspect.iscoroutinefunction(fn):
            return wrap_async(self._loop, fn, self)
        return wrap_sync(self._loop, fn, self)

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` under this policy and return its result."""
        return cast(T, self._loop.call_sync(fn, args, kwargs))

    async def acall(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` under this policy and return its result."""
        return cast(T, await self._loop.call_async(fn, args, kwargs))

    def attempts(self) -> Attempts:
        """Retry a block: ``for attempt in policy.attempts(): with attempt: ...`` (also ``async for``).

        A block is not hedged (its code runs once per attempt, in place); the gates and the budget apply.
        """
        loop = self._loop
        return Attempts(loop.engine, loop.gates, loop.result_check)

    def close(self) -> None:
        """Stop following settings changes."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    def __repr__(self) -> str:
        cfg = self._loop.engine.cfg
        return (
            f"Policy({self.operation!r}, attempts={cfg.attempts}, deadline={cfg.deadline:g}, "
            f"backoff={cfg.backoff!r}, breaker={getattr(self.breaker, 'name', None)!r})"
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
    hedge: Hedge | None
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
    if not given.keys() <= _RETRY_OPTIONS:
        unknown = sorted(given.keys() - _RETRY_OPTIONS)
        hint = "a breaker goes to Policy(..., breaker=...)" if unknown[0] == "breaker" else None
        allowed = "one of retry()'s arguments: " + ", ".join(RetryOptions.__annotations__)
        raise ConfigError(unknown[0], given[unknown[0]], allowed, hint=hint)
    operation = given.pop("operation", None)
    if fn is not None:
        # ``@retry`` alone: one policy named after the function, not an unnamed one renamed when it decorates.
        return Policy(operation or _name_of(fn), **given)(fn)
    return Policy(operation, **given)


_RETRY_OPTIONS = frozenset(RetryOptions.__annotations__)


def _check_hedge(hedge: object, budget: object) -> None:
    """A Policy's hedge must be a :class:`Hedge` spending from the policy's own retry budget, so that hedges
    and retries together stay within one budget."""
    if hedge is None:
        return
    if not isinstance(hedge, Hedge):
        raise ConfigError("hedge", hedge, "a bounceback.Hedge(..., idempotent=True), or None")
    if budget is not None and hedge.budget is not budget:
        raise ConfigError(
            "hedge",
            hedge,
            "a Hedge that spends from this policy's retry budget",
            hint="give the policy no budget= (it then spends from the hedge's), or give both the same "
            "budget=; a hedge with budget=None needs a policy with budget=None",
        )
