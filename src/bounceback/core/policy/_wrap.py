"""The decorator form of a Policy: a wrapper per decorated function, sync or ``async def``.

A wrapper inlines the first attempt of the common case (no timer, no result check, no hedge): a flag
test, the budget's call count (``next()`` on its tally: one C call), the gates' own calls if there are gates
(for a closed breaker alone, its success count, made with the budget's in the same C call), the call. The
clock is not read, nothing is allocated and no run record exists until an attempt fails; then the wrapper
decides the first retry with the engine, or the :class:`AttemptLoop` takes over. Anything else goes to the
loop's ``call_sync`` / ``call_async`` at once.

A sync wrapper closes over what its success path uses and one tuple of what only a failure needs: Python
copies every name a function closes over into its frame on each call, and the success path is most calls.
There is one sync wrapper per shape, so that no shape pays for another's tests: no gates (with a budget or
without), a breaker alone (:func:`_guarded`, its no-permit path inline), and a chain of gates (limiters,
throttles: every call takes its permits, by the permit route a breaker's wrapper also takes off its path).
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from bounceback.core._control import run_controls
from bounceback.core._tally import Tally
from bounceback.core.policy._loop import AttemptLoop
from bounceback.core.retry._engine import REFUSALS
from bounceback.core.strategies._gates import Gates

__all__ = ["wrap_async", "wrap_sync"]


def wrap_sync(loop: AttemptLoop, fn: Callable[..., Any], owner: object) -> Callable[..., Any]:
    """``fn`` run under ``loop`` on every call; ``wrapper.policy`` is ``owner`` (the Policy)."""
    slow = loop.call_sync
    gates = loop.gates
    eng = loop.engine
    # What only a failure needs, in one tuple unpacked on the failure path: every name a wrapper closes over
    # is copied into its frame on every call, so the success path closes over what it uses and this.
    tools = (loop.recover_sync, eng.classify, eng.bus, eng.clock.monotonic, eng.first)
    # ``loop.fast`` is read per call: settings may change it while the program runs. Without gates, the
    # budget's count is the only work besides the call: a wrapper each way, so no test is left per call.
    calls = _calls(loop)
    if gates is None and calls is not None:

        @functools.wraps(fn)
        def counted(*args: Any, **kwargs: Any) -> Any:
            if loop.fast:
                next(calls)
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    recover, classify, bus, monotonic, first = tools
                    verdict = classify(exc)
                    if not (loop.quiet and not bus.listening and not run_controls.enabled):
                        return recover(fn, args, kwargs, -1.0, exc, verdict, None)
                    # Nobody listens, nothing can cancel: the engine decides now, and a retry without a
                    # wait is made here, with no run record (one made only if this attempt fails too).
                    now = monotonic()
                    decision = first(exc, verdict, now)
                    if decision != 0:  # a wait, or a reason to give up (a str)
                        return recover(fn, args, kwargs, -1.0, exc, verdict, None, (now, decision))
                    try:
                        return fn(*args, **kwargs)
                    except Exception as error:
                        return recover(
                            fn, args, kwargs, -1.0, error, classify(error), None, (now, 0.0, exc, verdict)
                        )
            return slow(fn, args, kwargs)

        counted.policy = owner  # type: ignore[attr-defined]
        return counted

    if gates is None:

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if loop.fast:
                try:
                    return fn(*args, **kwargs)
                except Exception as exc:
                    recover, classify, bus, monotonic, first = tools
                    verdict = classify(exc)
                    if not (loop.quiet and not bus.listening and not run_controls.enabled):
                        return recover(fn, args, kwargs, -1.0, exc, verdict, None)
                    # As in the counted wrapper above.
                    now = monotonic()
                    decision = first(exc, verdict, now)
                    if decision != 0:
                        return recover(fn, args, kwargs, -1.0, exc, verdict, None, (now, decision))
                    try:
                        return fn(*args, **kwargs)
                    except Exception as error:
                        return recover(
                            fn, args, kwargs, -1.0, error, classify(error), None, (now, 0.0, exc, verdict)
                        )
            return slow(fn, args, kwargs)

        wrapper.policy = owner  # type: ignore[attr-defined]
        return wrapper

    # The gates' own calls and nothing else: no outcome tuple, no clock read (see AttemptLoop). What a
    # breaker off its no-permit path and every chain of gates (limiters, throttles) run on each call.
    recover, classify = tools[0], tools[1]
    acquire, release, abandon = gates.acquire, gates.release, gates.abandon

    def permitted(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if calls is not None:
            next(calls)
        try:
            permit = acquire()
        except REFUSALS as exc:
            return recover(fn, args, kwargs, -1.0, exc, classify(exc), None)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            verdict = classify(exc)
            release(permit, verdict)
            return recover(fn, args, kwargs, -1.0, exc, verdict, None)
        except BaseException:
            abandon(permit)
            raise
        release(permit, None)
        return result

    if isinstance(gates, Gates):
        # Limiters, throttles, and a breaker among them: every call takes its permits.

        @functools.wraps(fn)
        def gated(*args: Any, **kwargs: Any) -> Any:
            if loop.fast:
                return permitted(args, kwargs)
            return slow(fn, args, kwargs)

        gated.policy = owner  # type: ignore[attr-defined]
        return gated
    return _guarded(loop, fn, owner, gates, calls, tools, permitted)


def _guarded(
    loop: AttemptLoop,
    fn: Callable[..., Any],
    owner: object,
    brk: Any,
    calls: Iterator[object] | None,
    tools: tuple[Any, ...],
    permitted: Callable[[tuple[Any, ...], dict[str, Any]], Any],
) -> Callable[..., Any]:
    """The wrapper of a Policy whose only gate is a breaker: while the breaker needs no permit (closed,
    counting), a success is one count in C; off that path, :func:`wrap_sync`'s permit route."""
    count_success = brk.count_success
    # A breaker and a budget each counting in a Tally: a success is one count in both, made by one call
    # into C (the budget counts the call after it ends; a call that fails is counted on its way out).
    budget_tally = getattr(loop.engine.budget, "call_tally", None)
    successes = getattr(brk, "success_tally", None)
    # ``next()`` on an iterator is the cheapest call there is (the builtin calls the C slot directly).
    counts: Iterator[object]
    if isinstance(budget_tally, Tally) and calls is budget_tally and isinstance(successes, Tally):
        counts = Tally.paired(budget_tally, successes)
    elif calls is None:
        counts = iter(count_success, _NEVER)
    else:
        budget_calls = calls

        def count() -> object:  # a budget of another kind: two counts
            next(budget_calls)
            return count_success()

        counts = iter(count, _NEVER)

    # What only a failure or the permit route needs, in one tuple: the success path closes over five names.
    rest = (*tools, brk.release, calls, count_success, permitted, loop.call_sync)

    @functools.wraps(fn)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if loop.fast and brk.fast_path:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                recover, classify, bus, monotonic, first, release, tally, counted, _, _ = rest
                if tally is not None:
                    next(tally)
                verdict = classify(exc)
                release(None, verdict)
                if not (loop.quiet and not bus.listening and not run_controls.enabled):
                    return recover(fn, args, kwargs, -1.0, exc, verdict, None)
                # As in the wrappers without gates: decided here, and a retry without a wait made here
                # while the breaker still needs no permit (the failure may have tripped it).
                now = monotonic()
                decision = first(exc, verdict, now)
                if decision != 0 or not brk.fast_path:
                    return recover(fn, args, kwargs, -1.0, exc, verdict, None, (now, decision))
                try:
                    result = fn(*args, **kwargs)
                except Exception as error:
                    again = classify(error)
                    release(None, again)
                    return recover(fn, args, kwargs, -1.0, error, again, None, (now, 0.0, exc, verdict))
                counted()
                return result
            except BaseException:
                if rest[6] is not None:
                    next(rest[6])
                raise
            next(counts)
            return result
        if loop.fast:
            return rest[8](args, kwargs)
        return rest[9](fn, args, kwargs)

    guarded.policy = owner  # type: ignore[attr-defined]
    return guarded


_NEVER = object()


def _calls(loop: AttemptLoop) -> Iterator[object] | None:
    """What counts a call in the loop's budget with ``next()`` (one call into C): the budget's tally, or its
    ``count_call`` behind an iterator; None without a budget."""
    count_call = loop.count_call
    if count_call is None:
        return None
    tally = getattr(loop.engine.budget, "call_tally", None)
    if isinstance(tally, Tally) and count_call == tally.bump:
        return tally
    return iter(count_call, _NEVER)


def wrap_async(
    loop: AttemptLoop, fn: Callable[..., Awaitable[Any]], owner: object
) -> Callable[..., Awaitable[Any]]:
    """The coroutine function ``fn`` run under ``loop`` on every call (no extra coroutine per call)."""
    recover = loop.recover_async
    slow = loop.call_async
    classify = loop.engine.classify
    count_call = loop.count_call
    gates = loop.gates
    eng = loop.engine
    bus, monotonic, first = eng.bus, eng.clock.monotonic, eng.first

    if gates is None:

        @functools.wraps(fn)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if loop.fast:
                if count_call is not None:
                    count_call()
                try:
                    return await fn(*args, **kwargs)
                except Exception as exc:
                    verdict = classify(exc)
                    if not (loop.quiet and not bus.listening and not run_controls.enabled):
                        return await recover(fn, args, kwargs, -1.0, exc, verdict, None)
                    # Nobody listens, nothing can cancel: the engine decides now, and a retry without a
                    # wait is made here, with no run record (one made only if this attempt fails too).
                    now = monotonic()
                    decision = first(exc, verdict, now)
                    if decision != 0:  # a wait, or a reason to give up (a str)
                        return await recover(fn, args, kwargs, -1.0, exc, verdict, None, (now, decision))
                    try:
                        return await fn(*args, **kwargs)
                    except Exception as error:
                        return await recover(
                            fn, args, kwargs, -1.0, error, classify(error), None, (now, 0.0, exc, verdict)
                        )
            return await slow(fn, args, kwargs)

        wrapper.policy = owner  # type: ignore[attr-defined]
        return wrapper

    count_success = gates.count_success
    release = gates.release
    abandon = gates.abandon
    # Gates that queue (a concurrency limit, a rate limit) await their turn on the event loop; a breaker
    # alone is asked at once.
    queue = gates.acquire_async if isinstance(gates, Gates) else None
    acquire = gates.acquire

    @functools.wraps(fn)
    async def gated(*args: Any, **kwargs: Any) -> Any:
        if loop.fast:
            if count_call is not None:
                count_call()
            if gates.fast_path:
                try:
                    result = await fn(*args, **kwargs)
                except Exception as exc:
                    verdict = classify(exc)
                    release(None, verdict)
                    return await recover(fn, args, kwargs, -1.0, exc, verdict, None)
                count_success()
                return result
            try:
                permit = await queue() if queue is not None else acquire()
            except REFUSALS as exc:
                return await recover(fn, args, kwargs, -1.0, exc, classify(exc), None)
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                verdict = classify(exc)
                release(permit, verdict)
                return await recover(fn, args, kwargs, -1.0, exc, verdict, None)
            except BaseException:
                abandon(permit)
                raise
            release(permit, None)
            return result
        return await slow(fn, args, kwargs)

    gated.policy = owner  # type: ignore[attr-defined]
    return gated
