"""The attempt loop of a Policy: one loop, two drivers.

Every decision (classify, count, compute the delay, check the deadline and the budget, emit events) is the
retry engine's (:meth:`Engine.after_failure`, :meth:`Engine.next_attempt`); the steps of one attempt
(admission by the gates, the outcome, the result check) are the methods below, shared by both drivers.
:meth:`AttemptLoop.call_sync` / :meth:`AttemptLoop.recover_sync` and their async twins differ only where
they must: how the function is called (a call, a thread under a timeout, an await under ``asyncio.timeout``)
and how a wait is slept.

The first attempt costs no run record: a :class:`Run` is made when an attempt fails. Without an attempt
timeout (which needs the start time) and a result check, the first attempt does not read the clock either,
so a deadline is counted from the moment the first attempt failed (see ``Policy``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from bounceback.core._control import run_controls
from bounceback.core._time import waits_enabled
from bounceback.core.classify._rules import Classification
from bounceback.core.policy._parts import UNSET, RetryAgain, _FollowUp
from bounceback.core.retry._engine import _RESULT, REFUSALS, BreakerPort, Engine, Run
from bounceback.core.retry._state import RetryConfig, call_with_timeout
from bounceback.core.strategies._gates import Gates
from bounceback.errors import AttemptTimeout

if TYPE_CHECKING:
    from bounceback.core.strategies._hedge import Hedge

__all__ = ["AttemptLoop", "Decided", "Outcome"]

Decided = tuple[float, float | str] | tuple[float, float, BaseException | None, Classification]
"""What a wrapper's short route hands on: ``(now, decision)`` when the engine decided the first failure (at
``now``) for a wait or a give-up; ``(now, 0.0, first error, its verdict)`` when the retry it then made at once
failed too."""

Outcome = tuple[bool, Any, Any]
"""One attempt's outcome: ``(True, result, None)``, or ``(False, error or rejected result, verdict)``."""


class _Rerun(Protocol):
    """What a fallback's :class:`RetryAgain` runs: a Policy with the new limits (its public face)."""

    @property
    def fallback(self) -> Any: ...

    def call(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any: ...

    async def acall(self, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any) -> Any: ...


class AttemptLoop:
    """Runs calls for one policy: the first attempt, then recovery until success or give-up.

    ``fast`` is what the wrappers look at on every call: true while an attempt needs neither a timer nor a
    result check nor a hedge, so that the first attempt is a plain call (the gates are asked by the
    wrappers through their own ``fast_path``). It follows the settings when they change. ``quiet`` is the
    fixed half of :meth:`Engine.is_quiet` for a fast loop (no cancel token); the half that changes (anyone
    listening, the run controls) is read where a recovery starts.
    """

    __slots__ = (
        "again",
        "count_call",
        "engine",
        "fallback",
        "fast",
        "gates",
        "hedge",
        "quiet",
        "result_check",
    )

    def __init__(
        self,
        engine: Engine,
        gates: BreakerPort | None,
        result_check: Callable[[Any], bool] | None,
        fallback: Any,
        hedge: Hedge | None,
        again: Callable[[RetryAgain], _Rerun] | None,
        /,
    ) -> None:
        self.engine = engine
        self.gates = gates
        self.result_check = result_check
        self.fallback = fallback
        self.hedge = hedge
        self.again = again
        # Looked up once: the budget never changes for a policy, and counting a call is on every call.
        self.count_call: Callable[[], object] | None = getattr(engine.budget, "count_call", None)
        self.fast = self.quiet = False
        self._flags(engine.cfg)

    def configure(self, cfg: RetryConfig) -> None:
        """Put new limits in force (settings changed)."""
        self.engine.configure(cfg)
        self._flags(cfg)

    def _flags(self, cfg: RetryConfig) -> None:
        self.fast = cfg.attempt_timeout == math.inf and self.result_check is None and self.hedge is None
        # The fixed half of Engine.is_quiet: the half that changes (listeners, the run controls) is read when
        # a recovery starts.
        self.quiet = self.fast and self.engine.cancel is None

    # -- the steps of one attempt, the same for sync and async --------------------------------------

    def admit(self) -> tuple[Any, Outcome | None]:
        """Pass the gates: ``(permit, None)``, or ``(None, a failed outcome)`` when one refuses."""
        gates = self.gates
        if gates is None:
            return None, None
        try:
            return gates.acquire(), None
        except REFUSALS as exc:
            return None, (False, exc, self.engine.classify(exc))

    async def admit_async(self) -> tuple[Any, Outcome | None]:
        """:meth:`admit` for async calls: gates that queue (a concurrency limit, a rate limit) await their
        turn on the event loop instead of refusing at once."""
        gates = self.gates
        if not isinstance(gates, Gates):
            return self.admit()
        try:
            return await gates.acquire_async(), None
        except REFUSALS as exc:
            return None, (False, exc, self.engine.classify(exc))

    def failed(self, permit: Any, exc: Exception) -> Outcome:
        """An attempt raised: classify it and tell the gates."""
        verdict = self.engine.classify(exc)
        if self.gates is not None:
            self.gates.release(permit, verdict)
        return False, exc, verdict

    def abandon(self, permit: Any) -> None:
        """An attempt ended by KeyboardInterrupt, SystemExit or cancellation: no outcome for the gates."""
        if self.gates is not None:
            self.gates.abandon(permit)

    def settle(self, permit: Any, result: Any) -> Outcome:
        """An attempt returned: rejected by ``retry_if_result`` (a failure) or a success."""
        gates = self.gates
        check = self.result_check
        if check is not None and check(result):
            if gates is not None:
                gates.release(permit, _RESULT)
            return False, result, _RESULT
        if gates is not None:
            gates.release(permit, None)
        return True, result, None

    def give_up(self, run: Run, result: Any) -> Any:
        """The end of a run: the fallback's answer, or what giving up raises."""
        fallback = self.fallback
        if fallback is UNSET:
            # Nobody to describe the end to: attach the history and raise, without building a GiveUp.
            self.engine.finish(run)
            self.engine.raise_for(run, result)
        info = self.engine.give_up(run, result)
        return fallback(info) if callable(fallback) else fallback

    def _timeout(self, run: Run | None) -> float:
        """The bound of the next attempt: the attempt timeout, cut to what is left of the deadline. Sync
        code cannot be interrupted, so without an attempt timeout the deadline bounds no running attempt."""
        eng = self.engine
        if eng.cfg.attempt_timeout == math.inf:
            return math.inf
        return eng.attempt_budget(run) if run is not None else eng.cfg.attempt_timeout

    # -- sync ---------------------------------------------------------------------------------------

    def call_sync(self, fn: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """Run ``fn`` under the policy (the ``call`` form, and the wrappers' slow path)."""
        if self.count_call is not None:
            self.count_call()
        gates = self.gates
        if self.fast and (gates is None or gates.fast_path):
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                verdict = self.engine.classify(exc)
                if gates is not None:
                    gates.release(None, verdict)
                return self.recover_sync(fn, args, kwargs, -1.0, exc, verdict, None)
            if gates is not None:
                gates.count_success()
            return result
        started = self.engine.clock.monotonic()
        ok, value, verdict = self.attempt_sync(fn, args, kwargs, None)
        if ok:
            return value
        error, rejected = _split(value)
        try:
            return self.recover_sync(fn, args, kwargs, started, error, verdict, rejected)
        finally:
            value = error = rejected = None  # the first error leads back here (see recover_sync)

    def attempt_sync(self, fn: Callable[..., Any], args: Any, kwargs: Any, run: Run | None) -> Outcome:
        """One attempt through the gates, the hedge and the timeout."""
        try:
            permit, refused = self.admit()
            if refused is not None:
                return refused
            if self.hedge is not None:
                fn = functools.partial(self.hedge.call, fn)
            try:
                timeout = self._timeout(run)
                if timeout != math.inf:
                    result = call_with_timeout(fn, args, kwargs, timeout, self.engine.operation)
                else:
                    result = fn(*args, **kwargs)
            except Exception as exc:
                return self.failed(permit, exc)
            except BaseException:
                self.abandon(permit)
                raise
            return self.settle(permit, result)
        finally:
            # As in recover_sync: the outcome's error leads back to this frame; the run holds errors too.
            run = refused = None

    def recover_sync(
        self,
        fn: Callable[..., Any],
        args: Any,
        kwargs: Any,
        started: float,
        exc: BaseException | None,
        verdict: Classification,
        result: Any,
        decided: Decided | None = None,
    ) -> Any:
        """After a failed first attempt: decide, wait, try again, until success or give-up.

        ``decided``: what a wrapper's short route already did (see :data:`Decided`).
        """
        try:
            eng = self.engine
            gates = self.gates
            run: Run | None = None
            delay: float | None = None
            if decided is not None and len(decided) == 4:
                # The wrapper's retry (no wait, no record) failed too: ``exc`` is its error; the run begins.
                started, first_delay, first_exc, first_verdict = decided
                run = eng.retried(started, first_exc, first_verdict, first_delay)
                now = -1.0
            elif decided is not None or (
                started < 0 and self.quiet and not eng.bus.listening and not run_controls.enabled
            ):
                # Nobody listens and nothing can cancel it (checked here, once): decide at once; a run record is
                # made only if another attempt fails (one failure then success, the common recovery, needs none).
                if decided is not None:
                    now, decision = decided
                else:
                    now = eng.clock.monotonic()
                    decision = eng.first(exc, verdict, now)
                started = now
                if isinstance(decision, str):
                    run, delay = self._ended(now, exc, verdict, decision), -1.0
                else:
                    delay = decision
            else:
                run, started, now = self._first(started)
            attempt_started = started
            while True:
                if delay is None:
                    assert run is not None
                    delay = eng.after_failure(run, exc, verdict, attempt_started, now)
                    if delay is None:
                        break
                elif delay < 0:
                    break  # the first failure ended it
                if delay > 0 and waits_enabled():
                    eng.clock.sleep(delay, run.cancel if run is not None else None)
                    if run is None:
                        attempt_started = eng.clock.monotonic()
                # (No wait and no run: the second attempt starts as the first failure was decided.)
                if run is not None:
                    attempt_started = eng.next_attempt(run)
                    if attempt_started < 0:
                        break  # cancelled during the wait
                now = -1.0
                if self.fast and (gates is None or gates.fast_path):
                    # Nothing to time or check, and gates that need no permit: the first attempt's plain call.
                    try:
                        value = fn(*args, **kwargs)
                    except Exception as error:
                        run = run or eng.retried(started, exc, verdict, delay)
                        exc, verdict, result, delay = error, eng.classify(error), None, None
                        if gates is not None:
                            gates.release(None, verdict)
                        continue
                    if gates is not None:
                        gates.count_success()
                    if run is not None:
                        eng.succeeded(run)
                    return value
                run = run or eng.retried(started, exc, verdict, delay)
                ok, value, verdict = self.attempt_sync(fn, args, kwargs, run)
                if ok:
                    eng.succeeded(run)
                    return value
                exc, result = _split(value)
                delay = None
            assert run is not None
            outcome = self.give_up(run, result)
            if isinstance(outcome, RetryAgain) and self.again is not None:  # None: no fallback, none asked
                rerun = self.again(outcome)
                value = rerun.call(fn, *args, **kwargs)
                _told_success(rerun)
                return value
            return outcome
        finally:
            # This frame keeps errors raised below it (so does the run record), and each error's traceback
            # leads back here through its frames: a cycle only the collector frees, holding the call's
            # arguments meanwhile. Emptied on the way out, a recovery leaves nothing behind, however it ends.
            exc = value = result = run = decided = None

    def _first(self, started: float) -> tuple[Run, float, float]:
        """The run of a recovery that needs one from its first failure: ``(run, started, now)``. An untimed
        first attempt (``started`` < 0) starts the run now, when it failed (``now``, else -1.0: unread)."""
        eng = self.engine
        if started >= 0:
            return eng.start(started), started, -1.0
        now = eng.clock.monotonic()
        return eng.start(now), now, now

    def _ended(self, now: float, exc: BaseException | None, verdict: Classification, reason: str) -> Run:
        """The run of a recovery whose first failure, decided without one, ended it (``reason``)."""
        run = self.engine.start(now)
        self.engine.record(run, exc, verdict, 0.0, reason)
        return run

    # -- async --------------------------------------------------------------------------------------

    async def call_async(self, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any) -> Any:
        """Await ``fn`` under the policy (the ``acall`` form, and the wrapper's slow path)."""
        if self.count_call is not None:
            self.count_call()
        gates = self.gates
        if self.fast and (gates is None or gates.fast_path):
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                verdict = self.engine.classify(exc)
                if gates is not None:
                    gates.release(None, verdict)
                return await self.recover_async(fn, args, kwargs, -1.0, exc, verdict, None)
            if gates is not None:
                gates.count_success()
            return result
        # The deadline bounds a running attempt only through attempt_timeout, as in sync code: it stops
        # retrying, it does not cancel a call that is still working (a 30 s default must not cut a download).
        started = self.engine.clock.monotonic()
        ok, value, verdict = await self.attempt_async(fn, args, kwargs, None)
        if ok:
            return value
        error, rejected = _split(value)
        try:
            return await self.recover_async(fn, args, kwargs, started, error, verdict, rejected)
        finally:
            value = error = rejected = None  # the first error leads back here (see recover_sync)

    async def attempt_async(
        self, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any, run: Run | None
    ) -> Outcome:
        """One awaited attempt through the gates, the hedge and the timeout."""
        try:
            permit, refused = await self.admit_async()
            if refused is not None:
                return refused
            if self.hedge is not None:
                fn = functools.partial(self.hedge.acall, fn)
            try:
                timeout = self._timeout(run)
                if timeout != math.inf:
                    try:
                        async with asyncio.timeout(timeout):
                            result = await fn(*args, **kwargs)
                    except TimeoutError as exc:
                        # Ours only if our timer fired; a TimeoutError raised by fn itself stays as it is.
                        if exc.__context__ is None or not isinstance(exc.__context__, asyncio.CancelledError):
                            raise
                        raise AttemptTimeout(self.engine.operation, timeout) from None
                else:
                    result = await fn(*args, **kwargs)
            except Exception as exc:
                return self.failed(permit, exc)
            except BaseException:
                self.abandon(permit)
                raise
            return self.settle(permit, result)
        finally:
            # As in recover_sync: the outcome's error leads back to this frame; the run holds errors too.
            run = refused = None

    async def recover_async(
        self,
        fn: Callable[..., Awaitable[Any]],
        args: Any,
        kwargs: Any,
        started: float,
        exc: BaseException | None,
        verdict: Classification,
        result: Any,
        decided: Decided | None = None,
    ) -> Any:
        """:meth:`recover_sync` for coroutines: the same decisions; the waits and the calls are awaited."""
        try:
            eng = self.engine
            gates = self.gates
            run: Run | None = None
            delay: float | None = None
            if decided is not None and len(decided) == 4:
                # The wrapper's retry (no wait, no record) failed too: ``exc`` is its error; the run begins.
                started, first_delay, first_exc, first_verdict = decided
                run = eng.retried(started, first_exc, first_verdict, first_delay)
                now = -1.0
            elif decided is not None or (
                started < 0 and self.quiet and not eng.bus.listening and not run_controls.enabled
            ):
                # Nobody listens and nothing can cancel it (checked here, once): decide at once; a run record is
                # made only if another attempt fails (one failure then success, the common recovery, needs none).
                if decided is not None:
                    now, decision = decided
                else:
                    now = eng.clock.monotonic()
                    decision = eng.first(exc, verdict, now)
                started = now
                if isinstance(decision, str):
                    run, delay = self._ended(now, exc, verdict, decision), -1.0
                else:
                    delay = decision
            else:
                run, started, now = self._first(started)
            attempt_started = started
            while True:
                if delay is None:
                    assert run is not None
                    delay = eng.after_failure(run, exc, verdict, attempt_started, now)
                    if delay is None:
                        break
                elif delay < 0:
                    break  # the first failure ended it
                if delay > 0 and waits_enabled():
                    await eng.clock.async_sleep(delay, run.cancel if run is not None else None)
                    if run is None:
                        attempt_started = eng.clock.monotonic()
                # (No wait and no run: the second attempt starts as the first failure was decided.)
                if run is not None:
                    attempt_started = eng.next_attempt(run)
                    if attempt_started < 0:
                        break  # cancelled during the wait
                now = -1.0
                if self.fast and (gates is None or gates.fast_path):
                    try:
                        value = await fn(*args, **kwargs)
                    except Exception as error:
                        run = run or eng.retried(started, exc, verdict, delay)
                        exc, verdict, result, delay = error, eng.classify(error), None, None
                        if gates is not None:
                            gates.release(None, verdict)
                        continue
                    if gates is not None:
                        gates.count_success()
                    if run is not None:
                        eng.succeeded(run)
                    return value
                run = run or eng.retried(started, exc, verdict, delay)
                ok, value, verdict = await self.attempt_async(fn, args, kwargs, run)
                if ok:
                    eng.succeeded(run)
                    return value
                exc, result = _split(value)
                delay = None
            assert run is not None
            outcome = self.give_up(run, result)
            if inspect.isawaitable(outcome):
                outcome = await outcome
            if isinstance(outcome, RetryAgain) and self.again is not None:  # None: no fallback, none asked
                rerun = self.again(outcome)
                value = await rerun.acall(fn, *args, **kwargs)
                _told_success(rerun)
                return value
            return outcome
        finally:
            # This frame keeps errors raised below it (so does the run record), and each error's traceback
            # leads back here through its frames: a cycle only the collector frees, holding the call's
            # arguments meanwhile. Emptied on the way out, a recovery leaves nothing behind, however it ends.
            exc = value = result = run = decided = None


def _split(value: Any) -> tuple[BaseException | None, Any]:
    """A failed outcome's value as ``(error, None)`` or ``(None, rejected result)``."""
    return (value, None) if isinstance(value, BaseException) else (None, value)


def _told_success(rerun: _Rerun) -> None:
    """A run again that succeeded tells its ``RetryAgain.on_outcome``."""
    fallback = rerun.fallback
    if isinstance(fallback, _FollowUp):
        fallback.succeeded()
