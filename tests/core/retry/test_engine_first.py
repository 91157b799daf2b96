"""``Engine.first``, the first retry's decision the wrappers take, against ``Engine.decide`` at attempt 1.

The first is the general decision with its common case laid out inline (the backoff's first band, the
budget's grant taken in place). Two engines alike in everything, each with its own budget and random
source in the same state, must give the same answers in the same order, and leave their budgets alike.
"""

from __future__ import annotations

import math
import random

from hypothesis import given
from hypothesis import strategies as st

from bounceback import Backoff, BackoffKind, CircuitOpenError, Classification, ErrorKind, Jitter, RetryBudget
from bounceback.core.retry import Engine, RetryConfig
from bounceback.errors import RequestThrottled
from bounceback.events import EventBus
from bounceback.testing import FakeClock

ERRORS = [ConnectionError("down"), CircuitOpenError("dep", "open", None, 4.0), RequestThrottled("dep", 0.5)]

verdicts = st.builds(
    Classification,
    st.sampled_from(list(ErrorKind)),
    st.just("why"),
    st.one_of(st.none(), st.floats(0, 600)),
)


def engine(cfg: RetryConfig, budget: RetryBudget | None, clock: FakeClock, seed: int) -> Engine:
    return Engine("op", cfg, None, clock, random.Random(seed), EventBus(), None, None, budget)


@given(
    attempts=st.integers(1, 4),
    deadline=st.sampled_from([0.0001, 0.05, 0.2, 2.0, 30.0, math.inf]),  # 0.2, 2: a wait of the deadline
    kind=st.sampled_from(list(BackoffKind)),
    jitter=st.sampled_from(list(Jitter)),
    initial=st.sampled_from([0.0, 0.01, 0.2, 2.0]),
    spread=st.sampled_from([0.0, 0.1, 5.0]),  # 0.1: decorrelated draws past the cap
    max_retry_after=st.sampled_from([0.5, 300.0]),
    budget=st.sampled_from([None, (0.1, 0.0), (1.0, 0.2)]),
    seed=st.integers(0, 2**32),
    steps=st.lists(
        st.tuples(st.integers(0, 2), verdicts, st.integers(0, 3), st.floats(0, 3)), min_size=1, max_size=30
    ),
)
def test_first_decides_as_decide_at_attempt_one(
    attempts: int,
    deadline: float,
    kind: BackoffKind,
    jitter: Jitter,
    initial: float,
    spread: float,
    max_retry_after: float,
    budget: tuple[float, float] | None,
    seed: int,
    steps: list[tuple[int, Classification, int, float]],
) -> None:
    cfg = RetryConfig(
        attempts=attempts,
        deadline=deadline,
        backoff=Backoff(kind, initial=initial, max_delay=initial + spread, jitter=jitter),
        max_retry_after=max_retry_after,
    )
    clock = FakeClock(start=100.0)
    budgets = [
        None if budget is None else RetryBudget(budget[0], min_per_second=budget[1], window=2, clock=clock)
        for _ in range(2)
    ]
    fast, general = (engine(cfg, b, clock, seed) for b in budgets)
    for error, verdict, calls, advance in steps:
        for b in budgets:
            for _ in range(calls):
                if b is not None:
                    b.record_call()
        now = clock.monotonic()
        exc = ERRORS[error]
        assert fast.first(exc, verdict, now) == general.decide(1, 0.0, now, exc, verdict, now, None)
        clock.advance(advance)
    if budgets[0] is not None and budgets[1] is not None:
        assert budgets[0].reading() == budgets[1].reading()


def test_a_first_decorrelated_wait_past_the_cap_is_the_cap() -> None:
    # Decorrelated jitter draws the first wait from [initial, 3 * initial] and caps the draw: with 2 s and a
    # cap of 3 s, three draws in four are the cap itself, as decide() and Backoff.delay give them.
    cfg = RetryConfig(
        attempts=3, backoff=Backoff("exponential", initial=2, max_delay=3, jitter="decorrelated")
    )
    clock = FakeClock()
    fast, general = engine(cfg, None, clock, 7), engine(cfg, None, clock, 7)
    verdict = Classification(ErrorKind.TRANSIENT, "down")
    waits = [fast.first(ERRORS[0], verdict, 0.0) for _ in range(40)]
    assert waits == [general.decide(1, 0.0, 0.0, ERRORS[0], verdict, 0.0, None) for _ in range(40)]
    assert 20 < waits.count(3.0) < 40
    assert all(2.0 <= w <= 3.0 for w in waits if isinstance(w, float))
