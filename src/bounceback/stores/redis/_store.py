"""Breaker state in Redis or Valkey, shared by a fleet of machines (through redis-py).

:class:`RedisBreakerStore` implements the :class:`~bounceback.core.breaker._store.BreakerStore` port with
one Lua script call per method (see :mod:`bounceback.stores.redis._lua`): each recorded outcome, state
change and probe permit is one atomic round trip, and nothing is locked while the user's call runs. Every
state change is also published on ``<prefix>changes``, and :meth:`RedisBreakerStore.watch` subscribes to it
(:mod:`bounceback.stores.redis._push`), so a batched store learns of changes as they happen.

The redis-py client is built for a breaker (:func:`redis_client`): short socket timeouts (0.5 s) and
**no retries of its own**, because the breaker has its answer to an unreachable store (carry on with local
state, say so, try again every ``store_retry_seconds``) and redis-py's retries would stack on top of
bounceback's own, multiplying the wait of every call during an outage. Any failure becomes a
:class:`~bounceback.errors.StoreError`; after a connection error the idle pooled connections are dropped so
that the next attempt dials afresh (a restarted server is found at once).

Times are the wall-clock seconds the breakers pass in (``shared = True``): the machines of a fleet must keep
their clocks in sync (NTP); a skew of ``d`` seconds shifts leases and time-window buckets by ``d``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from bounceback.core.breaker._pending import Deliver
from bounceback.core.breaker._store import SharedState, WindowSpec
from bounceback.core.breaker._window import WindowCounts, time_buckets
from bounceback.errors import ConfigError, StoreError
from bounceback.stores.redis._lua import BREAKER_LUA, LuaScript
from bounceback.stores.redis._push import RedisStateFeed

__all__ = ["DEFAULT_REDIS_TIMEOUT", "RedisBreakerStore", "RedisLink", "redis_client"]

DEFAULT_REDIS_TIMEOUT = 0.5
"""Seconds to connect to, or wait for an answer from, Redis before the store reports it unavailable."""

_log = logging.getLogger("bounceback.store")
_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "redis+sentinel://")
_CLUSTER = "redis+cluster://"
_SENTINEL = "redis+sentinel://"


def _nodes(url: str, scheme: str) -> tuple[list[tuple[str, int]], str]:
    """``scheme host:port,host:port/rest`` -> ([(host, port), ...], rest); a ConfigError names the field."""
    body = url[len(scheme) :]
    hosts, _, rest = body.partition("/")
    nodes: list[tuple[str, int]] = []
    for part in hosts.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(
                "store.redis_url", url, f"{scheme}host:port,host:port,... (a port after each host)"
            )
        nodes.append((host, int(port)))
    return nodes, rest


def redis_client(url: str, *, timeout: float = DEFAULT_REDIS_TIMEOUT) -> Any:
    """A redis-py client for ``url`` with short timeouts and no retries of its own.

    ``redis://``, ``rediss://`` (TLS) and ``unix://`` reach one server;
    ``redis+cluster://host:port,host:port`` a Redis Cluster (any reachable nodes: the client finds the
    others and follows the slots as they move); ``redis+sentinel://host:port,host:port/service`` the
    primary that the Sentinels name for ``service`` (asked again after a failover).

    >>> client = redis_client("redis://127.0.0.1:6379/0", timeout=0.2)   # connects on first use
    >>> client.connection_pool.connection_kwargs["socket_timeout"]
    0.2
    """
    if not isinstance(url, str) or not url.startswith(_SCHEMES):
        raise ConfigError(
            "store.redis_url",
            url,
            "a URL such as 'redis://127.0.0.1:6379/0' (redis://, rediss://, unix://, redis+cluster://host:port,..."
            " or redis+sentinel://host:port,.../service)",
        )
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 60:
        raise ConfigError("timeout", timeout, "seconds from 0 (excluded) to 60, such as 0.5")
    try:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry
    except ImportError as exc:  # pragma: no cover - CI installs every extra
        raise ConfigError(
            "store.backend", "redis", "'memory' or 'sqlite' unless redis-py is installed",
            hint="pip install 'bounceback[redis]'",
        ) from exc  # fmt: skip
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # Zero retries: one attempt, then the breaker decides (see the module docstring).
        "retry": Retry(NoBackoff(), 0),
    }
    if url.startswith(_CLUSTER):
        from redis.cluster import ClusterNode, RedisCluster

        nodes, _ = _nodes(url, _CLUSTER)
        # One attempt per call as well; a failed call makes the client re-read the slot map, so the next
        # attempt (the flusher's next round) goes to the promoted replica.
        return RedisCluster(
            startup_nodes=[ClusterNode(h, p) for h, p in nodes],  # type: ignore[no-untyped-call]
            **common,
        )
    if url.startswith(_SENTINEL):
        from redis.sentinel import Sentinel

        nodes, service = _nodes(url, _SENTINEL)
        if not service:
            raise ConfigError("store.redis_url", url, "redis+sentinel://host:port,.../service_name")
        sentinel = Sentinel(nodes, sentinel_kwargs={"socket_timeout": timeout}, **common)  # type: ignore[no-untyped-call]
        return sentinel.master_for(service, **common)  # type: ignore[no-untyped-call]
    return redis.Redis.from_url(url, health_check_interval=0, **common)


def _kwargs(client: Any) -> dict[str, Any]:
    pool = getattr(client, "connection_pool", None)
    if pool is not None:
        kwargs: dict[str, Any] = pool.connection_kwargs
        return kwargs
    # A RedisCluster: the connection settings of its nodes.
    node = client.get_default_node() if hasattr(client, "get_default_node") else None
    if node is not None and node.redis_connection is not None:
        found: dict[str, Any] = node.redis_connection.connection_pool.connection_kwargs
        return found
    return {}


def _display_name(client: Any) -> str:
    if hasattr(client, "get_nodes"):
        nodes = ",".join(f"{n.host}:{n.port}" for n in client.get_nodes() if n.server_type == "primary")
        return f"redis+cluster://{nodes}"
    pool = getattr(client, "connection_pool", None)
    service = getattr(pool, "service_name", None)
    if service:
        return f"redis+sentinel://{service}"
    kwargs = _kwargs(client)
    if kwargs.get("path"):
        return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
    scheme = "rediss" if kwargs.get("ssl") or "ssl_cert_reqs" in kwargs else "redis"
    return f"{scheme}://{kwargs.get('host', 'localhost')}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"


def _explain(exc: BaseException, timeout: float | None) -> str:
    import redis

    text = str(exc) or type(exc).__name__
    if isinstance(exc, redis.TimeoutError):
        return f"{text}: no answer within {timeout} s; check the server's load and the network"
    if isinstance(exc, (redis.ConnectionError, OSError)):
        return f"{text}: the server cannot be reached; check that it runs and that store.redis_url is right"
    if isinstance(exc, redis.AuthenticationError) or "NOAUTH" in text or "WRONGPASS" in text:
        return f"{text}: put the right user and password in store.redis_url (redis://user:pass@host)"
    if "READONLY" in text:
        return f"{text}: the URL points at a read-only replica; point store.redis_url at the primary"
    return text


class RedisLink:
    """A redis-py client plus what every Redis store needs: its name and the translation of errors."""

    __slots__ = ("_errors", "_reconnect_errors", "client", "name", "timeout")

    def __init__(self, url: str | None = None, *, client: Any = None, timeout: float = DEFAULT_REDIS_TIMEOUT):
        if client is None:
            if url is None:
                raise ConfigError("url", url, "a Redis URL such as 'redis://127.0.0.1:6379/0', or client=")
            client = redis_client(url, timeout=timeout)
        import redis

        self.client = client
        self.name = _display_name(client)
        self.timeout = _kwargs(client).get("socket_timeout", timeout)
        # RedisClusterException is not a RedisError: the cluster client raises it when no node it knows
        # answers (a primary was just killed and the slot map is being rebuilt).
        cluster_error = redis.exceptions.RedisClusterException
        self._errors = (redis.RedisError, OSError, cluster_error)
        self._reconnect_errors = (redis.ConnectionError, redis.TimeoutError, OSError, cluster_error)

    def run(self, script: LuaScript, keys: tuple[str, ...], args: tuple[Any, ...], action: str) -> Any:
        """Run ``script``; any failure becomes a StoreError that says what to do."""
        try:
            return script(self.client, keys, args)
        except self._errors as exc:
            pool = getattr(self.client, "connection_pool", None)
            if pool is not None and isinstance(exc, self._reconnect_errors):
                # Idle pooled sockets to a dead server are dead too: let the next call dial afresh.
                pool.disconnect(inuse_connections=False)
            raise StoreError(self.name, action, _explain(exc, self.timeout)) from exc

    def close(self) -> None:
        """Close the client's connections."""
        self.client.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _state(reply: Any, at: int = 0) -> SharedState | None:
    if not reply or reply[at + 1] is None:
        return None
    until = reply[at + 3]
    return SharedState(
        _text(reply[at]),
        int(reply[at + 1]),
        float(reply[at + 2]),
        None if until is None else float(until),
        int(reply[at + 4]),
        _text(reply[at + 5]),
    )


def _shape(spec: WindowSpec) -> tuple[str, int, str]:
    """The window's size as the script compares it, and (time windows) its buckets and their width."""
    if spec.kind == "count":
        return str(int(spec.size)), 0, "0"
    size = float(spec.size)
    buckets = time_buckets(size)
    return repr(size), buckets, repr(size / buckets)


def _subscriber(client: Any) -> Callable[[], Any]:
    """How the push feed makes a pub/sub connection: ``client.pubsub()``, after a fresh slot map on a cluster.

    A Redis Cluster client learns that a node died only from a command that failed on it; the feed's own
    broken connection does not tell it, so the feed asks for the slot map again before it subscribes
    (a primary was killed: its replica now serves the slot the subscription goes to).
    """
    manager = getattr(client, "nodes_manager", None)
    if manager is None:
        return client.pubsub  # type: ignore[no-any-return]

    def subscribe() -> Any:
        try:
            manager.initialize()
        except Exception:  # no node answers yet: the subscription below fails and is tried again
            _log.debug("the cluster's slot map could not be read", exc_info=True)
        return client.pubsub()

    return subscribe


class RedisBreakerStore:
    """A :class:`~bounceback.core.breaker._store.BreakerStore` in Redis or Valkey, shared by a fleet.

    Give it a URL (``redis://host:6379/0``, ``rediss://`` for TLS, ``unix:///path``) or a redis-py
    ``client`` you built yourself (then its timeouts and retries are yours: prefer :func:`redis_client`).
    Keys start with ``prefix``. Scripts are loaded on first use and again after a server restart.

    .. code-block:: text

        store = RedisBreakerStore("redis://cache.internal:6379/0")
        breaker = CircuitBreaker("payments-api", store=store, store_unavailable="fail-open")
    """

    __slots__ = ("_keys", "_link", "_script", "channel", "name", "prefix", "shared")

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "bounceback:breaker:",
        timeout: float = DEFAULT_REDIS_TIMEOUT,
    ) -> None:
        self._link = RedisLink(url, client=client, timeout=timeout)
        self.prefix = prefix
        self.channel = prefix + "changes"
        """The pub/sub channel every state change is published on (see :meth:`watch`)."""
        self._script = LuaScript(BREAKER_LUA)
        self._keys: dict[str, tuple[str, str, str, str, str]] = {}
        self.name = self._link.name
        """``redis://host:port/db`` (without the password), for events and errors."""
        self.shared = True
        """Always true: other processes may change the state."""

    @property
    def client(self) -> Any:
        """The redis-py client."""
        return self._link.client

    def _k(self, key: str) -> tuple[str, str, str, str, str]:
        keys = self._keys.get(key)
        if keys is None:
            if len(self._keys) > 10_000:
                self._keys.clear()  # names are few; this only bounds a pathological caller
            base = f"{self.prefix}{{{key}}}"
            keys = self._keys[key] = (
                base, base + ":ring", base + ":buckets", base + ":leases", base + ":batches"
            )  # fmt: skip
        return keys

    def _run(self, key: str, args: tuple[Any, ...], action: str) -> Any:
        return self._link.run(self._script, self._k(key), args, f"{action} of breaker {key!r}")

    def load(self, key: str) -> SharedState | None:
        """The stored state of ``key``, or None when nothing is stored yet."""
        return _state(self._run(key, ("load",), "read the state"))

    def record(
        self, key: str, spec: WindowSpec, successes: int, outcome: int, now: float
    ) -> tuple[WindowCounts, SharedState | None]:
        """Add ``successes`` then one ``outcome`` in one script call; return the counts and the state."""
        size, buckets, width = _shape(spec)
        reply = self._run(
            key,
            ("record", spec.kind, size, successes, outcome, repr(now), buckets, width),
            "record an outcome",
        )
        counts = WindowCounts(int(reply[0]), int(reply[1]), int(reply[2]), int(reply[3]))
        return counts, _state(reply, 4)

    def record_many(
        self,
        key: str,
        spec: WindowSpec,
        runs: Sequence[tuple[int, int, float]],
        now: float,
        batch: tuple[str, int] | None = None,
    ) -> tuple[WindowCounts, SharedState | None]:
        """Add ``runs`` (``(successes, outcome, at)`` each, in order) in one script call; return counts and state.

        ``batch`` is ``(producer, seq)``: a batch whose ``seq`` the store has already seen from
        ``producer`` is not added again, so resending one after a timeout cannot count it twice. With no
        runs it only reads (and ages a time window to ``now``): how a batching process refreshes its cache.
        """
        size, buckets, width = _shape(spec)
        producer, seq = batch if batch is not None else ("", 0)
        args: list[Any] = ["batch", spec.kind, size, "-", "-", repr(now), buckets, width, producer, seq]
        for successes, outcome, at in runs:
            args += (successes, outcome, repr(at))
        reply = self._run(key, tuple(args), f"record {len(runs)} batched outcomes")
        counts = WindowCounts(int(reply[0]), int(reply[1]), int(reply[2]), int(reply[3]))
        return counts, _state(reply, 4)

    def counts(self, key: str, spec: WindowSpec, now: float) -> WindowCounts:
        """The window counts at ``now``, without recording anything."""
        size, buckets, width = _shape(spec)
        reply = self._run(key, ("counts", spec.kind, size, repr(now), buckets, width), "read the window")
        return WindowCounts(int(reply[0]), int(reply[1]), int(reply[2]), int(reply[3]))

    def transition(self, key: str, expected: int, new: SharedState, clear: bool) -> SharedState:
        """Write ``new`` (as version ``expected + 1``) if the stored version is ``expected``."""
        until = "" if new.open_until is None else repr(float(new.open_until))
        args = (
            "transition", expected, new.state, repr(float(new.since)), until, new.reopens, new.reason,
            "1" if clear else "0", self.channel, key,
        )  # fmt: skip
        stored = _state(self._run(key, args, "change the state"))
        if stored is None:  # pragma: no cover - the script always leaves a state behind
            raise StoreError(self.name, f"change the state of breaker {key!r}", "the script stored nothing")
        return stored

    def acquire_probe(self, key: str, version: int, limit: int, now: float, lease: float) -> int | None:
        """Reserve one of ``limit`` half-open permits for ``version``, valid until ``now + lease``."""
        reply = self._run(key, ("acquire", version, limit, repr(now), repr(now + lease)), "reserve a probe")
        return None if reply is None else int(reply)

    def finish_probe(self, key: str, version: int, token: int, success: bool | None) -> int:
        """Give a permit back, count it when ``success``; return the version's successes (-1 if stale)."""
        return int(self._run(key, ("finish", version, token, "1" if success else "0"), "finish a probe"))

    def probes(self, key: str, now: float) -> int:
        """Permits held now (leases not yet run out) for the current version."""
        return int(self._run(key, ("probes", repr(now)), "count the probes"))

    def watch(self, deliver: Deliver, keys: Callable[[], list[str]]) -> RedisStateFeed:
        """Deliver every state change published on :attr:`channel` (by any process), from a thread of its own.

        The channel carries every breaker's changes (the batched store keeps those of the breakers it
        runs); ``keys()`` are the breakers whose states the feed reads after each (re)subscription.
        """

        def current() -> list[tuple[str, SharedState | None]]:
            return [(key, self.load(key)) for key in keys()]

        return RedisStateFeed(_subscriber(self.client), self.channel, deliver, current, name=self.name)

    def keys(self) -> list[str]:
        """The names of every breaker stored under this prefix (a SCAN: for status output, not hot paths)."""
        pattern = self.prefix.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
        try:
            found = self.client.scan_iter(match=pattern + "{*}", count=500)
            names = {_text(k)[len(self.prefix) + 1 : -1] for k in found}
        except self._link._errors as exc:
            raise StoreError(self.name, "list the breakers", _explain(exc, self._link.timeout)) from exc
        return sorted(names)

    def close(self) -> None:
        """Close the client's connections (they reopen if the store is used again)."""
        self._link.close()

    def __enter__(self) -> RedisBreakerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisBreakerStore({self.name!r}, prefix={self.prefix!r})"
