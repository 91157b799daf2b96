"""What a dropped policy or a finished recovery leaves for the cycle collector: nothing. Policies made per
call, and recoveries during an outage, are freed as soon as they are done with."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Awaitable, Callable

import pytest

from bounceback import ConcurrencyLimiter, Policy
from bounceback.events import registry
from bounceback.testing import FakeClock


def test_a_dropped_policy_is_freed_at_once_without_the_cycle_collector() -> None:
    # Policies made per call (one per request, one per device poll) must not wait for the collector: without a
    # fallback nothing a policy holds leads back to it, so dropping it frees it and its registry entry dies.
    gc.collect()
    gc.disable()
    try:
        for use in ("made", "called", "decorated"):
            policy = Policy(f"freed-at-once-{use}", attempts=3, clock=FakeClock())
            if use == "called":
                assert policy.call(lambda: "ok") == "ok"
            elif use == "decorated":
                decorated = policy(lambda: "ok")
                assert decorated() == "ok"
                del decorated
            ref = weakref.ref(policy)
            del policy
            assert ref() is None, use
            assert registry.policy(f"freed-at-once-{use}") is None
    finally:
        gc.enable()


def _fails(times: int) -> Callable[[], str]:
    calls = [0]

    def once() -> str:
        calls[0] += 1
        if calls[0] <= times:
            raise ConnectionResetError("reset by peer")
        return "ok"

    return once


def _afails(times: int) -> Callable[[], Awaitable[str]]:
    calls = [0]

    async def once() -> str:
        calls[0] += 1
        if calls[0] <= times:
            raise ConnectionResetError("reset by peer")
        return "ok"

    return once


@pytest.mark.parametrize(
    ("gates", "failures"),
    [
        # The recovery's frame keeps the errors, and each error's traceback leads back to it.
        ("none", (2, 3)),
        # With gates (here a concurrency limit) each attempt runs through attempt_sync / attempt_async, whose
        # frames received the errors too: one failure was enough to leave a cycle.
        ("limiter", (1, 2, 3)),
    ],
)
def test_a_recovery_leaves_nothing_for_the_cycle_collector(gates: str, failures: tuple[int, ...]) -> None:
    # During an outage most calls recover after a few failures: a cycle would hold the call's arguments until
    # the collector runs. The loop empties its frames on the way out: nothing is left, sync, decorated, async.
    limiter = ConcurrencyLimiter(4) if gates == "limiter" else None
    policy = Policy(f"recovers-cleanly-{gates}", attempts=5, clock=FakeClock(), limiter=limiter)

    async def recover() -> None:
        for times in failures:
            assert await policy.acall(_afails(times)) == "ok"

    async def nothing() -> None:
        return None

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(nothing())  # the loop's own first-use objects
        assert policy.call(_fails(1)) == "ok"  # first use: the classifier's caches
        gc.collect()
        gc.disable()
        for times in failures:
            assert policy.call(_fails(times)) == "ok"
            assert policy(_fails(times))() == "ok"
        loop.run_until_complete(recover())
        assert gc.collect() == 0
    finally:
        gc.enable()
        loop.close()
