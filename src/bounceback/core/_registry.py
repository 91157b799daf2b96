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
        self._policies: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()
        self._breakers: weakref.WeakValueDictionary[str, Any] = weakref.WeakValueDictionary()

    def add_policy(self, policy: Any) -> None:
        """Register ``policy`` under its operation name (the newest one wins)."""
        with self._lock:
            self._policies[policy.operation] = policy

    def add_breaker(self, breaker: Any) -> None:
        """Register ``breaker`` under its name (the newest one wins)."""
        with self._lock:
            self._breakers[breaker.name] = breaker

    def policy(self, name: str) -> Any | None:
        """The live policy named ``name``, or None."""
        return self._policies.get(name)

    def breaker(self, name: str) -> Any | None:
        """The live breaker named ``name``, or None."""
        return self._breakers.get(name)

    def policies(self) -> dict[str, Any]:
        """Every live policy by name."""
        with self._lock:
            return dict(self._policies.items())

    def breakers(self) -> dict[str, Any]:
        """Every live breaker by name."""
        with self._lock:
            return dict(self._breakers.items())


registry = Registry()
"""The process-wide registry."""
