"""The asyncio half of :class:`~bounceback.core._policy.Policy` and the attempt steps both halves share.

Only the call and the wait differ from the sync path; admission by the breaker, classification, the
result check and the retry decisions are the Policy's shared helpers and the engine's.
"""

from __future__ import annotations

import asyncio
import inspect
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bounceback.core._classify import Classification
from bounceback.core._policy_parts import UNSET, RetryAgain, _count_call, _FollowUp
from bounceback.core._retry import _RESULT, REFUSALS, BreakerPort, Engine, Run
from bounceback.core._time import waits_enabled
from bounceback.errors import AttemptTimeout

if TYPE_CHECKING:
    from bounceback.core._policy import Policy

__all__: list[str] = []


class _AttemptSteps:
    """The steps of one attempt that do not depend on sync or async: admission, outcome, result check."""

    __slots__ = ()
    _engine: Engine
    _breaker: BreakerPort | None
    _result_check: Callable[[Any], bool] | None

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

    _fallback: Any

    if TYPE_CHECKING:  # provided by Policy

        def replace(self, **changes: Any) -> Policy: ...

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


class _AsyncCalls(_AttemptSteps):
    """Mixed into Policy; relies on its ``_engine``, ``_breaker``, ``_fast`` and the attempt steps."""

    __slots__ = ()
    _fast: bool

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

    async def _attempt_async(
        self, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any, timeout: float
    ) -> tuple[bool, Any, Any]:
        permit, refused = self._admit()
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
