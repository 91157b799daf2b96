"""The ways to use a breaker without a Policy: decorator, ``with``, ``async with``, ``call()``, ``acall()``.

All of them go through ``acquire`` / ``release`` / ``abandon``, the same path the retry engine uses, and
classify errors once with the breaker's classifier (``DEFAULT_CLASSIFIER`` unless given).
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import threading
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from bounceback.core.breaker._core import _BreakerCore

if TYPE_CHECKING:
    from bounceback.core.classify._rules import Classification

__all__: list[str] = []

P = ParamSpec("P")
T = TypeVar("T")


class _FormsMixin(_BreakerCore):
    __slots__ = ()

    _permits: contextvars.ContextVar[tuple[Any, ...]] | None
    _lock: threading.Lock

    if TYPE_CHECKING:

        def acquire(self) -> Any: ...
        def release(self, permit: Any, failure: Classification | None) -> None: ...
        def abandon(self, permit: Any) -> None: ...

    def call(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` through the breaker and return its result.

        Raises ``CircuitOpenError`` / ``BulkheadFull`` without running ``fn`` when the breaker refuses.

        >>> from bounceback import CircuitBreaker
        >>> CircuitBreaker("docs-call").call(pow, 2, 10)
        1024
        """
        if self.fast_path:
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                self.release(None, self._classifier.classify(exc))
                raise
            self.count_success()
            return result
        permit = self.acquire()
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            self.release(permit, self._classifier.classify(exc))
            raise
        except BaseException:
            self.abandon(permit)
            raise
        self.release(permit, None)
        return result

    async def acall(self, fn: Callable[..., Awaitable[T]], /, *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` through the breaker and return its result."""
        if self.fast_path:
            try:
                result = await fn(*args, **kwargs)
            except Exception as exc:
                self.release(None, self._classifier.classify(exc))
                raise
            self.count_success()
            return result
        permit = self.acquire()
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            self.release(permit, self._classifier.classify(exc))
            raise
        except BaseException:
            # Cancelled or interrupted: the call has no outcome, its permit goes back.
            self.abandon(permit)
            raise
        self.release(permit, None)
        return result

    @overload
    def __call__(self, fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]: ...
    @overload
    def __call__(self, fn: Callable[P, T]) -> Callable[P, T]: ...

    def __call__(self, fn: Callable[P, Any]) -> Callable[P, Any]:
        """Decorate a function (sync or ``async def``) so every call goes through the breaker."""
        classify = self._classifier.classify
        if inspect.iscoroutinefunction(fn):
            afn = cast(Callable[..., Awaitable[Any]], fn)
            acall = self.acall

            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                if self.fast_path:
                    try:
                        result = await afn(*args, **kwargs)
                    except Exception as exc:
                        self.release(None, classify(exc))
                        raise
                    self.count_success()
                    return result
                return await acall(afn, *args, **kwargs)

            awrapper.breaker = self  # type: ignore[attr-defined]
            return awrapper

        acquire = self.acquire
        release = self.release

        # The fast path of call() is inlined: a decorated function pays one flag test and a count; and so
        # is the rest of call(), so a refusal while open travels through two frames, not three.
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if self.fast_path:
                try:
                    result = fn(*args, **kwargs)
                except Exception as exc:
                    release(None, classify(exc))
                    raise
                self.count_success()
                return result
            permit = acquire()
            try:
                result = fn(*args, **kwargs)
            except Exception as exc:
                release(permit, classify(exc))
                raise
            except BaseException:
                self.abandon(permit)
                raise
            release(permit, None)
            return result

        wrapper.breaker = self  # type: ignore[attr-defined]
        return wrapper

    # -- blocks: the permit of each open block is kept per thread / per task -----------------------------

    def _enter(self) -> None:
        permit = self.acquire()
        permits = self._permits
        if permits is None:
            with self._lock:
                if self._permits is None:
                    self._permits = contextvars.ContextVar(f"bounceback_breaker_{self.name}", default=())
                permits = self._permits
        permits.set((*permits.get(), permit))

    def _exit(self, exc: BaseException | None) -> None:
        stack = self._permits.get() if self._permits is not None else ()
        if not stack:
            raise RuntimeError(f"breaker {self.name!r}: block exited that was never entered")
        permit = stack[-1]
        self._permits.set(stack[:-1])  # type: ignore[union-attr]  # set: the stack was not empty
        if exc is None:
            self.release(permit, None)
        elif isinstance(exc, Exception):
            self.release(permit, self._classifier.classify(exc))
        else:
            self.abandon(permit)

    def __enter__(self) -> Any:
        self._enter()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(exc)

    async def __aenter__(self) -> Any:
        self._enter()
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._exit(exc)
