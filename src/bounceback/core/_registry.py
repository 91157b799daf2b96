"""The registry of named policies and breakers, for the CLI and the dashboard to list and control.

It holds weak references: a policy or breaker that the program drops disappears from the registry too.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

__all__ = ["Registry", "registry"]


class Registry:
    """Named policies and breakers of this process.

    >>> from bounceback import Policy
    >>> p = Policy("fetch-config")
    >>> registry.policy("fetch-config") is p
    True
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # Plain weak references by name rather than a WeakValueDictionary: registering is on every Policy's
        # creation path, and a ``weakref.ref`` without a callback costs a third of a keyed one. Dead entries
        # are dropped when read, and swept when the table has doubled since the last sweep.
        self._policies: dict[str, weakref.ref[Any]] = {}
        self._breakers: dict[str, weakref.ref[Any]] = {}
        self._sweep_policies_at = self._sweep_breakers_at = 64

    def add_policy(self, policy: Any) -> None:
        """Register ``policy`` under its operation name (the newest one wins)."""
        ref = weakref.ref(policy)
        lock = self._lock
        lock.acquire()  # on every creation: acquire/release cost half of a ``with`` block
        try:
            self._policies[policy.operation] = ref
            if len(self._policies) >= self._sweep_policies_at:
                self._sweep_policies_at = self._sweep(self._policies)
        finally:
            lock.release()

    def add_breaker(self, breaker: Any) -> None:
        """Register ``breaker`` under its name (the newest one wins)."""
        ref = weakref.ref(breaker)
        lock = self._lock
        lock.acquire()  # on every creation: acquire/release cost half of a ``with`` block
        try:
            self._breakers[breaker.name] = ref
            if len(self._breakers) >= self._sweep_breakers_at:
                self._sweep_breakers_at = self._sweep(self._breakers)
        finally:
            lock.release()

    @staticmethod
    def _sweep(table: dict[str, weakref.ref[Any]]) -> int:
        """Under the lock: drop the entries whose object is gone; returns the size at which to sweep next
        (when the live ones have doubled, so sweeping costs a constant per registration)."""
        for name in [n for n, ref in table.items() if ref() is None]:
            del table[name]
        return max(64, 2 * len(table))

    def policy(self, name: str) -> Any | None:
        """The live policy named ``name``, or None."""
        ref = self._policies.get(name)
        return None if ref is None else ref()

    def breaker(self, name: str) -> Any | None:
        """The live breaker named ``name``, or None."""
        ref = self._breakers.get(name)
        return None if ref is None else ref()

    def policies(self) -> dict[str, Any]:
        """Every live policy by name."""
        with self._lock:
            self._sweep_policies_at = self._sweep(self._policies)
            return {name: obj for name, ref in self._policies.items() if (obj := ref()) is not None}

    def breakers(self) -> dict[str, Any]:
        """Every live breaker by name."""
        with self._lock:
            self._sweep_breakers_at = self._sweep(self._breakers)
            return {name: obj for name, ref in self._breakers.items() if (obj := ref()) is not None}


registry = Registry()
"""The process-wide registry."""
