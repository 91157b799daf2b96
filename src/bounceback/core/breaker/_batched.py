"""A breaker store whose call path stays in the process: outcomes are counted here and flushed in batches.

:class:`BatchedBreakerStore` wraps a shared store (SQLite, Redis) and implements the same
:class:`~bounceback.core.breaker._store.BreakerStore` port, so a breaker does not know it is there:

* ``record`` adds the outcome to a per-key list of pending *runs* (``successes`` then one ``outcome``, at
  ``now``) and answers at once from the last window counts the store returned plus the pending outcomes.
  No I/O happens on the caller's thread.
* A background thread (one per store, shared by its keys and by asyncio users alike) flushes each key's
  runs in **one** store call (``record_many``: one SQLite transaction, one Redis script) every
  ``flush_seconds``, or sooner once ``flush_count`` failed or slow outcomes wait (successes travel as one
  number, so a healthy process makes one store call per interval whatever its call rate). The reply carries the fleet's window
  counts and state, which refresh the cache. A key with nothing to flush is refreshed every
  ``staleness / 2`` seconds, so an idle process also learns what the fleet decided.
* ``load`` answers from the cache; only a key never seen reads the store (once, at breaker start-up).
* **Push**: when the inner store offers ``watch`` (Redis: pub/sub on a channel its state-change script
  publishes to; SQLite: a poll of ``PRAGMA data_version``), a thread of the store delivers every state
  change (open, half-open, forced, open-until) made anywhere in the fleet to the cache as it happens, so a
  process learns of a force-open within the push latency instead of its next flush or refresh. The
  flushes and refreshes stay as the fallback: a lost subscription only slows the news down to them.
* ``transition`` (the compare-and-set of a state change) and the half-open probe permits
  (``acquire_probe`` / ``finish_probe`` / ``probes``) go to the store at once: they are rare and must be
  exact fleet-wide. A transition first flushes the key's pending runs, so outcomes land in the window they
  were recorded in.
* When the cached state is older than ``staleness`` (the store could not be reached for that long),
  ``record`` and ``load`` raise :class:`~bounceback.errors.StoreError` at once, without waiting, and the
  breaker does what it always does without a store (``store_unavailable``: fail open or closed, events,
  retry). The flusher keeps the runs it could not deliver and retries them; a batch that may or may not
  have landed (a timeout) is resent under the same ``(producer, seq)`` id, which the store ignores if it
  has seen it, so an outcome is counted exactly once.

The answer of ``record`` is an estimate between flushes: the fleet's window as of the last flush plus this
process's pending outcomes (the other processes' pending outcomes arrive with the next flush). For a count
window that the pending outcomes overflow, the outcomes pushed out are assumed to fail at the window's
rate. Fleet-wide, a threshold crossed in the store is seen by every busy process within two flush
intervals: the next flush of the process that crossed it returns the counts, its breaker opens the fleet
with one transition, and every other process reads the open state in the reply of its own next flush.

The inner store needs ``record_many(key, spec, runs, now, batch)`` to flush in one call; a store without
it (the in-memory store) gets the runs one ``record`` at a time.

One mechanism for every shared counter: the rounds run on a :class:`Flusher` (one thread), which a
:class:`BatchedLedger` (retry budgets: calls and granted retries sent once per round through the inner
ledger's ``settle_many``) shares with the breaker stores of the same backend; shared limits can attach to
it the same way.
"""

from __future__ import annotations

import atexit
import contextlib
import inspect
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from bounceback.core._tally import Tally
from bounceback.core.breaker._store import NO_OUTCOME, BreakerStore, SharedState, WindowSpec
from bounceback.core.breaker._window import FAILED, OK, SLOW, WindowCounts
from bounceback.core.retry._budget import BudgetLedger, BudgetReading, BudgetRule, LocalLedger
from bounceback.errors import ConfigError, StoreError

__all__ = [
    "BatchedBreakerStore",
    "BatchedLedger",
    "BatchingLedger",
    "BatchingStore",
    "Deliver",
    "Flusher",
    "Run",
    "StateFeed",
    "WatchingStore",
    "record_runs",
]

Run = tuple[int, int, float]
"""``(successes, outcome, now)``: ``successes`` plain successes, then one ``outcome`` (or ``NO_OUTCOME``)."""

_log = logging.getLogger("bounceback.store")
_NEVER = -float("inf")
DEFAULT_FLUSH_SECONDS = 0.05
DEFAULT_FLUSH_COUNT = 1000
DEFAULT_STALENESS = 1.0
MAX_RUNS = 2000
"""The most runs one store call carries (one run per failed or slow outcome; successes are a count)."""


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


class _Key:
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


def _totals(runs: Sequence[Run]) -> tuple[int, int, int]:
    calls = failures = slow = 0
    for successes, outcome, _ in runs:
        calls += successes
        if outcome >= 0:
            calls += 1
            failures += outcome & FAILED
            slow += (outcome & SLOW) >> 1
    return calls, failures, slow


_stores: weakref.WeakSet[BatchedBreakerStore | BatchedLedger] = weakref.WeakSet()


def _flush_all_at_exit() -> None:
    for store in list(_stores):
        store.close()


atexit.register(_flush_all_at_exit)


class Flusher:
    """One background thread that runs the flush rounds of every batching store attached to it.

    A job is a callable that makes one round (send what is pending, refresh what is due) and returns True
    when a store call failed; after a failed round the thread waits twice as long (up to 1 s), so a store
    that is down is not hammered every interval. ``wait(seconds)`` replaces the wait between rounds (tests
    drive the rounds themselves). A :class:`BatchedBreakerStore` makes its own unless it is given one; the
    stores built from settings share one per backend with the retry-budget ledger (:class:`BatchedLedger`).

    The flusher holds a job that is a bound method (a store's round) *weakly*, and its thread holds the
    flusher weakly: a store that a program drops without closing takes its job off the rounds, and once no
    job is left the thread ends (it starts again with the next :meth:`start`). So neither a dropped store
    nor a dropped flusher keeps a thread polling for ever. Other callables are held as given.

    >>> flusher = Flusher(0.05)
    >>> rounds = []
    >>> flusher.attach(lambda: rounds.append(1) or False)
    >>> flusher.run_once()
    False
    >>> len(rounds)
    1
    """

    def __init__(
        self,
        interval: float,
        *,
        wait: Callable[[float], object] | None = None,
        name: str = "bounceback-flush",
    ) -> None:
        self.interval = float(interval)
        self.name = name
        self._wait = wait
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._round_lock = threading.Lock()
        self._jobs: list[Callable[[], Callable[[], bool] | None]] = []
        self._thread: threading.Thread | None = None
        self._stopped = False
        # A flusher dropped while its thread waits: wake the thread, which then finds it gone and ends.
        weakref.finalize(self, self._wake.set)

    def attach(self, job: Callable[[], bool]) -> None:
        """Run ``job`` in every round from now on (a bound method is held weakly, see above)."""
        ref = _job_ref(job)
        with self._lock:
            if ref not in self._jobs:
                self._jobs.append(ref)

    def detach(self, job: Callable[[], bool]) -> None:
        """Stop running ``job``, once the round in progress (if any) has ended."""
        ref = _job_ref(job)
        with self._lock:
            if ref in self._jobs:
                self._jobs.remove(ref)
        if self._thread is not threading.current_thread():
            with self._round_lock:
                pass

    def wake(self) -> None:
        """Start the next round now (a batch is full)."""
        self._wake.set()

    def start(self) -> None:
        """Start the thread, unless it runs or the flusher was stopped."""
        with self._lock:
            if self._thread is not None or self._stopped:
                return
            self._thread = threading.Thread(
                target=_flush_loop,
                args=(weakref.ref(self), self._wake, self._wait, self.interval),
                name=self.name,
                daemon=True,
            )
            self._thread.start()

    @property
    def running(self) -> bool:
        """True while the thread runs (it ends when the flusher is stopped or has no job left)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def run_once(self) -> bool:
        """One round of every job, on the caller's thread; True when a store call failed."""
        with self._lock:
            jobs = [job for job in (ref() for ref in self._jobs) if job is not None]
        failed = False
        with self._round_lock:
            for job in jobs:
                try:
                    failed = job() or failed
                except Exception:  # a bug in one store must not stop the others' rounds, nor the thread
                    failed = True
        return failed

    def step(self) -> bool | None:
        """What the thread does after each wait: a round (True when a store call failed), or None when the
        thread should end (stopped, or no job left: its ``_thread`` is then cleared under the lock, so a
        later :meth:`start` makes a new one)."""
        if self._stopped:
            return None
        with self._lock:
            self._jobs = [ref for ref in self._jobs if ref() is not None]  # jobs of dropped stores
            if not self._jobs:
                if self._thread is threading.current_thread():
                    self._thread = None
                return None
        return self.run_once()

    def stop(self) -> None:
        """Stop the thread (waiting for its round in progress); idempotent."""
        self._stopped = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=max(2.0, 4 * self.interval))


class _Held:
    """A strong "reference" to a callable that is not a bound method (compared by the callable itself)."""

    __slots__ = ("job",)

    def __init__(self, job: Callable[..., Any]) -> None:
        self.job = job

    def __call__(self) -> Callable[..., Any]:
        return self.job

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Held) and other.job == self.job

    def __hash__(self) -> int:
        return hash(self.job)


def _job_ref(job: Callable[[], bool]) -> Callable[[], Callable[[], bool] | None]:
    if inspect.ismethod(job):
        return weakref.WeakMethod(job)
    return _Held(job)


def _flush_loop(
    ref: weakref.ReferenceType[Flusher],
    wake: threading.Event,
    wait: Callable[[float], object] | None,
    interval: float,
) -> None:
    # The thread holds its flusher weakly (and only during a round): a dropped flusher ends its thread.
    pause = interval
    while True:
        if wait is not None:
            wait(pause)
        else:
            wake.wait(pause)
            wake.clear()
        flusher = ref()
        if flusher is None:
            return
        failed = flusher.step()
        del flusher
        if failed is None:
            return
        # While a store fails, try less often (up to 1 s) instead of hammering it every interval.
        pause = min(max(pause * 2, interval), max(1.0, interval)) if failed else interval


class BatchedBreakerStore:
    """A :class:`~bounceback.core.breaker._store.BreakerStore` that batches ``inner``'s writes off the call path.

    ``flush_seconds`` (0.05): the longest an outcome waits before it is sent; ``flush_count`` (1000): send
    sooner once this many failed or slow outcomes of one key wait; ``staleness`` (1.0 s): the oldest cached state a
    breaker may act on before the store counts as unavailable. ``monotonic`` measures staleness (tests
    inject a virtual clock); ``wait(seconds)`` is how the flusher waits between rounds (tests drive rounds
    themselves); ``background=False`` runs no rounds (the owner calls :meth:`flush`); ``flusher`` shares
    one :class:`Flusher` thread with other batching stores (made per store otherwise). ``on_flush(key,
    counts, state)`` is called after every store call of the flusher. ``push`` (default on) subscribes to
    the inner store's state changes when it offers ``watch`` (a thread of the store's own, started with the
    first call, even with ``background=False``); ``on_push(key, state)`` is called for each change taken into
    the cache. ``close()`` flushes what is pending and stops the thread and the feed (also done at
    interpreter exit).

    >>> from bounceback.core.breaker._store import MemoryBreakerStore
    >>> from bounceback.core.breaker._window import FAILED
    >>> store = BatchedBreakerStore(MemoryBreakerStore(shared=True))
    >>> counts, state = store.record("db", WindowSpec("count", 10), 3, FAILED, now=1.0)
    >>> counts.calls, counts.failures            # answered locally, before any flush
    (4, 1)
    >>> store.flush()                            # what the background thread does every flush_seconds
    >>> store.inner.counts("db", WindowSpec("count", 10), 1.0).calls
    4
    >>> store.close()
    """

    def __init__(
        self,
        inner: BreakerStore,
        *,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        flush_count: int = DEFAULT_FLUSH_COUNT,
        staleness: float = DEFAULT_STALENESS,
        monotonic: Callable[[], float] | None = None,
        wait: Callable[[float], object] | None = None,
        on_flush: Callable[[str, WindowCounts, SharedState | None], object] | None = None,
        background: bool = True,
        flusher: Flusher | None = None,
        push: bool = True,
        on_push: Callable[[str, SharedState], object] | None = None,
    ) -> None:
        if isinstance(flush_seconds, bool) or not isinstance(flush_seconds, (int, float)):
            raise ConfigError("store.flush_seconds", flush_seconds, "seconds above 0, such as 0.05")
        if not 0 < flush_seconds <= 60:
            raise ConfigError(
                "store.flush_seconds", flush_seconds, "seconds above 0 and at most 60, such as 0.05"
            )
        if isinstance(flush_count, bool) or not isinstance(flush_count, int) or flush_count < 1:
            raise ConfigError(
                "store.flush_count", flush_count, "a whole number of outcomes from 1, such as 1000"
            )
        if isinstance(staleness, bool) or not isinstance(staleness, (int, float)) or staleness <= 0:
            raise ConfigError("store.staleness", staleness, "seconds above 0, such as 1.0")
        if staleness < 2 * flush_seconds:
            raise ConfigError(
                "store.staleness", staleness,
                f"at least two flush intervals ({2 * flush_seconds:g} s with store.flush_seconds = "
                f"{flush_seconds:g}): a cache refreshed every interval must not count as stale",
            )  # fmt: skip
        self.inner = inner
        self.name: str = inner.name
        self.shared: bool = inner.shared
        self.flush_seconds = float(flush_seconds)
        self.flush_count = flush_count
        self.staleness = float(staleness)
        self._monotonic = monotonic or time.monotonic
        # The thread that runs the rounds: this store's own, or one shared with other batching stores
        # (a retry-budget ledger on the same backend), so a process has one flusher, not one per feature.
        self._owns_flusher = flusher is None
        self._flusher = flusher or Flusher(flush_seconds, wait=wait, name=f"bounceback-flush {inner.name}")
        self._background = background
        self._on_flush = on_flush
        self._lock = threading.Lock()
        # One store call of the flusher or a transition at a time, so their answers arrive in order.
        self._io_lock = threading.RLock()
        self._keys: dict[str, _Key] = {}
        self._closed = False
        self._started = False  # the flusher (when background) and the feed were started
        self._producer = f"{os.getpid()}-{id(self):x}-{time.time_ns():x}"
        self._seq = itertools.count(1)
        self._many = getattr(inner, "record_many", None)
        # Pushed state changes, when the store can push them (``watch``) and the owner wants them.
        self._watch = getattr(inner, "watch", None) if push else None
        self._feed: StateFeed | None = None
        self._on_push = on_push
        self._resync = False  # the subscription was (re)made: refresh every key in the next round
        self.pushes = 0
        """State changes pushed by the store and taken into the cache (newer than what it held)."""
        self.flushes = 0
        """Store calls made by the flusher (batches and refreshes), for benchmarks and tests."""
        self.failed_flushes = 0
        """Flusher calls that raised StoreError (their batches are kept and resent)."""
        _stores.add(self)

    # -- the port: answered locally ----------------------------------------------------------------------

    def _entry(self, key: str, spec: WindowSpec | None) -> _Key:
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = _Key(spec)
        elif spec is not None and entry.spec != spec:
            entry.spec = spec  # the store restarts a reshaped window at the next flush
        return entry

    def _stale(self, entry: _Key) -> StoreError | None:
        age = self._monotonic() - entry.fresh_at
        if age <= self.staleness:
            return None
        return StoreError(
            self.name,
            "read the shared state",
            f"no answer from the store for {age:.3g} s, longer than store.staleness = {self.staleness:g} s; "
            "outcomes are kept and sent when it answers again",
        )

    def _ensure_thread(self) -> None:
        if self._started:
            return
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True  # under the lock: two callers racing here start one thread and one feed
        if self._watch is not None and self._feed is None:
            # The feed's thread holds this store weakly (through these two functions): a store the program
            # drops without closing is collected, and its finalizer stops the feed.
            pushed = weakref.WeakMethod(self._pushed)
            known = weakref.WeakMethod(self.known_keys)

            def deliver(key: str | None, state: SharedState | None, cleared: bool) -> None:
                method = pushed()
                if method is not None:
                    method(key, state, cleared)

            def keys() -> list[str]:
                method = known()
                return [] if method is None else method()

            try:
                feed = self._feed = self._watch(deliver, keys)
            except StoreError:
                self._feed = None  # no push today: the flushes and refreshes keep the cache fresh
            else:
                weakref.finalize(self, feed.stop)
        if self._background:
            self._flusher.attach(self._round)
            self._flusher.start()

    def known_keys(self) -> list[str]:
        """The breaker keys this store has seen (what a push feed reads after it (re)subscribes)."""
        return list(self._keys)

    def success_counter(self, key: str, spec: WindowSpec) -> Callable[[], object]:
        """A counter of ``key``'s successes for a breaker's fast path: call it once per success, from any
        thread, without a lock (a :class:`~bounceback.core._tally.Tally`'s ``bump``).

        The counted successes join the key's window (``spec``) before its next recorded outcome and before
        a transition, and travel with the next batch, each exactly once. The store never calls back into the
        breaker to collect them.

        >>> from bounceback.core.breaker._store import MemoryBreakerStore
        >>> store = BatchedBreakerStore(MemoryBreakerStore(shared=True), background=False)
        >>> bump = store.success_counter("db", WindowSpec("count", 10))
        >>> for _ in range(3):
        ...     _ = bump()
        >>> store.flush()
        >>> store.inner.counts("db", WindowSpec("count", 10), 1.0).calls
        3
        >>> store.close()
        """
        with self._lock:
            entry = self._entry(key, spec)
            if entry.tally is None:
                entry.tally = Tally()
            return entry.tally.bump

    def on_state_change(self, key: str, notify: Callable[[SharedState], object]) -> None:
        """Call ``notify(state)`` when ``key``'s cached state changes: at once for a pushed change, at the
        flusher's next round for one a flush answer or a transition of this process brought.

        It runs on the feed's or the flusher's thread with no lock of the store held, so a breaker can
        adopt the change instead of waiting for its next recorded outcome or sync (a breaker ignores a
        state it already holds, such as its own transition). A bound method is held weakly (the store
        keeps no breaker alive).
        """
        ref: Callable[[], Callable[[SharedState], object] | None] = (
            weakref.WeakMethod(notify) if inspect.ismethod(notify) else _Held(notify)
        )
        with self._lock:
            entry = self._entry(key, None)
            entry.listeners = [r for r in entry.listeners if r() is not None] + [ref]

    def _tell(self, entry: _Key) -> None:
        """Hand the cached state to the key's breakers if they were not told of it yet.

        Only threads that hold no lock call this (the push feed, the flusher's rounds): a breaker's
        listener takes the breaker's lock, and a caller's thread may hold that lock while it waits for the
        store's (a transition). A state cached by a caller's thread is told at the next round."""
        with self._lock:
            state = entry.state
            if state is None or not entry.listeners or state.version == entry.told:
                return
            entry.told = state.version
            listeners = list(entry.listeners)
        for ref in listeners:
            notify = ref()
            if notify is None:
                continue
            try:
                notify(state)
            except Exception:  # a listener's bug must not stop the feed or the flusher
                _log.exception("a breaker failed to take a state change made elsewhere")

    def _pushed(self, key: str | None, state: SharedState | None, cleared: bool) -> None:
        """A state change pushed by the store (on the feed's thread): newer versions replace the cache."""
        if key is None:
            # The subscription was (re)made and changes may have been missed meanwhile: refresh everything.
            self._resync = True
            self._flusher.wake()
            return
        if state is None:
            return
        with self._lock:
            entry = self._keys.get(key)
            if entry is None:
                return  # a breaker this process does not run
            cached = entry.state
            news = cached is None or state.version > cached.version
            if news:  # else old news (our own transition, or a flush answer already brought it)
                entry.state = state
                entry.pushes += 1
                if cleared:
                    entry.counts = WindowCounts()  # the window was emptied with the change (a close)
                self.pushes += 1
        # Old news too: a flush made on a caller's thread may have cached it without telling the breakers.
        self._tell(entry)
        if news and self._on_push is not None:
            self._on_push(key, state)

    def _fill(self, key: str, entry: _Key) -> None:
        """A key seen for the first time: read its state from the store once (outside the lock)."""
        try:
            stored = self.inner.load(key)
        except StoreError:
            return
        with self._lock:
            if entry.fresh_at == _NEVER:
                entry.state = stored
                entry.fresh_at = self._monotonic()

    def load(self, key: str) -> SharedState | None:
        """The cached state of ``key`` (read from the store once for a new key); StoreError when stale."""
        self._ensure_thread()
        with self._lock:
            entry = self._entry(key, None)
            new = entry.fresh_at == _NEVER
        if new:
            self._fill(key, entry)
        with self._lock:
            error = self._stale(entry)
            if error is not None:
                raise error
            return entry.state

    def record(
        self, key: str, spec: WindowSpec, successes: int, outcome: int, now: float
    ) -> tuple[WindowCounts, SharedState | None]:
        """Count locally; answer from the last flushed window plus the outcomes not yet flushed."""
        entry = self._keys.get(key)
        if entry is None or entry.fresh_at == _NEVER:
            self.load(key)  # raises when the store cannot be reached: the breaker falls back to local
            entry = self._keys[key]
        mono = self._monotonic()
        with self._lock:
            if mono - entry.fresh_at > self.staleness:
                error = self._stale(entry)
                if error is not None:
                    self._flusher.wake()
                    raise error
            if entry.spec is not spec and entry.spec != spec:
                entry.spec = spec  # the store restarts a reshaped window at the next flush
            entry.last_now = now
            entry.last_mono = mono
            entry.recorded = True
            if entry.tally is not None:
                entry.fold(now)  # the fast path's successes came before this outcome
            if outcome == OK:
                successes += 1  # a plain success is the same as one more in the batch, and costs no run
                outcome = NO_OUTCOME
            if successes > 0:
                entry.ok += successes
                entry.ok_now = now
                entry.p_calls += successes
                entry.p_consec = 0
                entry.p_broken = True
            if outcome >= 0:
                entry.runs.append((entry.ok, outcome, now))
                entry.ok = 0
                entry.p_calls += 1
                failed = outcome & FAILED
                entry.p_failures += failed
                entry.p_slow += (outcome & SLOW) >> 1
                if failed:
                    entry.p_consec += 1
                else:
                    entry.p_consec = 0
                    entry.p_broken = True
            counts = self._estimate(entry, spec)
            state = entry.state
            # Only failed and slow outcomes hurry a flush: successes travel as one count, whatever their number,
            # so a busy healthy process sends one call per interval however fast it calls.
            due = len(entry.runs) >= self.flush_count
        if due:
            self._flusher.wake()
        if not self._started:
            self._ensure_thread()
        return counts, state

    @staticmethod
    def _estimate(entry: _Key, spec: WindowSpec) -> WindowCounts:
        c = entry.counts
        p_calls = entry.p_calls
        consec = entry.p_consec if entry.p_broken else c.consecutive_failures + entry.p_consec
        calls = c.calls + p_calls
        if spec.kind != "count" or calls <= spec.size:
            return WindowCounts(calls, c.failures + entry.p_failures, c.slow + entry.p_slow, consec)
        # The pending outcomes push the oldest out: assume those failed at the window's own rate.
        size = int(spec.size)
        if p_calls >= size:
            return WindowCounts(size, min(entry.p_failures, size), min(entry.p_slow, size), consec)
        keep = size - p_calls
        failures = c.failures * keep // c.calls + entry.p_failures
        slow = c.slow * keep // c.calls + entry.p_slow
        return WindowCounts(size, failures, slow, consec)

    def counts(self, key: str, spec: WindowSpec, now: float) -> WindowCounts:
        """The store's window counts after this process's pending outcomes are flushed (a read, not a hot path)."""
        self.flush(key)
        counts = self.inner.counts(key, spec, now)
        with self._lock:
            entry = self._entry(key, spec)
            pending = entry.p_calls  # recorded while we read, or left over by a failed flush
        if pending:
            return self._estimate(entry, spec)
        return counts

    # -- the port: straight to the store ------------------------------------------------------------------

    def transition(self, key: str, expected: int, new: SharedState, clear: bool) -> SharedState:
        """Flush the key's pending outcomes, then compare-and-set in the store; cache the answer."""
        with self._io_lock:
            with contextlib.suppress(StoreError):  # the transition itself says whether the store is there
                self.flush(key)
            stored = self.inner.transition(key, expected, new, clear)
            with self._lock:
                entry = self._entry(key, None)
                entry.state = stored
                if clear and stored == new:
                    entry.counts = WindowCounts()
                entry.fresh_at = self._monotonic()
        return stored

    def acquire_probe(self, key: str, version: int, limit: int, now: float, lease: float) -> int | None:
        """Reserve a half-open permit in the store (exact fleet-wide)."""
        return self.inner.acquire_probe(key, version, limit, now, lease)

    def finish_probe(self, key: str, version: int, token: int, success: bool | None) -> int:
        """Give a permit back in the store."""
        return self.inner.finish_probe(key, version, token, success)

    def probes(self, key: str, now: float) -> int:
        """Permits held now, from the store."""
        return self.inner.probes(key, now)

    # -- the flusher ---------------------------------------------------------------------------------------

    def flush(self, key: str | None = None) -> None:
        """Send the pending outcomes of ``key`` (default: every key) now; StoreError if the store fails."""
        keys = [key] if key is not None else list(self._keys)
        error: StoreError | None = None
        for name in keys:
            try:
                self._flush_key(name, refresh=False)
            except StoreError as exc:
                error = exc
        if error is not None:
            raise error

    def _flush_key(self, key: str, *, refresh: bool) -> bool:
        """One store call for ``key`` if it has outcomes to send (or ``refresh`` is due); True if it made one."""
        with self._io_lock:
            with self._lock:
                entry = self._keys.get(key)
                if entry is None:
                    return False
                # The store's time now, from the breaker's last reading (time windows expire by it).
                now = entry.last_now + max(0.0, self._monotonic() - entry.last_mono)
                if entry.tally is not None:
                    entry.fold(now)
                if entry.inflight is None and entry.pending():
                    runs = entry.take()
                    entry.inflight = (next(self._seq), runs, *_totals(runs))
                batch = entry.inflight
                spec = entry.spec
                pushes = entry.pushes
                if batch is None and not refresh:
                    return False
            try:
                if batch is None:
                    if spec is None or not entry.recorded:
                        counts, state = entry.counts, self.inner.load(key)  # nothing recorded: the state only
                    elif self._many is not None:
                        counts, state = self._many(key, spec, (), now, None)
                    else:
                        counts, state = self.inner.counts(key, spec, now), self.inner.load(key)
                else:
                    assert spec is not None  # runs are only recorded with a spec
                    seq, runs = batch[0], batch[1]
                    if self._many is not None:
                        counts, state = self._many(key, spec, runs, now, (self._producer, seq))
                    else:
                        counts, state = record_runs(self.inner, key, spec, runs, now)
            except StoreError:
                self.failed_flushes += 1
                raise
            finally:
                self.flushes += 1
            with self._lock:
                if batch is not None:
                    entry.inflight = None
                    _, _, calls, failures, slow = batch
                    entry.p_calls -= calls
                    entry.p_failures -= failures
                    entry.p_slow -= slow
                    if not entry.p_calls:
                        entry.p_consec = 0
                        entry.p_broken = False
                entry.counts = counts
                # Store calls of this process are serialised (_io_lock), so the latest answer is the truth,
                # even one older than the cache (a restarted, empty server); but not one older than a
                # state pushed while it travelled (the push was read after it).
                cached = entry.state
                if (
                    entry.pushes == pushes
                    or state is None
                    or cached is None
                    or state.version >= cached.version
                ):
                    entry.state = state
                entry.fresh_at = self._monotonic()
        if self._on_flush is not None:
            self._on_flush(key, counts, state)
        return True

    def _round(self) -> bool:
        """One round of the flusher: every key with pending outcomes, and every key due for a refresh.

        Returns True when a store call failed (the flusher then waits longer before the next round).
        """
        before = self.failed_flushes
        now = self._monotonic()
        resync, self._resync = self._resync, False
        for key in list(self._keys):
            entry = self._keys[key]
            due = resync or now - entry.fresh_at >= self.staleness / 2
            try:
                self._flush_key(key, refresh=due)
                # A flood of failures is sent in slices of MAX_RUNS; a round sends a bounded number of them.
                # Less than a full slice waits for the next round: outcomes recorded while the first call
                # travelled must not make a second call, or a busy process would exceed 1 / flush_seconds.
                for _ in range(16):
                    if len(entry.runs) < MAX_RUNS:
                        break
                    self._flush_key(key, refresh=False)
            except StoreError:
                pass  # kept for the next round; callers see the staleness once it exceeds the bound
            except Exception:  # a bug in a store must not kill the flusher for good
                self.failed_flushes += 1
            if entry.listeners:
                self._tell(entry)  # a state this round (or a caller's flush) brought
        return self.failed_flushes > before

    def close(self) -> None:
        """Flush what is pending (best effort), stop the flusher and the feed, and close the inner store.

        Closing twice does nothing the second time. A store dropped without closing stops its threads
        when it is collected, but loses the outcomes it had not flushed yet (one interval at most).
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
        feed, self._feed = self._feed, None
        if feed is not None:
            feed.close()
        # Off the flusher first (waiting for a round in progress), so no round runs after the last flush.
        self._flusher.detach(self._round)
        if self._owns_flusher:
            self._flusher.stop()
        with contextlib.suppress(StoreError):  # best effort: the store may be gone for good
            self.flush()
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def pending(self, key: str) -> int:
        """Outcomes of ``key`` recorded here and not yet acknowledged by the store."""
        with self._lock:
            entry = self._keys.get(key)
            if entry is None:
                return 0
            if entry.tally is not None:
                entry.fold(entry.last_now + max(0.0, self._monotonic() - entry.last_mono))
            return entry.p_calls

    def __getattr__(self, name: str) -> Any:
        # keys(), path, client ...: what the wrapped store offers besides the port.
        if name.startswith("_") or name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return (
            f"BatchedBreakerStore({self.inner!r}, flush_seconds={self.flush_seconds:g}, "
            f"flush_count={self.flush_count}, staleness={self.staleness:g})"
        )


class BatchingLedger(Protocol):
    """A shared retry-budget ledger that can add a process's batch in one transaction or round trip."""

    def settle_many(
        self, key: str, rule: BudgetRule, calls: int, span: float, retries: int, batch: tuple[str, int] | None
    ) -> BudgetReading:
        """Add ``calls`` made over ``span`` seconds and ``retries`` already granted (a ``batch`` id once)."""
        ...


class _Budget:
    """What the batched ledger knows about one budget key."""

    __slots__ = (
        "calls",
        "fresh_at",
        "inflight",
        "last",
        "p_calls",
        "p_retries",
        "reading",
        "retries",
        "rule",
        "start",
    )

    def __init__(self, rule: BudgetRule) -> None:
        self.rule = rule
        self.reading = BudgetReading(False, 0.0, 0.0, 0.0)  # the store's last answer (fleet-wide)
        self.fresh_at = _NEVER
        self.calls = 0  # deposited here since the last batch was taken, over (start, last]
        self.retries = 0  # granted here since the last batch was taken
        self.start = self.last = 0.0
        self.inflight: tuple[int, int, float, int] | None = (
            None  # (seq, calls, span, retries), resent as it is
        )
        self.p_calls = self.p_retries = 0  # not yet acknowledged by the store (pending and in flight)


class BatchedLedger:
    """A retry-budget ledger whose ``settle`` stays in the process; counts reach the shared ledger in batches.

    It wraps a shared :class:`~bounceback.core.retry._budget.BudgetLedger` (SQLite, Redis) the way
    :class:`BatchedBreakerStore` wraps a breaker store, and rides on the same :class:`Flusher` (one thread
    per process for breakers and budgets alike): ``settle`` adds the calls to a pending count and decides
    a retry from the fleet's last reading plus this process's unsent calls and retries; each round sends
    every budget's pending calls and granted retries in **one** store call (``settle_many``) and takes the
    fleet's new reading back.

    Guarantees: every call and every granted retry is added to the shared window exactly once (a batch
    resent after a timeout carries the same ``(producer, seq)`` id). A retry is granted against a reading
    at most ``flush_seconds`` old (plus this process's own grants since), so in one flush interval ``P``
    processes may together grant up to ``P`` times the budget that was left; the excess is counted, so no
    process is granted another retry until the window's allowance covers it again. While the shared
    ledger cannot be reached for longer than ``staleness``, the process decides from its own calls of the
    last window alone (a private ``LocalLedger``) and sends what it counted when the store is back.

    >>> from bounceback.core.retry._budget import LocalLedger
    >>> ledger = BatchedLedger(LocalLedger(), background=False)
    >>> rule = BudgetRule(0.5, 0.0, 10.0)
    >>> ledger.settle("api", rule, now=1.0, calls=4, span=0.0, spend=True).granted   # decided locally
    True
    >>> ledger.flush()                                                               # one batch
    >>> ledger.settle("api", rule, now=1.0, calls=0, span=0.0, spend=False).retries
    1.0
    """

    def __init__(
        self,
        inner: BudgetLedger,
        *,
        flush_seconds: float = DEFAULT_FLUSH_SECONDS,
        staleness: float = DEFAULT_STALENESS,
        flusher: Flusher | None = None,
        monotonic: Callable[[], float] | None = None,
        background: bool = True,
    ) -> None:
        if isinstance(staleness, bool) or not isinstance(staleness, (int, float)) or staleness <= 0:
            raise ConfigError("store.staleness", staleness, "seconds above 0, such as 1.0")
        self.inner = inner
        self.name: str = getattr(inner, "name", type(inner).__name__)
        self.staleness = float(staleness)
        self._monotonic = monotonic or time.monotonic
        self._owns_flusher = flusher is None
        self._flusher = flusher or Flusher(flush_seconds, name=f"bounceback-flush {self.name}")
        self._background = background
        self._many: Callable[..., BudgetReading] | None = getattr(inner, "settle_many", None)
        self._local = LocalLedger()
        self._lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._keys: dict[str, _Budget] = {}
        self._producer = f"{os.getpid()}-{id(self):x}-{time.time_ns():x}"
        self._seq = itertools.count(1)
        self._started = False
        self._closed = False
        self.flushes = 0
        """Store calls made (batches and refreshes), for benchmarks and tests."""
        self.failed_flushes = 0
        """Store calls that raised StoreError (their batches are kept and resent)."""
        _stores.add(self)

    @property
    def available(self) -> bool:
        """False while some budget decides from local counts because the store has not answered lately."""
        now = self._monotonic()
        with self._lock:
            return all(now - b.fresh_at <= self.staleness for b in self._keys.values())

    def settle(
        self, key: str, rule: BudgetRule, now: float, calls: int, span: float, spend: bool
    ) -> BudgetReading:
        """Count ``calls`` locally and decide a retry from the fleet's last reading plus what is unsent."""
        if not self._started:
            self._start()
        with self._lock:
            b = self._keys.get(key)
            new = b is None
            if b is None:
                b = self._keys[key] = _Budget(rule)
        if new:
            self._flush_key(key, quiet=True)  # the fleet's reading, once, when a budget is first used
        with self._lock:
            b.rule = rule
            if calls:
                begin = now - max(0.0, span)
                b.start = begin if not b.calls else min(b.start, begin)
                b.calls += calls
                b.p_calls += calls
            b.last = max(b.last, now)
            if self._monotonic() - b.fresh_at > self.staleness:
                # The store has not answered lately: this process's own counts decide, and are sent later.
                local = self._local.settle(key, rule, now, calls, span, spend)
                if local.granted:
                    b.retries += 1
                    b.p_retries += 1
                return local
            if calls:
                # This process's own window, kept all along: what decides while the store is away.
                self._local.settle(key, rule, now, calls, span, False)
            r = b.reading
            total_calls = r.calls + b.p_calls
            total_retries = r.retries + b.p_retries
            allowance = rule.allowance(total_calls)
            granted = spend and total_retries + 1.0 <= allowance + 1e-9
            if granted:
                b.retries += 1
                b.p_retries += 1
                total_retries += 1.0
            return BudgetReading(granted, total_calls, total_retries, allowance)

    def _start(self) -> None:
        with self._lock:
            if self._started or self._closed:
                return
            self._started = True
        if self._background:
            self._flusher.attach(self._round)
            self._flusher.start()

    def _flush_key(self, key: str, *, quiet: bool = False) -> bool:
        """Send ``key``'s batch (or refresh it); a batch kept from a failed call goes first, then the newer one."""
        made = self._send(key, quiet=quiet)
        b = self._keys.get(key)
        if made and b is not None and (b.calls or b.retries):
            self._send(key, quiet=quiet)
        return made

    def _send(self, key: str, *, quiet: bool) -> bool:
        """One store call for ``key`` (its pending batch, or a refresh); True if it made one."""
        with self._io_lock:
            with self._lock:
                b = self._keys.get(key)
                if b is None:
                    return False
                if b.inflight is None and (b.calls or b.retries):
                    b.inflight = (next(self._seq), b.calls, max(0.0, b.last - b.start), b.retries)
                    b.calls = b.retries = 0
                batch, rule = b.inflight, b.rule
            seq, calls, span, retries = batch if batch is not None else (0, 0, 0.0, 0)
            try:
                if self._many is not None:
                    ident = (self._producer, seq) if batch is not None else None
                    reading = self._many(key, rule, calls, span, retries, ident)
                else:
                    reading = self.inner.settle(key, rule, self._monotonic(), calls, span, False)
                    for _ in range(retries):
                        reading = self.inner.settle(key, rule, self._monotonic(), 0, 0.0, True)
            except StoreError:
                self.failed_flushes += 1
                if quiet:
                    return False
                raise
            finally:
                self.flushes += 1
            with self._lock:
                if batch is not None:
                    b.inflight = None
                    b.p_calls -= calls
                    b.p_retries -= retries
                b.reading = reading
                b.fresh_at = self._monotonic()
        return True

    def flush(self, key: str | None = None) -> None:
        """Send the pending counts of ``key`` (default: every budget) now; StoreError if the store fails."""
        error: StoreError | None = None
        for name in [key] if key is not None else list(self._keys):
            try:
                self._flush_key(name)
            except StoreError as exc:
                error = exc
        if error is not None:
            raise error

    def _round(self) -> bool:
        """The flusher's round: every budget with something to send, or due for a refresh."""
        failed = False
        now = self._monotonic()
        for key in list(self._keys):
            b = self._keys[key]
            due = now - b.fresh_at >= self.staleness / 2
            if not (b.calls or b.retries or b.inflight or due):
                continue
            try:
                self._flush_key(key)
            except StoreError:
                failed = True
        return failed

    def pending(self, key: str) -> tuple[int, int]:
        """``(calls, retries)`` counted here and not yet acknowledged by the store."""
        with self._lock:
            b = self._keys.get(key)
            return (0, 0) if b is None else (b.p_calls, b.p_retries)

    def close(self) -> None:
        """Send what is pending (best effort), leave the flusher, and close the inner ledger (once)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._flusher.detach(self._round)
        if self._owns_flusher:
            self._flusher.stop()
        with contextlib.suppress(StoreError):
            self.flush()
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()

    def __repr__(self) -> str:
        return f"BatchedLedger({self.inner!r}, flush_seconds={self._flusher.interval:g}, staleness={self.staleness:g})"
