"""What ``bounceback run`` needs around the command: exit codes, Ctrl-C handling, and the manual-fallback hook.

Exit codes of ``bounceback run``:

====== ==========================================================================================
code   meaning
====== ==========================================================================================
0      the command succeeded (at the first try or after recovery)
1-255  recovery gave up: the command's own exit code from its last attempt
124    recovery gave up and the last attempt was stopped by its timeout (``--timeout``)
126    the command cannot be executed (permission) — not retried by default
127    the command was not found — not retried by default
128+N  recovery gave up and the last attempt was killed by signal N
2      bounceback itself could not start: a bad flag, a bad setting, or the home database failed
3      automatic recovery was stopped by a person (Ctrl-C, or Cancel from another process); handed
       over to manual fallback
4      recovery gave up and its ticket was parked for a person (``manual.mode park``; see
       ``bounceback tickets``)
69     the circuit for the operation is open: the command was not run (``EX_UNAVAILABLE``)
130    aborted by a second Ctrl-C; the running command was stopped
143    ``bounceback run`` got SIGTERM (129: SIGHUP); the signal was passed on to the command
====== ==========================================================================================
"""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from bounceback.core._control import run_controls
from bounceback.core._time import CancelToken

__all__ = [
    "EXIT_ABORTED",
    "EXIT_CIRCUIT_OPEN",
    "EXIT_STOPPED",
    "EXIT_USAGE",
    "Interrupts",
    "ManualHandler",
    "ManualStep",
    "manual_handler",
    "set_manual_handler",
]

EXIT_USAGE = 2
EXIT_STOPPED = 3
EXIT_CIRCUIT_OPEN = 69
EXIT_ABORTED = 130


@dataclass
class ManualStep:
    """What the manual-fallback step knows when automatic recovery of a ``bounceback run`` ended.

    ``reason`` is ``cancelled`` (Ctrl-C or a cancel request) or why recovery gave up (``attempts``,
    ``deadline``, ``permanent``, ``breaker``, ...). ``exit_code`` is what ``bounceback run`` exits with
    unless the handler returns another one. ``rerun(attempts, deadline)`` runs the command again under
    the same policy with other limits (None keeps a limit) and returns its exit code. ``attended`` is
    True when a person is at a terminal (stdin and stderr are terminals).
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


class Interrupts:
    """Signals for ``bounceback run``: the first stops automatic recovery at once, the second aborts.

    Ctrl-C (SIGINT) hands the run over to manual fallback; SIGTERM and SIGHUP (a supervisor or a closed
    terminal stopping ``bounceback run``) end it with ``128 + N`` and no manual step (``terminated``).
    Either way the signal is passed on to the running command's process group, so the command is never
    left running on its own.

    The signal handler itself only counts and hands the work to a helper thread through a
    ``queue.SimpleQueue`` (safe to use from a signal handler): cancelling takes locks that the
    interrupted main thread may hold at that very moment. The helper cancels ``token`` (the policy's
    parent token, which also stops a run that has not failed yet), every registered run
    (``run_controls.cancel_all``), and passes the signal to the command's process group through
    ``forward``. The second signal raises KeyboardInterrupt in the main thread.

    >>> interrupts = Interrupts(CancelToken(), forward=lambda sig: False)
    >>> interrupts.count, interrupts.terminated
    (0, None)
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self, token: CancelToken, forward: Callable[[int], bool]) -> None:
        self.token = token
        self.forward = forward
        self.count = 0
        self.terminated: int | None = None
        """SIGTERM or SIGHUP when one of them stopped the run."""
        self._queue: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._helper = threading.Thread(target=self._work, name="bounceback-interrupts", daemon=True)
        self._previous: dict[int, Any] = {}

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
        """Start over with a fresh ``token`` (a manual step runs the command again): Ctrl-C counts from zero."""
        self.token = token
        self.count = 0

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.count += 1
        if signum != signal.SIGINT:
            self.terminated = signum
        if self.count == 1:
            self._queue.put(signum)
            return
        raise KeyboardInterrupt

    def _work(self) -> None:
        while True:
            signum = self._queue.get()
            if not signum:
                return
            reason = (
                "stopped by Ctrl-C"
                if signum == signal.SIGINT
                else f"stopped by {signal.Signals(signum).name}"
            )
            self.token.cancel(reason)
            run_controls.cancel_all(reason)
            self.forward(signum)
