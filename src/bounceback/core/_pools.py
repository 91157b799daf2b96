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


def shared_instance(clock: Clock | None, key: tuple[Any, ...], make: Callable[[], _T]) -> _T:
    """The instance kept under ``key`` for ``clock``, made by ``make`` the first time it is asked for."""
    if clock is None or clock is SYSTEM_CLOCK:
        # The common case, on every Policy's creation: found without the lock (a dict read is atomic), and
        # the lock taken only to make the instance, once per operation.
        found = _system_pool.get(key)
        if found is not None:
            return cast(_T, found)
    with _pools_lock:
        if clock is None or clock is SYSTEM_CLOCK:
            pool: dict[tuple[Any, ...], Any] | None = _system_pool
        else:
            try:
                pool = _pools.setdefault(clock, {})
            except TypeError:  # a clock that cannot be weakly referenced: each policy gets its own
                pool = None
        if pool is None:
            return make()
        found = pool.get(key)
        if found is None:
            found = pool[key] = make()
        return cast(_T, found)
