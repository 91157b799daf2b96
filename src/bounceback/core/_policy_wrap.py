"""The decorator wrappers of a Policy: the success path inlined, everything else handed to the Policy."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bounceback.core._policy import Policy

__all__: list[str] = []


def _name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _sync_wrapper(policy: Policy, fn: Callable[..., Any]) -> Callable[..., Any]:
    eng = policy._engine
    now = eng.clock.monotonic
    recover = policy._recover_sync
    slow = policy._call_sync
    classify = eng.classify
    # A retry budget counts calls (its denominator); a policy's budget never changes, so look once.
    counter: Any = eng.budget if isinstance(getattr(eng.budget, "_calls", None), int) else None
    brk = policy._breaker

    # The fast path is inlined: a flag test, the call, and the clock only when a deadline needs it (without
    # one, a failure reads the clock and the first attempt's own duration is left out of ``elapsed``).
    if brk is None:

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            mode = policy._mode
            if mode:
                started = now() if mode == 2 else -1.0
                if counter is not None:
                    counter._calls += 1
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    if started < 0:
                        started = now()
                    return recover(fn, args, kwargs, started, exc, classify(exc), None)
            return slow(fn, args, kwargs)

    else:

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            mode = policy._mode
            if mode and brk._fast:
                started = now() if mode == 2 else -1.0
                if counter is not None:
                    counter._calls += 1
                try:
                    result = fn(*args, **kwargs)
                except Exception as exc:
                    if started < 0:
                        started = now()
                    verdict = classify(exc)
                    brk.release(None, verdict)
                    return recover(fn, args, kwargs, started, exc, verdict, None)
                brk._fast_successes += 1
                return result
            return slow(fn, args, kwargs)

    wrapper.policy = policy  # type: ignore[attr-defined]
    return wrapper


def _count_call(budget: Any) -> None:
    """Count one call for a retry budget that counts calls (``RetryBudget``: an integer ``_calls``)."""
    if isinstance(getattr(budget, "_calls", None), int):
        budget._calls += 1


def _async_wrapper(policy: Policy, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    eng = policy._engine
    now = eng.clock.monotonic
    recover = policy._recover_async
    slow = policy._call_async
    classify = eng.classify

    counter: Any = eng.budget if isinstance(getattr(eng.budget, "_calls", None), int) else None

    # As in the sync wrapper, the fast path is inlined: no extra coroutine per call, and the clock is read
    # up front only when a deadline needs the start time.
    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        brk = policy._breaker
        mode = policy._mode
        if mode and (brk is None or brk._fast):
            started = now() if mode == 2 else -1.0
            if counter is not None:
                counter._calls += 1
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
                brk._fast_successes += 1
            return result
        return await slow(fn, args, kwargs)

    wrapper.policy = policy  # type: ignore[attr-defined]
    return wrapper
