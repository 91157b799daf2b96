"""One background thread per process and backend that runs the flush rounds of every batching store.

The shared breaker store (:class:`~bounceback.core.breaker._batched.BatchedBreakerStore`) and the shared retry
budget (:class:`~bounceback.core.retry._batched_ledger.BatchedLedger`) count in the process and send their
counts once per round; both attach their round to a :class:`Flusher`, so a program with many breakers and
budgets on one store has one thread, and one mechanism decides when counts travel.
"""

from __future__ import annotations

import atexit
import inspect
import logging
import threading
import weakref
from collections.abc import Callable
from typing import Any

from bounceback.errors import StoreError

__all__ = [
    "DEFAULT_FLUSH_COUNT",
    "DEFAULT_FLUSH_SECONDS",
    "DEFAULT_STALENESS",
    "Flusher",
    "close_at_exit",
    "flush_at_close",
]

_log = logging.getLogger("bounceback.store")
# Tries of the last flush when a store is closed (each bounded by the store's timeout).
_CLOSE_TRIES = 3
DEFAULT_FLUSH_SECONDS = 0.05
DEFAULT_FLUSH_COUNT = 1000
DEFAULT_STALENESS = 1.0


_closing: weakref.WeakSet[Any] = weakref.WeakSet()


def close_at_exit(store: Any) -> None:
    """Close ``store`` (anything with ``close()``) when the interpreter exits, unless it is collected first:
    the batching stores send what they still hold."""
    _closing.add(store)


def _flush_all_at_exit() -> None:
    for store in list(_closing):
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


class Held:
    """A strong "reference" to a callable that is not a bound method (compared by the callable itself)."""

    __slots__ = ("job",)

    def __init__(self, job: Callable[..., Any]) -> None:
        self.job = job

    def __call__(self) -> Callable[..., Any]:
        return self.job

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Held) and other.job == self.job

    def __hash__(self) -> int:
        return hash(self.job)


def _job_ref(job: Callable[[], bool]) -> Callable[[], Callable[[], bool] | None]:
    if inspect.ismethod(job):
        return weakref.WeakMethod(job)
    return Held(job)


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


def flush_at_close(flush: Callable[[], None], name: str, what: str) -> None:
    """The last flush of a store being closed, tried :data:`_CLOSE_TRIES` times.

    A slow store (a timeout under load) often answers the next call, and the pending batches keep their ids,
    so sending them again counts them once. A store gone for good loses them, and the log says so.
    """
    for attempt in range(_CLOSE_TRIES):
        try:
            flush()
            return
        except StoreError as exc:
            if attempt == _CLOSE_TRIES - 1:
                _log.warning("closing %s: %s not sent (%s); they are lost", name, what, exc)
