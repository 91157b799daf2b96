"""The other process of the push tests: it changes a shared breaker's state through a store of its own."""

from __future__ import annotations

from bounceback import CircuitBreaker
from bounceback.events import EventBus
from bounceback.stores import RedisBreakerStore, SqliteBreakerStore


def force(kind: str, target: str, name: str, action: str) -> None:
    """Force ``name`` open (``action`` "open") or closed ("close") through a fresh, unbatched store."""
    store = (
        RedisBreakerStore(target, timeout=5.0) if kind == "redis" else SqliteBreakerStore(target, timeout=5.0)
    )
    brk = CircuitBreaker(name, store=store, bus=EventBus(), timers=False)
    if action == "open":
        brk.force_open("drill from another process")
    else:
        brk.force_close("drill over")
    store.close()
