"""Control of running recoveries from outside: cancel one run by its id, or all of them.

A display that offers a Cancel button (the dashboard, the terminal's Ctrl-C) enables the controls; from then
on every recovery run gets its own cancel token, registered under its run id while it runs. Without a
controller nothing is registered and runs cost nothing extra.
"""

from __future__ import annotations

import threading

from bounceback.core._time import CancelToken

__all__ = ["RunControls", "run_controls"]


class RunControls:
    """The cancel tokens of the recoveries running in this process, by run id.

    >>> controls = RunControls()
    >>> controls.enable()
    >>> token = controls.open("run-1", None)
    >>> controls.cancel("run-1", "operator pressed Cancel")
    True
    >>> token.is_cancelled
    True
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._runs: dict[str, tuple[CancelToken, CancelToken | None, str]] = {}
        self._users = 0
        # A plain attribute, not a property: every recovery run reads it.
        self.enabled = False
        """True while at least one controller uses the controls."""

    def enable(self) -> None:
        """A controller starts using the controls (counted; call :meth:`disable` once for each)."""
        with self._lock:
            self._users += 1
            self.enabled = True

    def disable(self) -> None:
        """A controller stops using the controls."""
        with self._lock:
            self._users = max(0, self._users - 1)
            self.enabled = self._users > 0

    def open(self, run_id: str, parent: CancelToken | None, operation: str = "") -> CancelToken:
        """Register a run; its token is cancelled by :meth:`cancel` or with ``parent``."""
        token = parent.child() if parent is not None else CancelToken()
        with self._lock:
            self._runs[run_id] = (token, parent, operation)
        return token

    def close(self, run_id: str) -> None:
        """The run ended: forget it."""
        with self._lock:
            entry = self._runs.pop(run_id, None)
        if entry is not None and entry[1] is not None:
            entry[1].forget(entry[0])

    def cancel(self, run_id: str, reason: str = "cancelled") -> bool:
        """Cancel one run; False when no such run is active here."""
        with self._lock:
            entry = self._runs.get(run_id)
        if entry is None:
            return False
        entry[0].cancel(reason)
        return True

    def cancel_all(self, reason: str = "cancelled") -> int:
        """Cancel every active run; returns how many."""
        with self._lock:
            tokens = [entry[0] for entry in self._runs.values()]
        for token in tokens:
            token.cancel(reason)
        return len(tokens)

    def cancelled_reason(self) -> str | None:
        """Why one of the active runs was cancelled (the first found), or None while none is.

        A runner that waits for work outside Python (a command's process) polls this to stop that work
        as soon as its run is cancelled.
        """
        with self._lock:
            tokens = [entry[0] for entry in self._runs.values()]
        for token in tokens:
            if token.is_cancelled:
                return token.reason or "cancelled"
        return None

    def active(self) -> dict[str, str]:
        """Active run ids and their operations."""
        with self._lock:
            return {run_id: entry[2] for run_id, entry in self._runs.items()}


run_controls = RunControls()
"""The process-wide controls."""
