"""The registry of named policies and breakers: weak, newest wins, dead entries swept."""

from __future__ import annotations

import gc

from hypothesis import given
from hypothesis import strategies as st

from bounceback import CircuitBreaker, Policy
from bounceback.events import Registry


def test_the_newest_policy_of_a_name_wins_and_a_dropped_one_is_gone() -> None:
    named = Registry()
    first, second = Policy("sync"), Policy("sync")
    named.add_policy(first)
    named.add_policy(second)
    assert named.policy("sync") is second
    assert named.policies() == {"sync": second}
    del second
    gc.collect()
    assert named.policy("sync") is None and named.policies() == {}
    assert first is not None  # the older one is not brought back: the name followed the newest


def test_breakers_are_held_weakly_too() -> None:
    named = Registry()
    breaker = CircuitBreaker("db")
    named.add_breaker(breaker)
    assert named.breaker("db") is breaker and named.breakers() == {"db": breaker}
    del breaker
    gc.collect()
    assert named.breaker("db") is None and named.breakers() == {}


@given(st.lists(st.tuples(st.integers(0, 300), st.booleans()), max_size=400))
def test_dead_entries_never_pile_up(steps: list[tuple[int, bool]]) -> None:
    # Many names made and dropped (one policy per device, devices coming and going): the table stays within
    # twice the live entries (plus the first sweep's threshold), and every live one is found.
    named, kept, peak = Registry(), {}, 0
    for number, keep in steps:
        policy = Policy(f"device-{number}")
        named.add_policy(policy)
        if keep:
            kept[policy.operation] = policy
        else:
            kept.pop(policy.operation, None)
        peak = max(peak, len(kept))
        del policy
        gc.collect(0)
        assert len(named._policies) <= max(64, 2 * peak)
    gc.collect()
    assert named.policies() == kept
