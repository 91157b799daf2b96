"""The state machine of a circuit breaker: the part that decides, and the parts it owns.

:class:`StateMachine` holds the state and all that changes it: the breaker's own in-memory store, the
transitions (each a compare-and-set through the store), the half-open probe permits, the bookkeeping of
failures, manual control, the :class:`~._health.HealthChecker` and the :class:`~._metrics.History`. A
breaker given a store runs a :class:`~._shared_machine.SharedMachine` instead: the same machine over a
:class:`~._link.StoreLink`. Its ``CircuitBreaker`` holds the per-call path and a read-only copy of what
that path reads (state, epoch, open-until, flags, config, refusal tally), which the machine *publishes*
through one callback, under its lock, whenever it changes.

Locking: ``_lock`` (re-entrant: a store link falling back during a transition re-enters it) guards the
state and the counters, and the own store shares it. It is held for a few attribute writes and, on a
state change, for the store's compare-and-set (rare). A failure is recorded and decided under it in one
step; a thread that finds it taken hands its failure to the holder instead of waiting (see ``record``).
It is never held while user code runs: events are emitted, and health checks run, after it is released.

Lazy parts: the in-memory store is made at the first outcome recorded; the history at the first
transition; the refusal tally when the breaker first leaves CLOSED; the health checker when a health check
is given or a timer is needed. A breaker used only on its fast path owns none of them.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from time import sleep as _yield  # sleep(0): give the processor (and the GIL) to another thread
from typing import Any

from bounceback.core._events import CallRejected, EventBus
from bounceback.core._tally import Tally
from bounceback.core.breaker._config import BreakerConfig, trip_reason
from bounceback.core.breaker._core import ALLOWED_TRANSITIONS, EVENTS, BreakerState, Change, is_warm, spec_of
from bounceback.core.breaker._health import HealthChecker
from bounceback.core.breaker._link import StoreLink
from bounceback.core.breaker._metrics import NO_CHECKS, BreakerMetrics, History, Transition
from bounceback.core.breaker._store import (
    NO_OUTCOME,
    BreakerStore,
    KeyRecord,
    MemoryBreakerStore,
    SharedState,
)
from bounceback.core.breaker._window import OK, SLOW, Counts, WindowCounts
from bounceback.errors import BulkheadFull, CircuitOpenError

__all__ = ["COUNTED", "PROBE", "Publish", "StateMachine", "UNUSED"]

_C = BreakerState.CLOSED
_O = BreakerState.OPEN
_H = BreakerState.HALF_OPEN
_F = BreakerState.FORCED_OPEN
_D = BreakerState.DISABLED
COUNTED = 1
PROBE = 2
"""Permit flags. A permit is ``(flags, epoch, started, probe token)``, or None for a plain closed call."""
UNUSED = Tally()
"""The refusal tally of a breaker that never refused: the machine makes its own when the breaker first
leaves CLOSED (or refuses while closed), so most breakers never pay for one. Never bumped."""

Publish = Callable[[BreakerState, int, float, float, bool, bool, BreakerConfig, Tally], object]
"""The breaker's callback: ``(state, epoch, open_until, open_until_wall, plain, fast_path, cfg, refusals)``."""


class StateMachine:
    """The deciding part of a circuit breaker; see the module docstring. Made by ``CircuitBreaker``."""

    # The parts and the state (listed compactly: a slot per line would double the class's length).
    __slots__ = (
        "__weakref__", "_bump", "_bus", "_cfg", "_combining", "_epoch", "_history", "_in_flight", "_io", "_link", "_lock",
        "_now", "_open_until", "_open_until_wall", "_own", "_pending", "_probes", "_publish", "_refusals", "_reopens", "_rng",
        "_since", "_spec", "_state", "_tally", "_timers", "_trip", "_wall", "_warm", "count_success", "fast_path",
        "health", "name", "next_sync", "plain", "shared", "success_tally",
    )  # fmt: skip

    def __init__(
        self,
        name: str,
        cfg: BreakerConfig,
        now: Callable[[], float],
        wall: Callable[[], float],
        bus: EventBus,
        rng: random.Random,
        health_check: Callable[[], Any] | None,
        timers: bool,
        publish: Publish,
        /,
    ) -> None:
        self.name = name
        self._cfg = cfg
        self._now = now
        self._wall = wall
        self._bus = bus
        self._rng = rng
        self._timers = timers
        self._publish = publish
        self._lock = threading.RLock()
        self._state = _C
        self._epoch = 0
        self._warm = True
        self._open_until = self._open_until_wall = math.inf
        self._reopens = 0
        self._since = now()
        self._in_flight = self._probes = 0
        self.next_sync = 0.0
        """Monotonic time of the next look at the state other processes wrote (shared stores)."""
        self._spec = spec_of(cfg)
        self._trip = _trip_rule(cfg)
        self._refusals = UNUSED
        self._history: History | None = None
        # Successes on the fast path are bumped here by any thread, exactly, without a lock (see Tally).
        self._tally = Tally()
        self._bump: Callable[[], object] | None = None
        self.count_success: Callable[[], object] = self._tally.bump
        """What the breaker calls to count a success made on its fast path (any thread, no lock)."""
        self.success_tally: Tally | None = self._tally
        """The tally ``count_success`` bumps, when it is one (None when a shared store counts them)."""
        self._io: BreakerStore | StoreLink | None = None  # the breaker's own store, made at first use
        self._own: KeyRecord | None = None  # the record of this breaker in its own store (same lock)
        # Failures waiting to be recorded in the own store, each ``outcome | epoch << 2``; see record().
        self._pending: list[int] | None = None
        self._combining = False
        self._link: StoreLink | None = None  # a store given to the breaker, behind its link (SharedMachine)
        self.shared = False
        self.health: HealthChecker | None = None
        """The health checker part, once made (see :meth:`checker`)."""
        if health_check is not None:
            self.checker(health_check)
        self.plain = self.fast_path = False
        self._reflags()

    def _store(self) -> BreakerStore | StoreLink:
        """The store port: the breaker's own memory store (made now); the link to a store given to it."""
        io = self._io
        if io is None:
            with self._lock:
                if self._io is None:
                    # The store shares the machine's lock, so a failure is recorded and decided under one.
                    own = MemoryBreakerStore(lock=self._lock)
                    self._pending = []
                    self._own = own.entry(self.name, self._spec)
                    self._io = own
                io = self._io
        return io

    @property
    def store(self) -> BreakerStore:
        """The store holding the window and the state (the breaker's own in-memory store unless given one)."""
        return self._store()  # the own store here (SharedMachine answers with the store given)

    # -- admitting calls that need more than a look at the state ----------------------------------------

    def half_open_due(self) -> None:
        """Move to half-open if the breaker is open and its open time is over."""
        self._half_open(-1, "the open time is over")

    def _health_passed(self, epoch: int) -> None:
        self._half_open(epoch, "the health check passed")  # if still open in that epoch

    def _half_open(self, epoch: int, reason: str) -> None:
        now = self._now()
        change: Change | None = None
        with self._lock:
            if self._state is _O and (now >= self._open_until if epoch < 0 else self._epoch == epoch):
                change = self._move(_H, reason)
        self._after(change)

    def emit_rejected(self, state: str, retry_at: float | None) -> None:
        """Tell the listeners that a call was refused (the caller checked that someone listens)."""
        self._bus.emit(CallRejected(self.name, self._wall(), state, retry_at))

    def sync(self, now: float) -> None:
        """Adopt a state written elsewhere: nothing to do on the breaker's own store (see SharedMachine)."""

    def refuse(self, error: Exception, state: str, retry_at: float | None) -> Exception:
        next(self.refusal_tally())
        if self._bus.listening:
            self.emit_rejected(state, retry_at)
        return error

    def refusal_tally(self) -> Tally:
        """The refusal tally, made now if the breaker never refused before."""
        if self._refusals is UNUSED:
            with self._lock:
                if self._refusals is UNUSED:
                    self._refusals = Tally()
                    self._reflags()
        return self._refusals

    def admit_closed(self, acquire: Callable[[], Any]) -> Any:
        """Admit a call while closed when it needs a permit (``acquire`` starts over when the state moved)."""
        now = self._now()
        limit = self._cfg.max_in_flight
        if not limit:
            return (0, self._epoch, now, 0)
        with self._lock:
            closed = self._state is _C
            if closed and self._in_flight < limit:
                self._in_flight += 1
                return (COUNTED, self._epoch, now, 0)
        if not closed:
            return acquire()
        raise self.refuse(BulkheadFull(self.name, limit), "closed", None)

    def admit_probe(self, acquire: Callable[[], Any]) -> Any:
        """Admit a half-open probe if a permit is free, or refuse."""
        epoch = self._epoch
        cfg = self._cfg
        token = self._store().acquire_probe(
            self.name, epoch, cfg.half_open_calls, self._store_now(), cfg.probe_lease_seconds
        )
        if token is not None:
            with self._lock:
                if self._epoch == epoch:
                    self._probes += 1
                    return (PROBE, epoch, self._now(), token)
            # The state moved on while the permit was reserved: give it back and start over.
            self._store().finish_probe(self.name, epoch, token, None)
            return acquire()
        if self.shared:
            self.sync(self._now())
        if self._epoch != epoch:
            return acquire()
        # The probes in flight decide soon; come back after your own backoff.
        raise self.refuse(
            CircuitOpenError(self.name, "half_open", self._wall(), 0.0), "half_open", self._wall()
        )

    def record(self, outcome: int, epoch: int) -> None:
        """Record one outcome (``OK`` / ``FAILED`` with the ``SLOW`` bit) of a call admitted in ``epoch``
        (-1: now); trip the breaker when the window says so."""
        # The breaker's own memory store: record and decide under the lock it shares with the store.
        # Threads failing together do not queue on the lock (a thread the scheduler pauses inside it
        # would hold them all up): one that finds it taken leaves its outcome in ``_pending`` for the
        # holder, which looks there after letting go (see _combine).
        own = self._own
        if own is None:
            self._store()
            own = self._own
            assert own is not None
        lock = self._lock
        if epoch < 0:
            epoch = self._epoch
        if lock.acquire(False):
            self._combining = True
            try:
                window = own.window
                # A count window has no time: the clock is read for a time window only.
                counts = window.record(self._tally.take(), outcome, self._now() if window.timed else 0.0)
                change = self._decide(counts, None, epoch)
            finally:
                self._combining = False
                lock.release()
            if change is not None:
                self._after(change)
            if not self._pending:
                return
        else:
            self._pending.append(outcome | epoch << 2)  # type: ignore[union-attr]  # made with _own
        self._combine()

    def _combine(self) -> None:
        """Record the outcomes waiting in ``_pending``, unless the thread holding the lock records (it
        looks again after letting go: it clears ``_combining`` before it does, and a thread that saw the
        flag set had queued its outcome before). A holder doing anything else (or one that took the lock an
        instant ago and has not set the flag yet) is given the processor until it lets go: waiting on the
        lock instead would let a convoy form, each waiter holding the lock while it waits for the GIL."""
        pending = self._pending
        lock = self._lock
        while pending:
            while not lock.acquire(False):
                if self._combining:
                    return
                _yield(0)
            self._combining = True
            try:
                change = self._fold()
            finally:
                self._combining = False
                lock.release()
            self._after(change)

    def _fold(self) -> Change | None:
        """Record the outcomes waiting in the own store, with the successes counted since. Call with the
        lock held. At most one change comes of it: once the breaker trips, the rest only fill the window."""
        pending = self._pending
        own = self._own
        change: Change | None = None
        if pending and own is not None:
            now = self._now()
            while pending:
                item = pending.pop(0)
                change = (
                    self._decide(own.window.record(self._tally.take(), item & 3, now), None, item >> 2)
                    or change
                )
        return change

    def _decide(self, counts: Counts, stored: SharedState | None, epoch: int) -> Change | None:
        """After a record: adopt a state written elsewhere, or trip, or note whether the window is warm.
        Call with the lock held. The rules of ``trip_reason`` and ``is_warm``, inlined: this runs on
        every failure, and the text of the reason is made only when the breaker trips."""
        if stored is not None and stored.version != self._epoch:
            return self._adopt(stored)
        if self._epoch == epoch and self._state is _C:
            calls, failures, slow, consecutive = counts
            need, limit, rate, slow_rate = self._trip
            if (limit and consecutive >= limit) or (
                calls >= need
                and calls
                and (failures * 100 >= rate * calls or slow * 100 >= slow_rate * calls)
            ):
                why = trip_reason(self._cfg, WindowCounts(*counts))
                return self._move(_O, why or "the window crossed a threshold")
            warm = calls >= need or not (failures or slow)
            if warm is not self._warm:
                self._warm = warm
                self._reflags()
        return None

    def finish_probe(self, epoch: int, token: int, outcome: int) -> None:
        """Record a probe's outcome (negative: none); close or re-open when it decides."""
        success = None if outcome < 0 else outcome == OK
        successes = self._store().finish_probe(self.name, epoch, token, success)
        change: Change | None = None
        with self._lock:
            if self._epoch == epoch:
                self._probes -= 1
                if self._state is _H:
                    if success is False:
                        why = "a probe was slow" if outcome == SLOW else "a probe failed"
                        change = self._move(_O, why)
                    elif success and successes >= self._cfg.half_open_calls:
                        why = "1 probe succeeded" if successes == 1 else f"{successes} probes succeeded"
                        change = self._move(_C, why, clear=True, reopens=0)
        self._after(change)
        if successes < 0 and self.shared:
            self.sync(self._now())

    def release_counted(self) -> None:
        """A call counted against ``max_in_flight`` ended."""
        with self._lock:
            self._in_flight -= 1

    def abandon(self, permit: Any) -> None:
        """Give back the permit of a call that ended without an outcome (cancelled or interrupted)."""
        flags, epoch, _, token = permit
        if flags & PROBE:
            self._store().finish_probe(self.name, epoch, token, None)
        with self._lock:
            if flags & COUNTED:
                self._in_flight -= 1
            if flags & PROBE and self._epoch == epoch:
                self._probes -= 1

    # -- the state machine -------------------------------------------------------------------------------

    def _reflags(self) -> None:
        """Recompute the fast-path flags. Call with the lock held (or before the breaker is shared)."""
        cfg = self._cfg
        link = self._link
        simple = (
            cfg.max_in_flight == 0
            and not cfg.timed
            and not (link is not None and link.degraded and cfg.store_unavailable == "fail-closed")
        )
        # acquire() may answer None at once (no permit, nothing to check) only off a shared store.
        plain = self.plain = simple and not self.shared
        # Fast only while a success cannot trip the breaker: either the window already holds min_calls
        # (a success then only lowers the rates) or it holds no failure at all. On a shared store, only
        # when the store counts the successes itself (every success must reach the fleet's window).
        fast = simple and (plain or self._bump is not None) and self._state is _C and self._warm
        fast = self.fast_path = fast and cfg.window_type == "count"
        state, refusals = self._state, self._refusals
        self._publish(state, self._epoch, self._open_until, self._open_until_wall, plain, fast, cfg, refusals)

    def _store_now(self) -> float:
        return self._wall() if self.shared else self._now()

    def _move(
        self, new: BreakerState, reason: str, *, clear: bool = False, reopens: int | None = None
    ) -> Change | None:
        """Change the state through the store (compare-and-set). Call with the lock held."""
        old = self._state
        if old is not new and (old, new) not in ALLOWED_TRANSITIONS:  # pragma: no cover - a bug guard
            raise AssertionError(f"breaker {self.name!r}: forbidden transition {old.value} -> {new.value}")
        store_now = self._store_now()
        until = None
        if new is _O:
            # Each open in a row lasts longer; only probes that succeed (or a reset) end the streak.
            # Jittered per opening, so breakers that opened together (a fleet's) do not probe together.
            watched = self.health is not None and self.health.check is not None
            until = store_now + self._cfg.open_for(self._reopens, self._rng.random(), watched)
            reopens = self._reopens + 1
        elif reopens is None:
            reopens = self._reopens
        target = SharedState(new.value, self._epoch + 1, store_now, until, reopens, reason)
        stored = self._store().transition(self.name, self._epoch, target, clear)
        if stored != target:
            return self._adopt(stored)
        if clear:
            self._warm = True
        return self._apply(stored, reason)

    def _apply(self, stored: SharedState, reason: str) -> Change | None:
        """Make ``stored`` the local state. Call with the lock held."""
        old = self._state
        new = BreakerState(stored.state)
        now = self._now()
        wall = self._wall()
        self._state = new
        self._epoch = stored.version
        self._reopens = stored.reopens
        if stored.open_until is not None:
            left = stored.open_until - (wall if self.shared else now)
            self._open_until = now + left
            self._open_until_wall = wall + left
        else:
            self._open_until = self._open_until_wall = math.inf
        self._probes = 0
        # Successes counted on the fast path before the change belong to the old window.
        self._tally.take()
        if new is not old and self._refusals is UNUSED:
            self._refusals = Tally()  # a breaker that left CLOSED may refuse from now on
        self._reflags()
        if new is old:
            return None
        self._since = now
        if new is _O and self.health is not None:
            self.health.arm(now)
        if self._history is None:
            self._history = History()
        self._history.add(Transition(wall, old.value, new.value, reason))
        event = None
        if self._bus.listening:
            open_until = self._open_until_wall if new is _O else None
            event = EVENTS[new](self.name, wall, old.value, new.value, reason, open_until)
        return new, event

    def _adopt(self, stored: SharedState) -> Change | None:
        """Take a state written by another breaker sharing the store. Call with the lock held."""
        self._warm = False  # the shared window is unknown here; the next record tells
        return self._apply(stored, f"changed by another breaker sharing the store: {stored.reason}")

    def _after(self, change: Change | None) -> None:
        """After the lock is released: emit the transition's event and start timers it needs."""
        if change is None:
            return
        state, event = change
        if event is not None:
            self._bus.emit(event)
        if state is _O:
            self._opened()

    # -- the health checker and timers -------------------------------------------------------------------

    def checker(self, check: Callable[[], Any] | None = None) -> HealthChecker:
        """The health checker, made at first need (a breaker without a health check seldom needs one)."""
        if self.health is None:
            with self._lock:
                if self.health is None:
                    self.health = HealthChecker(
                        self.name,
                        check,
                        config=lambda: self._cfg,
                        view=self._open_view,
                        half_open_due=self.half_open_due,
                        passed=self._health_passed,
                        now=self._now,
                        wall=self._wall,
                        bus=self._bus,
                        timers=self._timers,
                    )
        return self.health

    def _open_view(self) -> tuple[int, float] | None:
        st = self._state
        return (self._epoch, self._open_until) if st is _O else None

    def _opened(self) -> None:
        if self.health is not None or (self._timers and self._cfg.half_open == "timer"):
            self.checker().start()

    # -- configuration -----------------------------------------------------------------------------------

    def install(self, cfg: BreakerConfig) -> None:
        """Put ``cfg`` in force (validated by the breaker's :class:`Limits`)."""
        spec = spec_of(cfg)
        with self._lock:
            self._cfg = cfg
            self._trip = _trip_rule(cfg)
            if self._link is not None:
                self._link.retry_seconds = cfg.store_retry_seconds
            if spec != self._spec:
                self._spec = spec
                self._warm = True  # the store starts an empty window of the new shape
            self._reflags()
        counts = self._store().counts(self.name, spec, self._store_now())
        with self._lock:
            self._warm = is_warm(cfg, counts)
            self._reflags()
        if self._state is _O:
            self._opened()

    # -- manual control ----------------------------------------------------------------------------------

    def manual(
        self, new: BreakerState, reason: str, *, clear: bool = False, reopens: int | None = None
    ) -> None:
        """Move to ``new`` by hand (``force_open`` ...)."""
        # A breaker sharing its store may lose the race to another process: adopt, then try again.
        for _ in range(5):
            with self._lock:
                if self._state is new and new is not _C:
                    return
                change = self._move(new, reason, clear=clear, reopens=reopens)
                done = self._state is new
            self._after(change)
            if done:
                return

    def reset(self) -> None:
        """Back to new: closed, empty window, no open-time streak, counters zeroed."""
        self.manual(_C, "reset", clear=True, reopens=0)
        with self._lock:
            if self._refusals is not UNUSED:
                self._refusals.take()
            if self._history is not None:
                self._history.clear_counts()
        if self.health is not None:
            self.health.reset_stats()

    # -- reading -----------------------------------------------------------------------------------------

    def metrics(self, state: BreakerState) -> BreakerMetrics:
        """A snapshot, the breaker being in ``state`` now."""
        with self._lock:
            folded = self._fold()  # the failures waiting, so the counts are exact
            successes = self._tally.take()
            refused = self._refusals.take() if self._refusals is not UNUSED else 0
            history = self._history
            if refused and history is None:
                history = self._history = History()
            if history is not None:
                history.rejected += refused
        self._after(folded)
        if successes:
            counts = self._store().record(self.name, self._spec, successes, NO_OUTCOME, self._store_now())[0]
        else:
            counts = self._store().counts(self.name, self._spec, self._store_now())
        now, link = self._now(), self._link
        retry = (self._open_until_wall, max(0.0, self._open_until - now)) if state is _O else (None, None)
        health = self.health.stats if self.health is not None else NO_CHECKS
        store = (self._store().name, link is None or not link.degraded)
        running, in_state = (self._in_flight, self._probes), max(0.0, now - self._since)
        return BreakerMetrics.of(
            self.name, state.value, counts, history, running, in_state, retry, health, store
        )


def _trip_rule(cfg: BreakerConfig) -> tuple[int, int, float, float]:
    """What a failure is checked against, read once per configuration: ``(min calls, consecutive failures
    (0: off), failure rate, slow-call rate (infinite: off))``; the same rules as ``trip_reason``. The
    breakers of one configuration (all those left at the defaults) share one tuple."""
    last_cfg, rule = _LAST_TRIP[0]
    if last_cfg is cfg:
        return rule
    slow = cfg.slow_call_rate if cfg.timed else math.inf
    rule = (cfg.min_calls_in_window, cfg.consecutive_failures, cfg.failure_rate, slow)
    _LAST_TRIP[0] = (cfg, rule)  # one tuple, swapped whole: a reader on another thread sees a matching pair
    return rule


_LAST_TRIP: list[tuple[BreakerConfig | None, tuple[int, int, float, float]]] = [(None, (0, 0, 0.0, 0.0))]
