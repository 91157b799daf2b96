"""The parts of a batched breaker store: the ports it needs from the store it wraps, and what it holds per key
(the outcomes not sent yet, the last counts the store returned, the batch in flight)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

from bounceback.core._tally import Tally
from bounceback.core.breaker._store import NO_OUTCOME, BreakerStore, SharedState, WindowSpec
from bounceback.core.breaker._window import FAILED, SLOW, WindowCounts

__all__ = [
    "BatchingStore",
    "Deliver",
    "Key",
    "MAX_RUNS",
    "Run",
    "StateFeed",
    "WatchingStore",
    "record_runs",
    "totals",
]

Run = tuple[int, int, float]
"""``(successes, outcome, now)``: ``successes`` plain successes, then one ``outcome`` (or ``NO_OUTCOME``)."""

MAX_RUNS = 2000
"""The most runs one store call carries (one run per failed or slow outcome; successes are a count)."""
_NEVER = -float("inf")


class BatchingStore(Protocol):
    """A breaker store that can add many runs of one key in one transaction or round trip."""

    def record_many(
        self, key: str, spec: WindowSpec, runs: Sequence[Run], now: float, batch: tuple[str, int] | None
    ) -> tuple[WindowCounts, SharedState | None]:
        """Add ``runs`` in order (``batch``: an id seen before is not added again); return counts and state."""
        ...


Deliver = Callable[[str | None, SharedState | None, bool], None]
"""``deliver(key, state, cleared)``: a state change pushed by the store (``cleared``: the window was emptied
with it). ``deliver(None, None, False)`` says changes may have been missed (a subscription was (re)made):
refresh every key."""


class StateFeed(Protocol):
    """A running subscription to the store's state changes."""

    def stop(self) -> None:
        """Ask the thread to end and release its connection, without waiting (safe in a finalizer)."""
        ...

    def close(self) -> None:
        """Stop delivering and release the subscription's connection and thread (waits for the thread)."""
        ...


class WatchingStore(Protocol):
    """A breaker store that can push state changes made by any process (see ``BatchedBreakerStore``)."""

    def watch(self, deliver: Deliver, keys: Callable[[], list[str]]) -> StateFeed:
        """Start delivering state changes (of the ``keys()`` this process knows, at least) off the caller's thread."""
        ...


def record_runs(
    store: BreakerStore, key: str, spec: WindowSpec, runs: Sequence[Run], now: float
) -> tuple[WindowCounts, SharedState | None]:
    """Add ``runs`` through ``store.record`` one at a time (stores without ``record_many``)."""
    result: tuple[WindowCounts, SharedState | None] | None = None
    for successes, outcome, at in runs:
        result = store.record(key, spec, successes, outcome, at)
    if result is None:
        return store.counts(key, spec, now), store.load(key)
    return result


class Key:
    """What the batched store knows about one breaker key."""

    __slots__ = (
        "counts",
        "fresh_at",
        "inflight",
        "last_mono",
        "last_now",
        "listeners",
        "ok",
        "ok_now",
        "p_broken",
        "p_calls",
        "p_consec",
        "p_failures",
        "p_slow",
        "pushes",
        "recorded",
        "runs",
        "spec",
        "state",
        "tally",
        "told",
    )

    def __init__(self, spec: WindowSpec | None) -> None:
        self.spec = spec
        self.counts = WindowCounts()
        self.state: SharedState | None = None
        self.fresh_at = _NEVER
        self.runs: list[Run] = []
        self.ok = 0  # successes after the last run
        self.ok_now = 0.0
        self.last_now = 0.0  # the store time of the last record, and when (our monotonic) it came
        self.last_mono = 0.0
        self.recorded = False
        # A batch sent but not acknowledged: (seq, runs, calls, failures, slow); resent as it is.
        self.inflight: tuple[int, list[Run], int, int, int] | None = None
        # Totals of the outcomes not yet acknowledged by the store (pending and in flight).
        self.p_calls = self.p_failures = self.p_slow = 0
        self.p_consec = 0  # failures in a row at the end of the unacknowledged outcomes
        self.p_broken = False  # a success among them: the store's run of failures is over
        self.pushes = 0  # state changes pushed for this key: a flush answer read before one must not undo it
        self.told = 0  # the version of the state last handed to the listeners
        # Successes a breaker counted on its fast path (``success_counter``): bumped without a lock by any
        # thread, taken under the store's lock into ``ok`` before the key's next run or batch.
        self.tally: Tally | None = None
        # Breakers of this process told when a pushed or flushed state changes the cached one (weakly held).
        self.listeners: list[Callable[[], Callable[[SharedState], object] | None]] = []

    def pending(self) -> int:
        return len(self.runs) + (1 if self.ok else 0)

    def fold(self, now: float) -> None:
        """Add the successes counted on the fast path since the last fold (with the store's lock held)."""
        tally = self.tally
        if tally is None:
            return
        successes = tally.take()
        if successes:
            self.ok += successes
            self.ok_now = now
            self.p_calls += successes
            self.p_consec = 0
            self.p_broken = True
            self.recorded = True

    def take(self) -> list[Run]:
        if len(self.runs) > MAX_RUNS:
            # A flood of failures: send it in slices, so no single store call runs long.
            runs, self.runs = self.runs[:MAX_RUNS], self.runs[MAX_RUNS:]
            return runs
        runs = self.runs
        if self.ok:
            runs.append((self.ok, NO_OUTCOME, self.ok_now))
        self.runs = []
        self.ok = 0
        return runs


def totals(runs: Sequence[Run]) -> tuple[int, int, int]:
    calls = failures = slow = 0
    for successes, outcome, _ in runs:
        calls += successes
        if outcome >= 0:
            calls += 1
            failures += outcome & FAILED
            slow += (outcome & SLOW) >> 1
    return calls, failures, slow
