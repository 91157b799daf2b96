"""The tally: every bump is counted once, whichever way it is made, and a take restarts the count."""

from __future__ import annotations

import threading

from hypothesis import given
from hypothesis import strategies as st

from bounceback.core._tally import Tally

STEPS = st.lists(st.sampled_from(["bump", "next", "paired", "take-a", "take-b"]), max_size=200)


@given(STEPS)
def test_takes_add_up_to_the_bumps(steps: list[str]) -> None:
    a, b = Tally(), Tally()
    bump, both = a.bump, Tally.paired(a, b)
    made = {"a": 0, "b": 0}
    taken = {"a": 0, "b": 0}
    for step in steps:
        if step == "bump":
            bump()
            made["a"] += 1
        elif step == "next":
            next(b)
            made["b"] += 1
        elif step == "paired":
            next(both)
            made["a"] += 1
            made["b"] += 1
        else:
            name = step[-1]
            count = (a if name == "a" else b).take()
            assert count == made[name] - taken[name]  # exactly the bumps since the last take
            taken[name] += count
    assert a.take() == made["a"] - taken["a"] and b.take() == made["b"] - taken["b"]
    assert a.take() == 0 and b.take() == 0


def test_no_bump_is_lost_between_threads() -> None:
    tally = Tally()
    bump = tally.bump
    start = threading.Barrier(8)

    def work() -> None:
        start.wait()
        for _ in range(5_000):
            bump()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert tally.take() == 40_000


def test_bump_compares_equal_across_reads() -> None:
    tally = Tally()
    assert tally.bump == tally.bump  # equal (same counter), so a wrapper can tell it is this tally's
    assert repr(tally) == "Tally()"
