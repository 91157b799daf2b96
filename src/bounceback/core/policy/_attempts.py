"""The block form of retry: ``for attempt in policy.attempts(): with attempt: ...``.

The iterator shares the engine's decisions with the decorator; it only owns the order of events: admission
by the breaker happens in ``__next__``, the outcome is recorded in the attempt's ``__exit__``, and the wait
happens in the following ``__next__``.
"""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from bounceback.core._time import waits_enabled
from bounceback.core.policy._parts import _count_call
from bounceback.core.retry._engine import _RESULT, REFUSALS, Engine, Run

if TYPE_CHECKING:
    from collections.abc import Callable

    from bounceback.core.retry._engine import BreakerPort

__all__ = ["Attempt", "Attempts"]


class Attempt:
    """One attempt of a block. Use it as a context manager; call :meth:`check` to retry on a result."""

    __slots__ = ("_owner", "_permit", "number")

    def __init__(self, owner: Attempts, permit: Any, number: int) -> None:
        self._owner = owner
        self._permit = permit
        self.number = number
        """1 for the first attempt."""

    def check(self, result: Any) -> Any:
        """Hand the block's result to ``retry_if_result``; a rejected result fails this attempt."""
        self._owner.check_result(result)
        return result

    def __enter__(self) -> Attempt:
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        return self._owner.finish(self._permit, exc)


class _RejectedResult(Exception):
    """Raised by Attempt.check to fail an attempt whose result was rejected."""


class Attempts:
    """Iterates over attempts until one succeeds or recovery gives up (then the last error propagates)."""

    __slots__ = ("_breaker", "_check", "_delay", "_done", "_engine", "_last_result", "_run", "_started")

    def __init__(
        self, engine: Engine, breaker: BreakerPort | None, check: Callable[[Any], bool] | None
    ) -> None:
        self._engine = engine
        self._breaker = breaker
        self._check = check
        self._run: Run | None = None
        self._started = -1.0
        self._delay: float | None = None
        self._done = False
        self._last_result: Any = None

    def __iter__(self) -> Attempts:
        return self

    def __aiter__(self) -> Attempts:
        return self

    def __next__(self) -> Attempt:
        while True:
            if self._done:
                raise StopIteration
            if self._delay is not None:
                if self._delay > 0 and waits_enabled():
                    self._engine.clock.sleep(self._delay, self._run.cancel if self._run else None)
                self._after_wait()
            attempt = self._admit()
            if attempt is not None:
                return attempt

    async def __anext__(self) -> Attempt:
        while True:
            if self._done:
                raise StopAsyncIteration
            if self._delay is not None:
                if self._delay > 0 and waits_enabled():
                    await self._engine.clock.async_sleep(self._delay, self._run.cancel if self._run else None)
                self._after_wait()
            attempt = self._admit()
            if attempt is not None:
                return attempt

    def _after_wait(self) -> None:
        run = self._run
        assert run is not None
        self._delay = None
        started = self._engine.next_attempt(run)
        if started < 0:
            self._done = True
            self._raise_give_up(run)
        self._started = started

    def _admit(self) -> Attempt | None:
        """Pass the breaker; a refusal is a failed attempt (waits for the probe or gives up)."""
        eng = self._engine
        if self._run is None and self._started < 0:
            self._started = eng.clock.monotonic()
            if eng.budget is not None:
                _count_call(eng.budget)
        number = self._run.attempt if self._run is not None else 1
        if self._breaker is None:
            return Attempt(self, None, number)
        try:
            return Attempt(self, self._breaker.acquire(), number)
        except REFUSALS as exc:
            if self._fail(exc, eng.classify(exc)):
                return None
            self._raise_give_up(self._run)  # type: ignore[arg-type]

    def _fail(self, exc: BaseException | None, verdict: Any) -> bool:
        """Record a failure; True when another attempt follows."""
        eng = self._engine
        if self._run is None:
            self._run = eng.start(self._started)
        delay = eng.after_failure(self._run, exc, verdict, self._started)
        if delay is None:
            self._done = True
            eng.finish(self._run)
            return False
        self._delay = delay
        return True

    def _raise_give_up(self, run: Run) -> NoReturn:
        self._engine.raise_for(run, self._last_result)

    def check_result(self, result: Any) -> None:
        """Fail the current attempt (raise) when ``retry_if_result`` rejects ``result``."""
        if self._check is not None and self._check(result):
            self._last_result = result
            raise _RejectedResult()

    def finish(self, permit: Any, exc: BaseException | None) -> bool:
        """The end of an attempt's block (its ``__exit__``): True to swallow ``exc`` and try again."""
        brk = self._breaker
        eng = self._engine
        if exc is None:
            if brk is not None:
                brk.release(permit, None)
            self._done = True
            if self._run is not None:
                eng.succeeded(self._run)
            return False
        if not isinstance(exc, Exception):
            if brk is not None:
                brk.abandon(permit)
            return False
        rejected = isinstance(exc, _RejectedResult)
        verdict = _RESULT if rejected else eng.classify(exc)
        if brk is not None:
            brk.release(permit, verdict)
        if self._fail(None if rejected else exc, verdict):
            return True  # swallow: the loop goes on to the next attempt
        run = self._run
        assert run is not None
        if rejected or run.reason == "cancelled":
            self._raise_give_up(run)
        return False  # the original error propagates, history attached
