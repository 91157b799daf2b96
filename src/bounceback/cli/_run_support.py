"""What ``bounceback run`` needs around the command: exit codes, Ctrl-C handling, and the manual-fallback hook.

The exit codes of ``bounceback run`` are :data:`EXIT_CODES`: the one table that ``run --help`` prints
and ``docs/run.md`` shows (a test keeps them equal).
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from bounceback.core._control import run_controls
from bounceback.core._time import CancelToken

__all__ = [
    "EXIT_ABORTED",
    "EXIT_CIRCUIT_OPEN",
    "EXIT_CODES",
    "EXIT_STOPPED",
    "EXIT_USAGE",
    "Interrupted",
    "Interrupts",
    "ManualHandler",
    "ManualStep",
    "manual_handler",
    "set_manual_handler",
    "signal_name",
]

EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_CIRCUIT_OPEN = 69
EXIT_ABORTED = 130

EXIT_CODES: tuple[tuple[str, str], ...] = (
    ("0", "the command succeeded, at the first try or after recovery"),
    (
        "1-255",
        "recovery gave up: the command's own exit code from its last attempt (without a terminal a "
        "recovery ticket is parked as well)",
    ),
    ("124", "recovery gave up on time: the last attempt hit --timeout, or the deadline ran out"),
    ("126, 127", "the command cannot be executed / was not found (not retried by default)"),
    ("128+N", "recovery gave up and the last attempt was killed by signal N"),
    ("2", "bounceback could not start: a bad flag, a bad setting, or the home database failed"),
    (
        "3",
        "automatic recovery was cancelled from outside (bounceback cancel, the dashboard's Cancel): the "
        "running attempt was stopped; without a terminal its ticket is parked",
    ),
    ("4", "recovery gave up and its ticket was parked for a person (manual.mode park)"),
    ("69", "the circuit for the operation is open: the command was not run"),
    (
        "130",
        "bounceback run got Ctrl-C (SIGINT) at any point (attempt, wait, prompt, run again): the "
        "command's process group was stopped, an open ticket stays open",
    ),
    ("143, 129", "bounceback run got SIGTERM / SIGHUP at any point: the same as Ctrl-C"),
)
"""The exit codes of ``bounceback run``: (code, meaning) rows."""


@dataclass
class ManualStep:
    """What the manual-fallback step knows when automatic recovery of a ``bounceback run`` ended.

    ``reason`` is ``cancelled`` (Ctrl-C or a cancel request) or why recovery gave up (``attempts``,
    ``deadline``, ``permanent``, ``breaker``, ...). ``exit_code`` is what ``bounceback run`` exits with
    unless the handler returns another one. ``rerun(attempts, deadline)`` runs the command again under
    the same policy with other limits (None keeps a limit) and returns its exit code. ``attended`` is
    True when a person is at a terminal (stdin and stderr are terminals). ``elapsed`` is the measured time
    of the run (seconds), ``allowed_attempts`` its limit (None: none). A handler that asks a person does so
    inside ``asking()`` (a signal then ends the wait for an answer), and ``rerun_cancelled()`` says why the
    last ``rerun`` was cancelled from outside (None when it was not).
    """

    operation: str
    argv: list[str]
    reason: str
    attempts: int
    exit_code: int
    error: BaseException | None
    run_id: str | None
    attended: bool
    settings: Any
    rerun: Callable[[int | None, float | None], int] = field(repr=False)
    elapsed: float = 0.0
    allowed_attempts: int | None = None
    asking: Callable[[], contextlib.AbstractContextManager[None]] = field(
        default=contextlib.nullcontext, repr=False
    )
    rerun_cancelled: Callable[[], str | None] = field(default=lambda: None, repr=False)


ManualHandler = Callable[[ManualStep], "int | None"]
"""Decides what happens after automatic recovery ended; returns the exit code, or None for the default."""

_handler: list[ManualHandler | None] = [None]


def set_manual_handler(handler: ManualHandler | None) -> ManualHandler | None:
    """Install the manual-fallback step of ``bounceback run`` (recovery tickets plug in here); returns the old one.

    >>> old = set_manual_handler(lambda step: 0 if step.reason == "cancelled" else None)
    >>> _ = set_manual_handler(old)
    """
    previous = _handler[0]
    _handler[0] = handler
    return previous


def manual_handler() -> ManualHandler | None:
    """The installed manual-fallback step, if any."""
    return _handler[0]


class Interrupted(KeyboardInterrupt):
    """``bounceback run`` was told to stop by ``signum`` (SIGINT, SIGTERM or SIGHUP) where it cannot stop softly.

    Raised in the main thread at the prompt (a blocking read) and by a second signal; a KeyboardInterrupt,
    so code that cleans up after Ctrl-C cleans up after it too.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal_name(signum))
        self.signum = signum


def signal_name(signum: int) -> str:
    """How a person names the signal: ``Ctrl-C`` for SIGINT, else its name (``SIGTERM``).

    >>> signal_name(signal.SIGINT), signal_name(signal.SIGHUP)
    ('Ctrl-C', 'SIGHUP')
    """
    if signum == signal.SIGINT:
        return "Ctrl-C"
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


class Interrupts:
    """Signals for ``bounceback run``: SIGINT (Ctrl-C), SIGTERM and SIGHUP each end it, at any point.

    Whatever ``bounceback run`` is doing, the first of these signals ends it with ``128 + N`` (130 for
    Ctrl-C, 143 for SIGTERM, 129 for SIGHUP; ``signum`` says which arrived):

    - during an attempt, the signal is passed on to the command's process group, and the runner stops the
      group (SIGTERM, then SIGKILL) when it has not ended within half a second (``stop_when``);
    - during a wait, the wait ends at once (``token`` is cancelled);
    - at the prompt (:meth:`asking`), the blocking read is interrupted: :class:`Interrupted` is raised in
      the main thread.

    The signal handler itself only counts and hands the work to a helper thread through a
    ``queue.SimpleQueue`` (safe to use from a signal handler): cancelling takes locks that the interrupted
    main thread may hold at that very moment. The helper passes the signal on through ``forward`` and
    cancels ``token`` and every registered run (``run_controls.cancel_all``). A second signal raises
    :class:`Interrupted` in the main thread (whose runner then kills the command's group at once).

    >>> interrupts = Interrupts(CancelToken(), forward=lambda sig: False)
    >>> interrupts.count, interrupts.signum, interrupts.stop_reason()
    (0, None, None)
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, token: CancelToken, forward: Callable[[int], bool]) -> None:
        self.token = token
        self.forward = forward
        self.count = 0
        self.signum: int | None = None
        """The first signal that arrived (None while none did)."""
        self._asking = False
        self._queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._helper = threading.Thread(target=self._work, name="bounceback-interrupts", daemon=True)
        self._previous: dict[int, Any] = {}

    @property
    def terminated(self) -> int | None:
        """SIGTERM or SIGHUP when one of them stopped the run (a supervisor or a closed terminal)."""
        return self.signum if self.signum not in (None, signal.SIGINT) else None

    def install(self) -> Interrupts:
        """Take over SIGINT, SIGTERM and SIGHUP (main thread only) and start the helper thread."""
        self._helper.start()
        for sig in self._SIGNALS:
            self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def uninstall(self) -> None:
        """Give the signals back and stop the helper."""
        for sig, previous in self._previous.items():
            signal.signal(sig, previous)
        self._previous = {}
        self._queue.put(0)

    def rearm(self, token: CancelToken) -> None:
        """A fresh ``token`` for another run of the command (a person chose to run it again)."""
        self.token = token
        if self.signum is not None:
            token.cancel(f"stopped by {signal_name(self.signum)}")

    def stop_reason(self) -> str | None:
        """Why the running attempt must stop now (polled by the command runner), or None."""
        if self.signum is not None:
            return f"stopped by {signal_name(self.signum)}"
        return None

    def check(self) -> None:
        """Raise :class:`Interrupted` when a signal already arrived (before starting something long)."""
        if self.signum is not None:
            raise Interrupted(self.signum)

    @contextlib.contextmanager
    def asking(self) -> Iterator[None]:
        """While a person is asked (a blocking read): a signal interrupts the read with :class:`Interrupted`."""
        # Asking first, then the check: a signal between the two would otherwise be counted without raising,
        # and the read would block on a run that was already told to stop.
        self._asking = True
        try:
            self.check()
            yield
        finally:
            self._asking = False

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if self.signum is None:
            self.signum = signum
        if self.count == 1:
            self._queue.put(signum)
            if not self._asking:
                return
        raise Interrupted(self.signum)

    def _work(self) -> None:
        while True:
            signum = self._queue.get()
            if not signum:
                return
            reason = f"stopped by {signal_name(signum)}"
            # The command hears the signal first, so it may clean up before the runner stops its group.
            self.forward(signum)
            self.token.cancel(reason)
            run_controls.cancel_all(reason)
