"""The ways to call through a circuit breaker, as functions of its public port.

:func:`call`, :func:`acall`, :func:`decorate` (for ``async def``) and the ``with`` / ``async with`` blocks
(:func:`enter`, :func:`leave`) use nothing but what the retry engine uses too: ``fast_path``,
``count_success()``, ``acquire()``, ``release()``, ``abandon()``, and the breaker's ``classify``.
``CircuitBreaker`` offers them as its methods (``breaker.call`` *is* :func:`call`, so a call through it costs
no extra frame). The decorator of a plain function is the breaker's own: it inlines the refusal while open,
which reads the breaker's state.

Blocks keep the permit of each open block in one context variable for all breakers, a stack of
``(breaker, permit)`` pairs: per thread and per task, as blocks nest, and no breaker pays for a variable of
its own.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, Protocol, TypeVar

from bounceback.core.classify._rules import Classification, Classifier

__all__ = ["Port", "acall", "call", "decorate", "enter", "leave"]

P = ParamSpec("P")
T = TypeVar("T")


class Port(Protocol):
    """What the forms use of a breaker: its public port (``CircuitBreaker`` has it)."""

    name: str
    fast_path: bool

    @property
    def classifier(self) -> Classifier: ...

    def classify(self, exc: BaseException, /) -> Classification:
        """The breaker's verdict on ``exc`` (its classifier's, bound once)."""
        ...

    def count_success(self) -> object: ...

    def acquire(self) -> Any: ...

    def release(self, permit: Any, failure: Classification | None) -> None: ...

    def abandon(self, permit: Any) -> None: ...

    async def acall(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T: ...


_BLOCKS: contextvars.ContextVar[tuple[tuple[Port, Any], ...]] = contextvars.ContextVar(
    "bounceback_breaker_blocks", default=()
)


def call(brk: Port, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)`` through the breaker and return its result (``breaker.call``).

    Raises ``CircuitOpenError`` / ``BulkheadFull`` without running ``fn`` when the breaker refuses.

    >>> from bounceback import CircuitBreaker
    >>> CircuitBreaker("docs-call").call(pow, 2, 10)
    1024
    """
    if brk.fast_path:
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            brk.release(None, brk.classify(exc))
            raise
        brk.count_success()
        return result
    permit = brk.acquire()
    try:
        result = fn(*args, **kwargs)
    except Exception as exc:
        brk.release(permit, brk.classify(exc))
        raise
    except BaseException:
        brk.abandon(permit)
        raise
    brk.release(permit, None)
    return result


async def acall(brk: Port, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
    """Await ``fn(*args, **kwargs)`` through the breaker and return its result (``breaker.acall``)."""
    if brk.fast_path:
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            brk.release(None, brk.classify(exc))
            raise
        brk.count_success()
        return result
    permit = brk.acquire()
    try:
        result = await fn(*args, **kwargs)
    except Exception as exc:
        brk.release(permit, brk.classify(exc))
        raise
    except BaseException:
        # Cancelled or interrupted: the call has no outcome, its permit goes back.
        brk.abandon(permit)
        raise
    brk.release(permit, None)
    return result


def enter(brk: Port) -> None:
    """Enter a ``with breaker:`` block: admit the call and keep its permit for :func:`leave`."""
    permit = brk.acquire()
    _BLOCKS.set((*_BLOCKS.get(), (brk, permit)))


def leave(brk: Port, exc: BaseException | None) -> None:
    """Leave a block of ``brk``: record its outcome (``exc`` None on success) with the block's permit."""
    blocks = _BLOCKS.get()
    # Blocks nest, so the innermost open block of this breaker is the last one of it on the stack.
    for i in range(len(blocks) - 1, -1, -1):
        if blocks[i][0] is brk:
            break
    else:
        raise RuntimeError(f"breaker {brk.name!r}: block exited that was never entered")
    permit = blocks[i][1]
    _BLOCKS.set(blocks[:i] + blocks[i + 1 :])
    if exc is None:
        brk.release(permit, None)
    elif isinstance(exc, Exception):
        brk.release(permit, brk.classify(exc))
    else:
        brk.abandon(permit)


def decorate(brk: Port, fn: Callable[P, Awaitable[Any]]) -> Callable[P, Awaitable[Any]]:
    """``async def fn`` wrapped so that every call goes through ``brk`` (``@breaker`` on a coroutine function;
    the breaker wraps a plain function itself, with its refusal inlined).

    >>> import asyncio
    >>> from bounceback import CircuitBreaker
    >>> async def ping() -> str:
    ...     return "pong"
    >>> asyncio.run(decorate(CircuitBreaker("docs-decorate"), ping)())
    'pong'
    """
    classify = brk.classify
    release = brk.release
    acall = brk.acall

    @functools.wraps(fn)
    async def awrapper(*args: Any, **kwargs: Any) -> Any:
        if brk.fast_path:
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                release(None, classify(exc))
                raise
            brk.count_success()
            return result
        return await acall(fn, *args, **kwargs)

    awrapper.breaker = brk  # type: ignore[attr-defined]
    return awrapper
