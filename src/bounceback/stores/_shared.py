"""Build the shared-state stores from settings: ``store.backend``, ``store.redis_url``, ``store.on_unavailable``,
``store.flush_seconds``, ``store.flush_count``, ``store.staleness``.

``memory`` keeps breaker state and budgets in this process; ``sqlite`` shares them with every process of
the machine through the home database; ``redis`` shares them with a fleet. The breaker store and the
budget ledger of one Redis URL share one connection pool.

Both come batched (unless ``store.flush_seconds`` is 0): a :class:`BatchedBreakerStore` and a
:class:`BatchedLedger` of one backend share one :class:`Flusher`, so a process has one background thread that
sends its breakers' outcomes and its budgets' calls and retries, one store call per key and interval.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bounceback.core._flusher import DEFAULT_FLUSH_COUNT, DEFAULT_FLUSH_SECONDS, DEFAULT_STALENESS, Flusher
from bounceback.core.breaker._batched import BatchedBreakerStore
from bounceback.core.breaker._store import BreakerStore, MemoryBreakerStore
from bounceback.core.retry._batched_ledger import BatchedLedger
from bounceback.core.retry._budget import BudgetLedger, LocalLedger
from bounceback.core.settings._layers import defaults
from bounceback.errors import ConfigError
from bounceback.stores.redis._budget import RedisBudgetLedger
from bounceback.stores.redis._store import DEFAULT_REDIS_TIMEOUT, RedisBreakerStore, redis_client
from bounceback.stores.sqlite._breaker import SqliteBreakerStore
from bounceback.stores.sqlite._budget import SqliteBudgetLedger

__all__ = ["breaker_store_from_settings", "budget_ledger_from_settings", "store_options"]

_BACKENDS = ("memory", "sqlite", "redis")
_clients: dict[tuple[str, float], Any] = {}
_clients_lock = threading.Lock()
_flushers: dict[tuple[str, str, float], Flusher] = {}


def _values(settings: Mapping[str, Any] | Any) -> Mapping[str, Any]:
    if settings is None:
        return defaults()
    if isinstance(settings, Mapping):
        return settings
    if hasattr(settings, "effective"):
        values: Mapping[str, Any] = settings.effective(None)
        return values
    raise ConfigError(
        "settings", settings, "a mapping of settings keys, or a settings source such as SqliteSettings"
    )


def _backend(values: Mapping[str, Any]) -> tuple[str, str]:
    backend = values.get("store.backend", "sqlite")
    if backend not in _BACKENDS:
        raise ConfigError("store.backend", backend, "one of " + ", ".join(repr(b) for b in _BACKENDS))
    url = str(values.get("store.redis_url", "") or "")
    if backend == "redis" and not url:
        raise ConfigError(
            "store.redis_url", url, "a URL such as 'redis://127.0.0.1:6379/0'",
            hint="the redis backend needs it: bounceback settings set store.redis_url redis://host:6379/0",
        )  # fmt: skip
    return str(backend), url


def _client(url: str, timeout: float) -> Any:
    with _clients_lock:
        client = _clients.get((url, timeout))
        if client is None:
            client = _clients[(url, timeout)] = redis_client(url, timeout=timeout)
        return client


def breaker_store_from_settings(
    settings: Mapping[str, Any] | Any = None,
    *,
    path: str | Path | None = None,
    timeout: float | None = None,
    batched: bool = True,
) -> BreakerStore:
    """The breaker store the settings ask for (default: the home database).

    ``settings`` is a mapping of keys or a settings source (``SqliteSettings``); ``path`` overrides the
    database file and ``timeout`` the busy timeout (SQLite) or socket timeout (Redis). ``batched=False``
    gives the store itself, for programs that only read it (status, dashboard): batching is for callers.

    >>> breaker_store_from_settings({"store.backend": "memory"})
    MemoryBreakerStore(shared=False, keys=0)
    >>> breaker_store_from_settings({"store.backend": "redis", "store.redis_url": "redis://127.0.0.1:6379/0"})
    BatchedBreakerStore(RedisBreakerStore('redis://127.0.0.1:6379/0', prefix='bounceback:breaker:'), \
flush_seconds=0.05, flush_count=1000, staleness=1)

    Shared stores come wrapped in a :class:`~bounceback.core.breaker._batched.BatchedBreakerStore`
    (``store.flush_seconds``, ``store.flush_count``, ``store.staleness``): a breaker's calls stay in the
    process and its outcomes reach the store in batches; ``store.flush_seconds = 0`` turns that off.
    """
    values = _values(settings)
    backend, url = _backend(values)
    if backend == "memory":
        return MemoryBreakerStore()
    store: BreakerStore
    if backend == "sqlite":
        store = SqliteBreakerStore(path) if timeout is None else SqliteBreakerStore(path, timeout=timeout)
    else:
        store = RedisBreakerStore(client=_client(url, timeout or DEFAULT_REDIS_TIMEOUT))
    if not batched:
        return store
    flusher = _flusher(values, backend, url or str(path or ""))
    if flusher is None:  # store.flush_seconds 0: one store call per recorded outcome, as before batching
        return store
    return BatchedBreakerStore(
        store,
        flush_seconds=flusher.interval,
        flush_count=values.get("store.flush_count", DEFAULT_FLUSH_COUNT),
        staleness=values.get("store.staleness", DEFAULT_STALENESS),
        flusher=flusher,
    )


def _flusher(values: Mapping[str, Any], backend: str, where: str) -> Flusher | None:
    """The process's one flusher thread for this backend and interval (None when batching is off)."""
    flush = values.get("store.flush_seconds", DEFAULT_FLUSH_SECONDS)
    if not flush:
        return None
    if isinstance(flush, bool) or not isinstance(flush, (int, float)) or not 0 < flush <= 60:
        raise ConfigError("store.flush_seconds", flush, "seconds above 0 and at most 60, such as 0.05")
    with _clients_lock:
        flusher = _flushers.get((backend, where, float(flush)))
        if flusher is None:
            flusher = _flushers[(backend, where, float(flush))] = Flusher(
                float(flush), name=f"bounceback-flush {backend}"
            )
        return flusher


def budget_ledger_from_settings(
    settings: Mapping[str, Any] | Any = None,
    *,
    path: str | Path | None = None,
    timeout: float | None = None,
    batched: bool = True,
) -> BudgetLedger:
    """The retry-budget ledger the settings ask for: local, the home database, or Redis.

    Shared ledgers come wrapped in a :class:`~bounceback.core.breaker._batched.BatchedLedger` on the
    backend's one flusher thread (``store.flush_seconds``, ``store.staleness``): a retry is decided in the
    process, and calls and retries reach the store in batches. ``batched=False`` gives the ledger itself.

    >>> budget_ledger_from_settings({"store.backend": "memory"})  # doctest: +ELLIPSIS
    <bounceback.core.retry._budget.LocalLedger object at ...>
    """
    values = _values(settings)
    backend, url = _backend(values)
    if backend == "memory":
        return LocalLedger()
    ledger: BudgetLedger
    if backend == "sqlite":
        ledger = SqliteBudgetLedger(path) if timeout is None else SqliteBudgetLedger(path, timeout=timeout)
    else:
        ledger = RedisBudgetLedger(client=_client(url, timeout or DEFAULT_REDIS_TIMEOUT))
    if not batched:
        return ledger
    flusher = _flusher(values, backend, url or str(path or ""))
    if flusher is None:  # store.flush_seconds 0: one store call per retry asked for, as before batching
        return ledger
    return BatchedLedger(ledger, flusher=flusher, staleness=values.get("store.staleness", DEFAULT_STALENESS))


def store_options(settings: Mapping[str, Any] | Any = None) -> dict[str, Any]:
    """Breaker keyword arguments from the ``store.*`` settings (``store_unavailable``).

    >>> store_options({"store.on_unavailable": "fail-closed"})
    {'store_unavailable': 'fail-closed'}
    """
    values = _values(settings)
    choice = values.get("store.on_unavailable", "fail-open")
    if choice not in ("fail-open", "fail-closed"):
        raise ConfigError("store.on_unavailable", choice, "'fail-open' or 'fail-closed'")
    return {"store_unavailable": choice}
