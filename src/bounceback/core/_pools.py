"""One instance per operation in a process: the budgets, throttles and limiters that the policies of one
operation share, pooled by clock so that a test's FakeClock gets pools of its own."""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast

from bounceback.core._time import SYSTEM_CLOCK, Clock

__all__ = ["shared_instance"]

# Budgets, throttles and limiters by clock, then by operation and limits: the policies of one operation in a process
# share one. Other clocks than the system's (a test's FakeClock) are held weakly: their pools go with them.
_T = TypeVar("_T")
_system_pool: dict[tuple[Any, ...], Any] = {}
_pools: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()
_pools_lock = threading.Lock()


def shared_instance(clock: Clock | None, key: tuple[Any, ...], make: Callable[..., _T], *args: Any) -> _T:
    """The instance kept under ``key`` for ``clock``, made by ``make(*args)`` the first time it is asked for
    (the arguments given here, not in a closure: a new operation's budget is made on a Policy's creation)."""
    system = clock is None or clock is SYSTEM_CLOCK
    if system:
        # The common case, on every Policy's creation: found without the lock (a dict read is atomic); the
        # lock is taken to make one, once per operation (making one may attach it to a shared store: two
        # threads racing must not both make one).
        found = _system_pool.get(key)
        if found is not None:
            return cast(_T, found)
    _pools_lock.acquire()  # acquire/release cost half of a ``with`` block
    try:
        if system:
            pool: dict[tuple[Any, ...], Any] = _system_pool
        else:
            try:
                pool = _pools.setdefault(clock, {})
            except TypeError:  # a clock that cannot be weakly referenced: each policy gets its own
                return make(*args)
        found = pool.get(key)
        if found is None:
            found = pool[key] = make(*args)
        return cast(_T, found)
    finally:
        _pools_lock.release()
