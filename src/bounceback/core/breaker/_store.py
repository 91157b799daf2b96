"""The store port of circuit breakers, and the in-memory store.

A breaker keeps what must be agreed on by everyone who shares it behind a :class:`BreakerStore`:

* the **window** of recent outcomes and the run of consecutive failures;
* the **state** (:class:`SharedState`): which state, since when, until when it stays open, how many times
  it re-opened in a row, and a ``version`` bumped by every change;
* the **probe permits** of the half-open state, each held under a lease.

Everything a breaker does per call maps to one store method, so a shared store can do each in **one
transaction (SQLite) or one round trip (Redis, a Lua script)**:

``record(key, spec, successes, outcome, now)``
    Add ``successes`` plain successes (the batch the breaker counted locally on its fast path), then one
    ``outcome`` (``OK``/``FAILED`` with the ``SLOW`` bit, or ``NO_OUTCOME``), drop what left the window,
    and return the window's counts *and* the current state. Returning the state lets a breaker notice, on
    the same trip, that another process changed it.
``transition(key, expected, new, clear)``
    Compare-and-set on ``version``: write ``new`` (whose version is ``expected + 1``) only if the stored
    version is still ``expected``, optionally emptying the window in the same step, and return whatever
    state is stored afterwards. The loser of a race gets the winner's state and adopts it.
``acquire_probe(key, version, limit, now, lease)`` / ``finish_probe(key, version, token, success)``
    Reserve one of ``limit`` half-open permits for the state ``version``, valid until ``now + lease``; a
    permit whose holder died frees itself when its lease runs out. ``finish_probe`` gives it back and
    returns the probe successes counted for that version (``-1`` when the version is gone), so the breaker
    closes once ``half_open_calls`` probes succeeded.
``load(key)``, ``counts(key, spec, now)``, ``probes(key, now)``
    Reads for start-up, periodic synchronisation and metrics.
``success_counter(key, spec)`` (optional)
    A store that batches may offer a counter for ``key``'s successes (window ``spec``): a callable that
    counts one success each time it is called, from any thread, without a lock (a
    :class:`~bounceback.core._tally.Tally`'s ``bump``). A breaker given one counts the successes of its
    fast path there, so a success costs a bump and a clock read, with no store work: the store adds the
    counted successes to the key's window before any later outcome of that key (``record`` or
    ``transition``) and sends them with its next batch, each exactly once. Without it a breaker on a
    shared store records every success with ``record`` (every success must reach the fleet's window).
    While the store is away the breaker counts its successes locally instead (like its failures).
``on_state_change(key, notify)`` (optional)
    A store that hears of state changes made elsewhere (a push) may call ``notify(state)`` when one
    replaces ``key``'s cached state, on its own thread, with none of its locks held; the breaker adopts a
    newer state at once, so its next call is admitted or refused by it at no cost on the success path.
    The store holds ``notify`` weakly; a breaker ignores a state it already holds (its own transition).

No store method runs user code, and the breaker never holds a store transaction open during the user's
call: a call costs one ``record`` after it ends (probes add one ``acquire_probe``; a state change adds one
``transition``).

Times: a store with ``shared = False`` lives in one process and receives the breaker's monotonic time; a
store with ``shared = True`` receives wall-clock seconds (``clock.wall()``), the only time that means the
same in every process. A shared store may use its own clock instead (the database's, Redis's ``TIME``) as
long as it does so everywhere.

Failure: a store that cannot be reached raises :class:`bounceback.errors.StoreError`. The breaker then
runs on a private :class:`MemoryBreakerStore` seeded with its last known state, emits ``StoreUnavailable``,
tries the real store again every ``store_retry_seconds``, and on success adopts the stored state and emits
``StoreRecovered``. Outcomes recorded while the store was away are not merged back (their window was local).

A breaker on a shared store uses the engine's fast path only when the store offers ``success_counter``;
otherwise every success is a ``record`` so that the counts of all processes add up. Either way the
breaker reloads the state at least every ``sync_seconds`` to see changes made elsewhere (a breaker forced
open from the dashboard of another process), and at once when the store offers ``on_state_change``.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Protocol

from bounceback.core.breaker._window import CountWindow, TimeWindow, WindowCounts

__all__ = ["BreakerStore", "KeyRecord", "MemoryBreakerStore", "NO_OUTCOME", "SharedState", "WindowSpec"]


NO_OUTCOME = -1
"""``record`` with this outcome only adds the batch of successes."""


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """The shape of a window: ``kind`` ``"count"`` (``size`` calls) or ``"time"`` (``size`` seconds).

    A store that finds a window of another shape under a key starts an empty one of the new shape.

    >>> WindowSpec("count", 100)
    WindowSpec(kind='count', size=100)
    """

    kind: str
    size: float

    def new_window(self) -> CountWindow | TimeWindow:
        """An empty in-memory window of this shape."""
        if self.kind == "count":
            return CountWindow(int(self.size))
        return TimeWindow(float(self.size))


@dataclass(frozen=True, slots=True)
class SharedState:
    """The state a breaker's store holds; replaced whole, never mutated.

    ``since`` and ``open_until`` are in the store's time (see the module docstring). ``version`` grows by
    one with every change and makes :meth:`BreakerStore.transition` a compare-and-set.

    >>> SharedState("closed", 0, 0.0).version
    0
    """

    state: str
    version: int
    since: float
    open_until: float | None = None
    reopens: int = 0
    """Opens in a row without a close in between; the open time grows with it."""
    reason: str = ""


class BreakerStore(Protocol):
    """Where a breaker's shared state lives; see the module docstring for the contract of each method."""

    name: str
    """For events and errors: ``memory``, ``sqlite:/path``, ``redis://host:port``."""
    shared: bool
    """True when other processes may change the state (times are then wall-clock)."""

    def load(self, key: str) -> SharedState | None:
        """The stored state of ``key``, or None when nothing is stored yet."""
        ...

    def record(
        self, key: str, spec: WindowSpec, successes: int, outcome: int, now: float
    ) -> tuple[WindowCounts, SharedState | None]:
        """Add ``successes`` and one ``outcome``; return the window counts and the stored state."""
        ...

    def counts(self, key: str, spec: WindowSpec, now: float) -> WindowCounts:
        """The window counts at ``now``, without recording anything."""
        ...

    def transition(self, key: str, expected: int, new: SharedState, clear: bool) -> SharedState:
        """Write ``new`` if the stored version is ``expected``; return the state stored afterwards."""
        ...

    def acquire_probe(self, key: str, version: int, limit: int, now: float, lease: float) -> int | None:
        """Reserve a half-open permit (a token) for ``version``, or None when all are taken or it is stale."""
        ...

    def finish_probe(self, key: str, version: int, token: int, success: bool | None) -> int:
        """Give a permit back; count it when ``success``; return the version's successes (-1 if stale)."""
        ...

    def probes(self, key: str, now: float) -> int:
        """Permits held (leases not yet run out) for the current version."""
        ...


class KeyRecord:
    """What a :class:`MemoryBreakerStore` holds for one key: the window (with the run of consecutive
    failures), the state and the probe leases. Guarded by the store's lock."""

    __slots__ = ("leases", "next_token", "probe_ok", "spec", "state", "window")

    def __init__(self, spec: WindowSpec, state: SharedState) -> None:
        self.spec = spec
        self.window = spec.new_window()
        self.state = state
        self.leases: dict[int, float] = {}
        self.next_token = 1
        self.probe_ok = 0


_INITIAL = SharedState("closed", 0, 0.0)
_counts = tuple.__new__  # a WindowCounts from a window's plain tuple, built in C


class MemoryBreakerStore:
    """Breaker state in this process's memory; the default store. Thread-safe.

    Breakers of the same name on one ``MemoryBreakerStore(shared=True)`` behave like the breakers of
    several processes on one database: they share one window and one state and race through versions.

    ``lock`` guards the store (default: a lock of its own). A breaker's own store is made with the
    breaker's lock, so that the breaker records a failure under one lock, through the key's
    :class:`KeyRecord` (:meth:`entry`), and decides on it in the same step.

    >>> from bounceback.core.breaker._window import FAILED
    >>> store = MemoryBreakerStore()
    >>> counts, state = store.record("db", WindowSpec("count", 10), 3, FAILED, now=1.0)
    >>> counts.calls, counts.failures, state.state
    (4, 1, 'closed')
    """

    __slots__ = ("_entries", "_lock", "name", "shared")

    def __init__(
        self,
        *,
        shared: bool = False,
        name: str = "memory",
        lock: threading.Lock | threading.RLock | None = None,
    ) -> None:
        self.name = name
        self.shared = shared
        self._lock = lock or threading.Lock()
        self._entries: dict[str, KeyRecord] = {}

    def entry(self, key: str, spec: WindowSpec) -> KeyRecord:
        """The live record of ``key`` (made now if new; its window reshaped to ``spec`` if it differs).

        For the store's owner, which calls :meth:`KeyRecord.add` on it with the store's lock held (a
        breaker and its own store share one lock). The record stays the same object for the store's life:
        a transition that clears the window replaces the window inside it.
        """
        with self._lock:
            return self._entry(key, spec)

    def _entry(self, key: str, spec: WindowSpec | None) -> KeyRecord:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = KeyRecord(spec or WindowSpec("count", 100), _INITIAL)
        elif spec is not None and entry.spec is not spec and entry.spec != spec:
            # A reconfigured window starts empty: old outcomes do not fit the new shape. The run of failures
            # in a row is no window's: it carries over (as in the shared stores).
            run = entry.window.consecutive
            entry.spec = spec
            entry.window = spec.new_window()
            entry.window.consecutive = run
        return entry

    def load(self, key: str) -> SharedState | None:
        """The stored state of ``key``, or None."""
        with self._lock:
            entry = self._entries.get(key)
            return None if entry is None else entry.state

    def seed(self, key: str, state: SharedState) -> None:
        """Store ``state`` as it is, with an empty window (used when a breaker falls back to local state)."""
        with self._lock:
            self._entries[key] = KeyRecord(WindowSpec("count", 100), state)

    def record(
        self, key: str, spec: WindowSpec, successes: int, outcome: int, now: float
    ) -> tuple[WindowCounts, SharedState | None]:
        """Add ``successes`` then ``outcome``; return the counts and the state."""
        with self._lock:
            entry = self._entry(key, spec)
            return _counts(WindowCounts, entry.window.record(successes, outcome, now)), entry.state

    def counts(self, key: str, spec: WindowSpec, now: float) -> WindowCounts:
        """The window counts at ``now``."""
        with self._lock:
            return self._entry(key, spec).window.counts(now)

    def transition(self, key: str, expected: int, new: SharedState, clear: bool) -> SharedState:
        """Compare-and-set the state on its version; empty the window too when ``clear``."""
        with self._lock:
            entry = self._entry(key, None)
            if entry.state.version != expected:
                return entry.state
            if new.version != expected + 1:
                new = replace(new, version=expected + 1)
            entry.state = new
            entry.leases.clear()
            entry.probe_ok = 0
            if clear:
                entry.window = entry.spec.new_window()
            return new

    def acquire_probe(self, key: str, version: int, limit: int, now: float, lease: float) -> int | None:
        """Reserve a half-open permit valid until ``now + lease``."""
        with self._lock:
            entry = self._entry(key, None)
            if entry.state.version != version or entry.state.state != "half_open":
                return None
            leases = entry.leases
            if len(leases) >= limit:
                # Leases of holders that died run out: drop them before refusing.
                for token in [t for t, until in leases.items() if until <= now]:
                    del leases[token]
                if len(leases) >= limit:
                    return None
            token = entry.next_token
            entry.next_token += 1
            leases[token] = now + lease
            return token

    def finish_probe(self, key: str, version: int, token: int, success: bool | None) -> int:
        """Give a permit back and count a success."""
        with self._lock:
            entry = self._entry(key, None)
            if entry.state.version != version:
                return -1
            entry.leases.pop(token, None)
            if success:
                entry.probe_ok += 1
            return entry.probe_ok

    def probes(self, key: str, now: float) -> int:
        """Permits held now."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return 0
            return sum(1 for until in entry.leases.values() if until > now)

    def __repr__(self) -> str:
        return f"MemoryBreakerStore(shared={self.shared}, keys={len(self._entries)})"
