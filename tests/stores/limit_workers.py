"""Worker processes of the shared-limit tests: real processes on one SQLite file or one Redis server.

The concurrency workers run on the system clock (a call's lease must outlive a real stall); the rate-limit
workers draw tokens on the virtual clock the test moves (:class:`tests.stores.shared_workers.SharedClock`),
so how many tokens the fleet may have had is known exactly.
"""

from __future__ import annotations

import threading
import time
import traceback
from typing import Any

from bounceback import ConcurrencyLimiter, RateLimiter
from bounceback.errors import RateLimitExceeded
from bounceback.stores import RedisSharedLimits, SqliteSharedLimits
from tests.stores.shared_workers import SharedClock

LEASE = 30.0


def make_limits(kind: str, target: str, clock: Any = None) -> SqliteSharedLimits | RedisSharedLimits:
    if kind == "sqlite":
        return SqliteSharedLimits(target, clock=clock, timeout=30.0)
    return RedisSharedLimits(target, clock=clock, timeout=5.0)


def concurrency_worker(
    kind: str, target: str, limit: int, calls: int, gauge: Any, peak: Any, out: Any
) -> None:
    """Two threads, ``calls`` calls each through one fleet-wide limiter; ``gauge`` counts the calls inside
    it across every process (under its lock), ``peak`` keeps the most ever seen."""
    try:
        limiter = ConcurrencyLimiter(
            limit,
            max_waiting=10,
            queue_timeout=120,
            name="fleet",
            shared=make_limits(kind, target),
            lease=LEASE,
        )

        def run() -> None:
            for _ in range(calls):
                with limiter:
                    with gauge.get_lock():
                        gauge.value += 1
                        peak.value = max(peak.value, gauge.value)
                    time.sleep(0.002)  # the call's work: holds the slot while others try for it
                    with gauge.get_lock():
                        gauge.value -= 1

        threads = [threading.Thread(target=run) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        out.put({"rejected": limiter.rejected})
    except BaseException:
        out.put({"error": traceback.format_exc()})


def holder_worker(kind: str, target: str, limit: int, ready: Any) -> None:
    """Take every slot of the fleet, say so, and hang until killed."""
    limiter = ConcurrencyLimiter(limit, name="fleet", shared=make_limits(kind, target), lease=LEASE)
    for _ in range(limit):
        limiter.acquire()
    ready.set()
    time.sleep(600)


def rate_worker(
    kind: str,
    target: str,
    cell: Any,
    rate: float,
    burst: int,
    admitted: Any,
    tries: Any,
    index: int,
    stop: Any,
) -> None:
    """Take tokens without waiting, as fast as it can, until ``stop``; count admissions and attempts."""
    try:
        clock = SharedClock(cell)
        limiter = RateLimiter(
            rate, burst=burst, name="fleet", clock=clock, shared=make_limits(kind, target, clock)
        )
        while not stop.is_set():
            try:
                limiter.try_acquire()
            except RateLimitExceeded:
                pass
            else:
                with admitted.get_lock():
                    admitted.value += 1
            tries[index] += 1
    except BaseException:
        traceback.print_exc()
        raise
