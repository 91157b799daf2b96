"""The state of a recovery run and what is handed out at its end: records, configuration, give-up info.

Also the two helpers that act on a run's history: attaching it to the error that is re-raised, and
running one sync attempt on a worker thread under a timeout.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, SupportsIndex, overload

from bounceback.core._redact import redact
from bounceback.core._time import CancelToken, Clock
from bounceback.core.classify._rules import Classification
from bounceback.core.retry._backoff import Backoff
from bounceback.errors import AttemptTimeout, BulkheadFull, CircuitOpenError, ConfigError

__all__ = [
    "AttemptHistory",
    "AttemptRecord",
    "GiveUp",
    "RUN_PREFIX",
    "RetryConfig",
    "Run",
    "attach_history",
    "call_with_timeout",
]

# Run ids: unique across processes and restarts (random prefix per process), cheap per run (a counter).
_RUN_PREFIX = os.urandom(5).hex()
RUN_PREFIX = _RUN_PREFIX
"""This process's run-id prefix: every run id made here starts with it (a command announced before its first
attempt too, so the journal can tell it is the same process's run)."""
_run_numbers = itertools.count(1)


class AttemptRecord(NamedTuple):
    """One failed attempt, as attached to the re-raised error (``exc.bounceback_attempts``)."""

    attempt: int
    error_type: str
    error_message: str
    kind: str
    reason: str
    duration: float
    delay: float | None = None
    """The wait that followed this attempt (None when it was the last)."""


@dataclass(frozen=True, slots=True)
class RetryConfig:
    """The limits of one policy, resolved and validated. Replaced whole when settings change."""

    attempts: int | None = 5
    deadline: float = math.inf
    attempt_timeout: float = math.inf
    backoff: Backoff = field(default_factory=Backoff)
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        a = self.attempts
        if a is not None and (isinstance(a, bool) or not isinstance(a, int) or a < 1):
            raise ConfigError("attempts", a, "a whole number >= 1, or None for no limit")
        if a is None and self.deadline == math.inf:
            raise ConfigError("attempts", a, "a limit: give attempts, a deadline, or both")


class Run:
    """The state of one call's recovery; created only when a first attempt fails.

    ``history`` holds raw ``(attempt, error, verdict, duration, delay)`` tuples: turning them into
    :class:`AttemptRecord` (and the error into text) waits until someone asks, usually never.
    """

    __slots__ = (
        "_clock",
        "_number",
        "attempt",
        "cancel",
        "history",
        "last_classification",
        "last_error",
        "previous_delay",
        "reason",
        "started",
    )

    def __init__(self, started: float, clock: Clock, cancel: CancelToken | None = None) -> None:
        self.started = started
        self._number = 0  # drawn when the id is first read: a recovery nobody watches never needs one
        self._clock = clock
        self.cancel = cancel
        self.attempt = 1
        self.previous_delay = 0.0
        self.history: list[tuple[int, BaseException | None, Classification, float, float | None]] = []
        self.reason = ""
        self.last_error: BaseException | None = None
        self.last_classification: Classification | None = None

    @property
    def run_id(self) -> str:
        """Unique across processes and restarts: a random per-process prefix and a counter."""
        if not self._number:
            self._number = next(_run_numbers)
        return f"{_RUN_PREFIX}-{self._number}"

    @property
    def started_wall(self) -> float:
        """Wall time at which the first attempt started."""
        clock = self._clock
        return clock.wall() - (clock.monotonic() - self.started)

    def records(self) -> AttemptHistory:
        """The history as records, made when first read (a refusal nobody inspects costs no text)."""
        return AttemptHistory(self.history)


class AttemptHistory(Sequence[AttemptRecord]):
    """The failed attempts of a run as :class:`AttemptRecord` items, a read-only sequence.

    The raw history is kept as it was recorded; the records, whose messages are redacted and cut (regular
    expressions over remote text), are made on first access. A fail-fast refusal that nobody reads the
    history of therefore never pays for it.
    """

    __slots__ = ("_raw", "_records")

    def __init__(self, raw: Sequence[tuple[int, BaseException | None, Classification, float, float | None]]):
        self._raw = tuple(raw)
        self._records: tuple[AttemptRecord, ...] | None = None

    def _made(self) -> tuple[AttemptRecord, ...]:
        records = self._records
        if records is None:
            records = self._records = tuple(
                AttemptRecord(
                    n,
                    type(exc).__name__ if exc is not None else "result",
                    _message(exc),
                    verdict.kind.value,
                    verdict.reason,
                    duration,
                    delay,
                )
                for n, exc, verdict, duration, delay in self._raw
            )
        return records

    def __len__(self) -> int:
        return len(self._raw)

    @overload
    def __getitem__(self, index: int) -> AttemptRecord: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[AttemptRecord, ...]: ...

    def __getitem__(self, index: int | slice) -> AttemptRecord | tuple[AttemptRecord, ...]:
        return self._made()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, AttemptHistory):
            return self._made() == tuple(other)
        if isinstance(other, tuple):
            return self._made() == other
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self._made())

    def __repr__(self) -> str:
        return repr(self._made())

    def note(self, operation: str, attempts: int, elapsed: float, reason: str) -> str:
        """The note attached to the re-raised error: one line per attempt (the last ten), without messages."""
        lines = [
            f"bounceback: {operation}: gave up after {attempts} attempt(s) in {elapsed:.3g} s ({reason})"
        ]
        raw = self._raw
        shown = raw[-10:]
        if len(raw) > len(shown):
            lines.append(f"  ... {len(raw) - len(shown)} earlier attempt(s) not shown")
        for n, exc, verdict, duration, delay in shown:
            kind = type(exc).__name__ if exc is not None else "result"
            wait = f", then waited {delay:.3g} s" if delay is not None else ""
            lines.append(
                f"  attempt {n}: {kind} ({verdict.kind.value}: {verdict.reason}) after {duration:.3g} s{wait}"
            )
        return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class GiveUp:
    """What a fallback handler is told when automatic recovery ends without success."""

    operation: str
    error: BaseException | None
    reason: str
    attempts: Sequence[AttemptRecord]
    classification: Classification | None
    run_id: str
    elapsed: float
    breaker_state: str | None
    result: Any = None
    cause: BaseException | None = None
    """The last error from the dependency itself: when the final attempts were refused by an open breaker,
    ``error`` is that refusal and ``cause`` the failure that opened it (what a person must fix)."""
    allowed_attempts: int | None = None
    """The attempts the run was allowed (None: no limit); a "more room" retry offers more than this."""


def _cause(run: Run) -> BaseException | None:
    for _, exc, _, _, _ in reversed(run.history):
        if exc is not None and not isinstance(exc, (CircuitOpenError, BulkheadFull)):
            return exc
    return run.last_error


def _message(exc: BaseException | None) -> str:
    if exc is None:
        return "rejected result"
    try:
        text = str(exc)
    except Exception:
        text = "<unprintable error>"
    # Remote error text can be huge and may carry credentials: events and notes keep a bounded,
    # redacted prefix (every subscriber, the journal and the logs read it from here).
    return redact(text, 500)


class _Notes(list[str]):
    """An error's ``__notes__`` whose bounceback note is written when the notes are first read.

    Giving up builds no text: a refusal that the program catches and drops (most of them, while a breaker
    is open) never pays for it. Every way of reading the notes writes the note first, in its place: Python's
    traceback printing (the interpreter's and the ``traceback`` module's, which ask for the length and the
    items), iteration, indexing, comparison, ``repr`` and pickling (as a plain list). Notes added later by
    ``add_note`` (a C append that bypasses these methods) land after it, as they would have.
    """

    __slots__ = ("_at", "_header", "_history")
    _at: int
    _header: tuple[str, int, float, str]
    _history: AttemptHistory | None

    def __init__(
        self, notes: list[str] | None, history: AttemptHistory, header: tuple[str, int, float, str]
    ) -> None:
        """``notes`` (an error's notes so far, or None) followed by the note of ``history``, not yet written."""
        super().__init__(() if notes is None else notes)
        self._at = len(notes) if notes is not None else 0
        self._history = history
        self._header = header

    @classmethod
    def pending(
        cls, notes: list[str] | None, history: AttemptHistory, header: tuple[str, int, float, str]
    ) -> _Notes:
        """The same as the constructor: the name says what the notes are."""
        return cls(notes, history, header)

    def _write(self) -> None:
        history = self._history
        if history is not None:
            self._history = None
            operation, attempts, elapsed, reason = self._header
            list.insert(self, self._at, history.note(operation, attempts, elapsed, reason))

    def __len__(self) -> int:
        self._write()
        return list.__len__(self)

    def __iter__(self) -> Iterator[str]:
        self._write()
        return list.__iter__(self)

    def __reversed__(self) -> Iterator[str]:
        self._write()
        return list.__reversed__(self)

    @overload
    def __getitem__(self, index: SupportsIndex) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: SupportsIndex | slice) -> str | list[str]:
        self._write()
        return list.__getitem__(self, index)

    def __contains__(self, item: object) -> bool:
        self._write()
        return list.__contains__(self, item)

    def __eq__(self, other: object) -> bool:
        self._write()
        return list.__eq__(self, other)

    __hash__ = None

    def __repr__(self) -> str:
        self._write()
        return list.__repr__(self)

    def __reduce_ex__(self, protocol: SupportsIndex) -> tuple[Any, ...]:
        return (list, (list(self),))

    def __copy__(self) -> list[str]:
        return list(self)

    def __deepcopy__(self, memo: dict[int, Any]) -> list[str]:
        return list(self)


def _written_first(name: str) -> Callable[..., Any]:
    method = getattr(list, name)

    def wrapped(self: _Notes, *args: Any) -> Any:
        self._write()
        return method(self, *args)

    wrapped.__name__ = name
    return wrapped


# The rest of list's methods, reading and writing: the note takes its place before any of them runs.
for _name in (
    "__add__", "__delitem__", "__ge__", "__gt__", "__iadd__", "__imul__", "__le__", "__lt__", "__mul__",
    "__ne__", "__rmul__", "__setitem__", "append", "clear", "copy", "count", "extend", "index", "insert",
    "pop", "remove", "reverse", "sort",
):  # fmt: skip
    setattr(_Notes, _name, _written_first(_name))


def attach_history(exc: BaseException, operation: str, run: Run, elapsed: float) -> None:
    """Add the attempt history to ``exc`` as a note (written when the notes are first read, see
    :class:`_Notes`) and as ``exc.bounceback_attempts``."""
    run_id = run.run_id
    try:
        held = exc.__dict__
    except AttributeError:
        return  # some extension exceptions take no attributes; the error itself still propagates
    if held.get("bounceback_run_id") == run_id:
        return
    records = run.records()
    notes = held.get("__notes__")
    if notes is None or type(notes) is list:
        held["__notes__"] = _Notes.pending(notes, records, (operation, run.attempt, elapsed, run.reason))
    else:
        # Notes of another kind (already lazy, or set by hand): add ours as text, as add_note would.
        with contextlib.suppress(TypeError):
            exc.add_note(records.note(operation, run.attempt, elapsed, run.reason))
    held["bounceback_attempts"] = records
    held["bounceback_reason"] = run.reason
    held["bounceback_run_id"] = run_id


def call_with_timeout(fn: Callable[..., Any], args: Any, kwargs: Any, timeout: float, operation: str) -> Any:
    """Run a sync ``fn`` on a worker thread and stop waiting for it after ``timeout`` seconds.

    Python cannot stop a thread: on timeout the attempt is abandoned (its result is discarded) and
    AttemptTimeout is raised, but the function keeps running until it returns by itself. Give blocking
    calls their own timeouts (socket timeouts, ``subprocess`` timeouts) so abandoned attempts end too.
    """
    import contextvars

    box: list[Any] = []
    done = threading.Event()
    ctx = contextvars.copy_context()

    def target() -> None:
        try:
            box.append((True, ctx.run(fn, *args, **kwargs)))
        except BaseException as exc:  # handed back to the caller's thread below
            box.append((False, exc))
        finally:
            done.set()

    worker = threading.Thread(target=target, name=f"bounceback-attempt-{operation}", daemon=True)
    worker.start()
    if not done.wait(timeout):
        raise AttemptTimeout(operation, timeout)
    ok, value = box[0]
    if ok:
        return value
    raise value
