"""One Policy shared by many threads: every call, attempt, failure and retry is counted exactly.

Sixteen threads push a few thousand mixed calls each through ONE ``Policy`` with ONE ``CircuitBreaker``
(and one retry budget). Every call's fate is fixed in advance by its number, so the expected counts are
known exactly: the breaker's calls and failures, the budget's calls and retries, the outcomes the callers
see, and (with a listener) the events. A lost increment anywhere shows up as a wrong count.

The thread switch interval is cut to 10 µs so the threads interleave inside the library's bookkeeping
instead of running a whole 5 ms slice each. No timing is asserted (the benchmark ``bench_core.py`` times
the same load).
"""

from __future__ import annotations

import asyncio
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from bounceback import Backoff, CircuitBreaker, Policy, RetryBudget
from bounceback.events import AttemptFailed, Event, EventBus, RecoveryExhausted, RecoverySucceeded
from bounceback.testing import FakeClock

THREADS = 16
CALLS = 2_000
ATTEMPTS = 3
ZERO = Backoff("constant", initial=0, max_delay=0, jitter="none")


def plan(k: int) -> str:
    """What call number ``k`` does (the same in every thread)."""
    if k % 100 == 55:
        return "exhausts"  # fails all three attempts: the caller gets the ConnectionResetError
    if k % 100 == 77:
        return "permanent"  # a caller error: not retried, not counted by the breaker
    if k % 50 == 25:
        return "twice"  # fails twice, the third attempt succeeds
    if k % 10 == 0:
        return "once"  # fails once, the retry succeeds
    return "ok"


@dataclass(frozen=True)
class Expected:
    calls: int
    succeeded: int
    exhausted: int
    permanent: int
    retried_then_ok: int
    transient_failures: int
    counted_attempts: int  # what the breaker counts: every attempt but the permanent errors
    retries: int


def expected(threads: int, calls: int) -> Expected:
    kinds = Counter(plan(k) for k in range(1, calls + 1))
    failures = kinds["once"] + 2 * kinds["twice"] + ATTEMPTS * kinds["exhausts"]
    ok = kinds["ok"] + kinds["once"] + kinds["twice"]
    return Expected(
        calls=threads * calls,
        succeeded=threads * ok,
        exhausted=threads * kinds["exhausts"],
        permanent=threads * kinds["permanent"],
        retried_then_ok=threads * (kinds["once"] + kinds["twice"]),
        transient_failures=threads * failures,
        counted_attempts=threads * (ok + failures),
        retries=threads * (kinds["once"] + 2 * kinds["twice"] + (ATTEMPTS - 1) * kinds["exhausts"]),
    )


class Dependency:
    """One thread's dependency: fails as ``plan`` says and counts what reached it (one per thread)."""

    def __init__(self) -> None:
        self.attempts = 0
        self.failures = 0
        self._key = -1
        self._left = 0

    def step(self, k: int) -> int:
        self.attempts += 1
        if k != self._key:
            self._key = k
            kind = plan(k)
            if kind == "permanent":
                self._key = -1
                raise ValueError(f"call {k}: bad request")
            self._left = {"once": 1, "twice": 2, "exhausts": ATTEMPTS}.get(kind, 0)
        if self._left:
            self._left -= 1
            self.failures += 1
            raise ConnectionResetError(f"call {k}: reset by peer")
        return k


class Outcomes:
    """What the callers of one thread saw."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.wrong: list[str] = []

    def returned(self, k: int, value: int) -> None:
        if value == k:
            self.counts["succeeded"] += 1
        else:
            self.wrong.append(f"call {k}: returned {value!r}")

    def raised(self, k: int, exc: Exception) -> None:
        if isinstance(exc, ConnectionResetError):
            self.counts["exhausted"] += 1
        elif isinstance(exc, ValueError):
            self.counts["permanent"] += 1
        else:  # anything else is a bug: keep it for the assertion message
            self.wrong.append(f"call {k}: {exc!r}")


class EventCounts:
    """A thread-safe subscriber counting events by type."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()

    def __call__(self, event: Event) -> None:
        with self._lock:
            self.counts[type(event).__name__] += 1


@pytest.fixture(autouse=True)
def _tight_thread_switching() -> Iterator[None]:
    before = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    yield
    sys.setswitchinterval(before)


def run_threads(worker: Callable[[int], None]) -> None:
    start = threading.Barrier(THREADS)
    failed: list[BaseException] = []

    def body(index: int) -> None:
        try:
            start.wait(timeout=30)
            worker(index)
        except BaseException as exc:
            failed.append(exc)

    pool = [threading.Thread(target=body, args=(i,)) for i in range(THREADS)]
    for t in pool:
        t.start()
    for t in pool:
        t.join(timeout=240)
    assert not any(t.is_alive() for t in pool), "a worker thread hung"
    assert failed == []


@pytest.mark.parametrize("flavour", ["sync", "async"])
@pytest.mark.parametrize("listening", [False, True], ids=["quiet", "listened"])
@pytest.mark.parametrize("limits", [{}, {"max_in_flight": 64}], ids=["fast-breaker", "permits"])
def test_one_policy_counts_every_call_of_sixteen_threads_exactly(
    flavour: str, listening: bool, limits: dict[str, int]
) -> None:
    # Quiet: the policy's fast path (nobody listens, so no events are built). Listened: the event path.
    # With ``max_in_flight`` every attempt takes a permit from the breaker and gives it back (its locked
    # path); 64 is more than the 16 callers, so none is refused.
    bus = EventBus()
    events = EventCounts()
    if listening:
        bus.subscribe(events)
    # The count window holds every attempt, and the failure rate (about 15%) stays under the 50% limit,
    # so the breaker stays closed and its window counts the whole run.
    name = f"threads-{flavour}-{listening}-{bool(limits)}"
    breaker = CircuitBreaker(name, window=100_000, bus=bus, **limits)
    # A budget whose clock stands still keeps every call and retry in its window (and ratio 1 refuses none).
    budget = RetryBudget(1.0, clock=FakeClock(), name="threads")
    policy = Policy(
        name,
        attempts=ATTEMPTS,
        backoff=ZERO,
        breaker=breaker,
        budget=budget,
        bus=bus,
    )
    deps = [Dependency() for _ in range(THREADS)]
    seen = [Outcomes() for _ in range(THREADS)]

    if flavour == "sync":

        def worker(index: int) -> None:
            dep, out = deps[index], seen[index]

            @policy
            def call(k: int) -> int:
                return dep.step(k)

            for k in range(1, CALLS + 1):
                try:
                    value = call(k)
                except Exception as exc:
                    out.raised(k, exc)
                else:
                    out.returned(k, value)

    else:

        def worker(index: int) -> None:
            dep, out = deps[index], seen[index]

            @policy
            async def call(k: int) -> int:
                await asyncio.sleep(0)  # give way to the loop, as real I/O would
                return dep.step(k)

            async def main() -> None:
                for k in range(1, CALLS + 1):
                    try:
                        value = await call(k)
                    except Exception as exc:
                        out.raised(k, exc)
                    else:
                        out.returned(k, value)

            asyncio.run(main())  # one event loop per thread, all of them through the same policy

    run_threads(worker)

    want = expected(THREADS, CALLS)
    wrong = [line for out in seen for line in out.wrong]
    assert wrong == []
    outcomes = sum((out.counts for out in seen), Counter())
    assert outcomes == Counter(succeeded=want.succeeded, exhausted=want.exhausted, permanent=want.permanent)
    # The dependencies' own counts (one object per thread, so exact) agree with the plan ...
    assert sum(d.attempts for d in deps) == want.counted_attempts + want.permanent
    assert sum(d.failures for d in deps) == want.transient_failures
    # ... and so must the shared objects' counts.
    m = breaker.metrics()
    assert (m.state, m.calls, m.failures, m.rejected, m.in_flight) == (
        "closed",
        want.counted_attempts,
        want.transient_failures,
        0,
        0,
    )
    reading = budget.reading()
    assert (reading.calls, reading.retries) == (want.calls, want.retries)
    if listening:
        assert events.counts[AttemptFailed.__name__] == want.transient_failures + want.permanent
        assert events.counts[RecoverySucceeded.__name__] == want.retried_then_ok
        assert events.counts[RecoveryExhausted.__name__] == want.exhausted + want.permanent
    else:
        assert events.counts == Counter()
