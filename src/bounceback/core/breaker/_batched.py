"""A breaker store whose call path stays in the process: outcomes are counted here and flushed in batches.

:class:`BatchedBreakerStore` wraps a shared store (SQLite, Redis) and implements the same
:class:`~bounceback.core.breaker._store.BreakerStore` port, so a breaker does not know it is there
(docs/shared-state.md draws it):

* ``record`` adds the outcome to the key's pending runs and answers at once from the last counts the store
  returned plus the pending outcomes; a breaker on the fast path counts successes in the key's
  ``success_counter`` instead. No I/O happens on the caller's thread.
* The backend's :class:`~bounceback.core._flusher.Flusher` sends each key's runs in **one** store call
  (``record_many``) every ``flush_seconds``, or sooner once ``flush_count`` failed or slow outcomes wait.
  The reply carries the fleet's counts and state; an idle key is refreshed every ``staleness / 2``.
* **Push**: a store that offers ``watch`` (Redis pub/sub, SQLite ``data_version``) delivers every state
  change made anywhere to the cache as it happens, and breakers that asked (``on_state_change``) adopt it
  at once, from the feed's thread. Flushes and refreshes remain the fallback.
* ``transition`` and the half-open probe permits go to the store at once: rare, and exact fleet-wide. A
  transition first flushes the key's pending runs.
* Past ``staleness`` without the store, ``record`` and ``load`` raise StoreError at once and the breaker
  does what it does without a store (fail open or closed). Undelivered runs are kept and resent under the
  same ``(producer, seq)`` id, which the store ignores if it has seen it: counted exactly once.

Fleet-wide, a threshold crossed in the store is seen by every busy process within two flush intervals.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from bounceback.core._flusher import (
    DEFAULT_FLUSH_COUNT,
    DEFAULT_FLUSH_SECONDS,
    DEFAULT_STALENESS,
    Flusher,
    Held,
    close_at_exit,
    flush_at_close,
)
from bounceback.core._tally import Tally
from bounceback.core.breaker._pending import (
    MAX_RUNS,
    Key,
    StateFeed,
    record_runs,
    totals,
)
from bounceback.core.breaker._store import NO_OUTCOME, BreakerStore, SharedState, WindowSpec
from bounceback.core.breaker._window import FAILED, OK, SLOW, WindowCounts
from bounceback.errors import ConfigError, StoreError

__all__ = ["BatchedBreakerStore"]

_log = logging.getLogger("bounceback.store")
_NEVER = -float("inf")


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
        self._keys: dict[str, Key] = {}
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
        close_at_exit(self)

    # -- the port: answered locally ----------------------------------------------------------------------

    def _entry(self, key: str, spec: WindowSpec | None) -> Key:
        entry = self._keys.get(key)
        if entry is None:
            entry = self._keys[key] = Key(spec)
        elif spec is not None and entry.spec != spec:
            entry.spec = spec  # the store restarts a reshaped window at the next flush
        return entry

    def _stale(self, entry: Key) -> StoreError | None:
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
            weakref.WeakMethod(notify) if inspect.ismethod(notify) else Held(notify)
        )
        with self._lock:
            entry = self._entry(key, None)
            entry.listeners = [r for r in entry.listeners if r() is not None] + [ref]

    def _tell(self, entry: Key) -> None:
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

    def _fill(self, key: str, entry: Key) -> None:
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
    def _estimate(entry: Key, spec: WindowSpec) -> WindowCounts:
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
                    entry.inflight = (next(self._seq), runs, *totals(runs))
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
        flush_at_close(self.flush, self.name, "breaker outcomes")
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
