"""Concurrency and rate limits shared by processes: SQLite for one machine, Redis or Valkey for a fleet.

Both classes implement the two ports of :mod:`bounceback.core.strategies._shared`: ``SharedSlots`` (leases
on a limited number of slots, for :class:`~bounceback.ConcurrencyLimiter`) and ``SharedBucket`` (a token
bucket, for :class:`~bounceback.RateLimiter`). Every operation is atomic: one ``BEGIN IMMEDIATE``
transaction in SQLite, one Lua script (one round trip) in Redis, so the limit is exact across processes.

Time: leases and buckets are stamped with the wall clock (``clock.wall()``), the only clock processes
share; the machines of a fleet must keep theirs in sync (NTP). A bucket's stamp never goes back, so a
lagging clock cannot mint tokens; a clock running ahead shortens other processes' leases by its lead.

Failures raise :class:`~bounceback.errors.StoreError`; the limiters then do what ``on_unavailable`` says
(the ``store.on_unavailable`` setting): carry on under their local limit (``fail-open``, the default) or
refuse calls (``fail-closed``) until the store answers again.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bounceback.core._time import SYSTEM_CLOCK, Clock
from bounceback.core.strategies._shared import (
    MemorySharedLimits,
    bucket_reserve,
    bucket_tokens,
    unavailable_choice,
)
from bounceback.errors import ConfigError
from bounceback.stores._home import register_migrations
from bounceback.stores.redis._lua import LuaScript
from bounceback.stores.redis._store import DEFAULT_REDIS_TIMEOUT, RedisLink
from bounceback.stores.sqlite._link import DEFAULT_BUSY_TIMEOUT, SqliteLink

__all__ = ["RedisSharedLimits", "SqliteSharedLimits", "shared_limits_from_settings"]

COMPONENT = "limits"

register_migrations(
    COMPONENT,
    [
        """
        CREATE TABLE limit_leases (
            key     TEXT NOT NULL,
            holder  TEXT NOT NULL,
            expires REAL NOT NULL,
            PRIMARY KEY (key, holder)
        ) WITHOUT ROWID;
        CREATE TABLE rate_buckets (
            key    TEXT PRIMARY KEY,
            tokens REAL NOT NULL,
            stamp  REAL NOT NULL
        );
        """
    ],
)


class SqliteSharedLimits:
    """Shared limits in a SQLite file (default: the home database) for the processes of one machine.

    >>> import tempfile, pathlib
    >>> from bounceback import ConcurrencyLimiter
    >>> limits = SqliteSharedLimits(pathlib.Path(tempfile.mkdtemp()) / "bounceback.db")
    >>> limiter = ConcurrencyLimiter(4, name="db", shared=limits)
    >>> with limiter:
    ...     limits.holders("db")
    1
    >>> limits.close()
    """

    __slots__ = ("_clock", "_link", "name", "on_unavailable")

    def __init__(
        self,
        path: str | Path | None = None,
        *,
        clock: Clock | None = None,
        timeout: float = DEFAULT_BUSY_TIMEOUT,
        on_unavailable: str = "fail-open",
    ) -> None:
        self._clock = clock or SYSTEM_CLOCK
        self._link = SqliteLink(path, components=[COMPONENT], timeout=timeout)
        self.name = self._link.name
        """``sqlite:/path/to/bounceback.db``."""
        self.on_unavailable = unavailable_choice(on_unavailable, "on_unavailable")
        """What the limiters using this store do while it cannot be reached (unless they say otherwise)."""

    def take(self, key: str, limit: int, holder: str, lease: float) -> bool:
        """Drop expired leases of ``key`` and add ``holder``'s if fewer than ``limit`` remain (one transaction)."""

        def body(conn: sqlite3.Connection) -> bool:
            now = self._clock.wall()  # read under the write lock: in order across the machine's processes
            conn.execute("DELETE FROM limit_leases WHERE key = ? AND expires <= ?", (key, now))
            (count,) = conn.execute("SELECT COUNT(*) FROM limit_leases WHERE key = ?", (key,)).fetchone()
            if count >= limit:
                return False
            conn.execute(
                "INSERT OR REPLACE INTO limit_leases (key, holder, expires) VALUES (?, ?, ?)",
                (key, holder, now + lease),
            )
            return True

        return self._link.write(f"take a slot of the concurrency limit {key!r}", body)

    def renew(self, key: str, holders: Sequence[str], lease: float) -> int:
        """Push live leases of ``holders`` ``lease`` seconds ahead; returns how many were live."""

        def body(conn: sqlite3.Connection) -> int:
            now = self._clock.wall()
            live = 0
            for holder in holders:
                live += conn.execute(
                    "UPDATE limit_leases SET expires = ? WHERE key = ? AND holder = ? AND expires > ?",
                    (now + lease, key, holder, now),
                ).rowcount
            return live

        return self._link.write(f"renew the leases of the concurrency limit {key!r}", body)

    def give_back(self, key: str, holder: str) -> None:
        """Drop ``holder``'s lease."""
        self._link.write(
            f"give back a slot of the concurrency limit {key!r}",
            lambda conn: conn.execute("DELETE FROM limit_leases WHERE key = ? AND holder = ?", (key, holder)),
        )

    def holders(self, key: str) -> int:
        """Live leases of ``key``."""
        now = self._clock.wall()
        row = self._link.read(
            f"count the leases of the concurrency limit {key!r}",
            lambda conn: conn.execute(
                "SELECT COUNT(*) FROM limit_leases WHERE key = ? AND expires > ?", (key, now)
            ).fetchone(),
        )
        return int(row[0])

    def reserve(self, key: str, rate: float, burst: int, max_wait: float) -> tuple[bool, float]:
        """Take a token of ``key``'s bucket, or reserve one at most ``max_wait`` away (one transaction)."""

        def body(conn: sqlite3.Connection) -> tuple[bool, float]:
            row = conn.execute("SELECT tokens, stamp FROM rate_buckets WHERE key = ?", (key,)).fetchone()
            tokens, stamp = (None, None) if row is None else row
            taken, wait, tokens, stamp = bucket_reserve(
                tokens, stamp, self._clock.wall(), rate, burst, max_wait
            )
            conn.execute(
                "INSERT OR REPLACE INTO rate_buckets (key, tokens, stamp) VALUES (?, ?, ?)",
                (key, tokens, stamp),
            )
            return taken, wait

        return self._link.write(f"take a token of the rate limit {key!r}", body)

    def tokens(self, key: str, rate: float, burst: int) -> float:
        """Tokens in ``key``'s bucket now, taking none (for displays)."""
        row = self._link.read(
            f"read the bucket of the rate limit {key!r}",
            lambda conn: conn.execute(
                "SELECT tokens, stamp FROM rate_buckets WHERE key = ?", (key,)
            ).fetchone(),
        )
        tokens, stamp = (None, None) if row is None else row
        return bucket_tokens(tokens, stamp, self._clock.wall(), rate, burst)

    def close(self) -> None:
        """Close the connection; it reopens on the next use."""
        self._link.close()

    def __repr__(self) -> str:
        return f"SqliteSharedLimits({str(self._link.path)!r})"


# KEYS[1]: the sorted set of leases (member: holder, score: expiry). ARGV: limit, holder, now, lease (s).
_TAKE_LUA = """
local now = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
local lease = tonumber(ARGV[4])
redis.call('ZADD', KEYS[1], now + lease, ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000) + 1000)
return 1
"""

# KEYS[1]: the leases. ARGV: now, lease (s), holders... Renews only live leases (XX: none is brought back).
_RENEW_LUA = """
local now = tonumber(ARGV[1])
local lease = tonumber(ARGV[2])
local live = 0
for i = 3, #ARGV do
  local expires = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if expires and tonumber(expires) > now then
    redis.call('ZADD', KEYS[1], 'XX', now + lease, ARGV[i])
    live = live + 1
  end
end
if live > 0 then
  redis.call('PEXPIRE', KEYS[1], math.ceil(lease * 1000) + 1000)
end
return live
"""

# KEYS[1]: the bucket hash (t: tokens, s: stamp). ARGV: rate, burst, now, max_wait. The step of
# bounceback.core.strategies._shared.bucket_reserve; floats travel as strings (a Lua number reply is cut
# to an integer).
_RESERVE_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])
local held = redis.call('HMGET', KEYS[1], 't', 's')
local tokens = tonumber(held[1])
local stamp = tonumber(held[2])
if tokens == nil or stamp == nil then
  tokens = burst
  stamp = now
end
if now > stamp then
  tokens = math.min(burst, tokens + (now - stamp) * rate)
  stamp = now
end
local taken = 1
local wait = 0
local left = tokens - 1
if left >= -1e-9 then
  tokens = math.max(left, 0)
else
  wait = -left / rate
  if wait > max_wait then
    taken = 0
  else
    tokens = left
  end
end
redis.call('HSET', KEYS[1], 't', string.format('%.17g', tokens), 's', string.format('%.17g', stamp))
redis.call('PEXPIRE', KEYS[1], math.ceil((burst / rate + max_wait) * 1000) + 1000)
return {taken, string.format('%.17g', wait)}
"""


class RedisSharedLimits:
    """Shared limits in Redis or Valkey for a fleet: one script call (one round trip) per take or token.

    A concurrency limit is a sorted set of leases (``<prefix>slots:{name}``), a rate limit a hash
    (``<prefix>rate:{name}``); both expire by themselves when idle.

    .. code-block:: text

        limits = RedisSharedLimits("redis://cache.internal:6379/0")
        limiter = ConcurrencyLimiter(20, name="payments-api", shared=limits)
        rate = RateLimiter(100, burst=20, name="payments-api", shared=limits)
    """

    __slots__ = (
        "_bucket",
        "_clock",
        "_give_back",
        "_holders",
        "_link",
        "_renew",
        "_reserve",
        "_take",
        "name",
        "on_unavailable",
        "prefix",
    )

    def __init__(
        self,
        url: str | None = None,
        *,
        client: Any = None,
        prefix: str = "bounceback:limit:",
        clock: Clock | None = None,
        timeout: float = DEFAULT_REDIS_TIMEOUT,
        on_unavailable: str = "fail-open",
    ) -> None:
        self.on_unavailable = unavailable_choice(on_unavailable, "on_unavailable")
        """What the limiters using this store do while it cannot be reached (unless they say otherwise)."""
        self._link = RedisLink(url, client=client, timeout=timeout)
        self._take = LuaScript(_TAKE_LUA)
        self._renew = LuaScript(_RENEW_LUA)
        self._reserve = LuaScript(_RESERVE_LUA)
        self._give_back = LuaScript("return redis.call('ZREM', KEYS[1], ARGV[1])")
        self._holders = LuaScript("return redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf')")
        self._bucket = LuaScript("return redis.call('HMGET', KEYS[1], 't', 's')")
        self._clock = clock or SYSTEM_CLOCK
        self.prefix = prefix
        self.name = self._link.name
        """``redis://host:port/db`` (without the password)."""

    def _slots(self, key: str) -> tuple[str]:
        return (f"{self.prefix}slots:{{{key}}}",)

    def take(self, key: str, limit: int, holder: str, lease: float) -> bool:
        """Drop expired leases of ``key`` and add ``holder``'s if fewer than ``limit`` remain (one script)."""
        args = (limit, holder, repr(self._clock.wall()), repr(float(lease)))
        reply = self._link.run(
            self._take, self._slots(key), args, f"take a slot of the concurrency limit {key!r}"
        )
        return bool(int(reply))

    def renew(self, key: str, holders: Sequence[str], lease: float) -> int:
        """Push live leases of ``holders`` ``lease`` seconds ahead; returns how many were live."""
        args = (repr(self._clock.wall()), repr(float(lease)), *holders)
        action = f"renew the leases of the concurrency limit {key!r}"
        return int(self._link.run(self._renew, self._slots(key), args, action))

    def give_back(self, key: str, holder: str) -> None:
        """Drop ``holder``'s lease (one ``ZREM``)."""
        action = f"give back a slot of the concurrency limit {key!r}"
        self._link.run(self._give_back, self._slots(key), (holder,), action)

    def holders(self, key: str) -> int:
        """Live leases of ``key``."""
        action = f"count the leases of the concurrency limit {key!r}"
        return int(self._link.run(self._holders, self._slots(key), (repr(self._clock.wall()),), action))

    def reserve(self, key: str, rate: float, burst: int, max_wait: float) -> tuple[bool, float]:
        """Take a token of ``key``'s bucket, or reserve one at most ``max_wait`` away (one script)."""
        args = (repr(float(rate)), burst, repr(self._clock.wall()), repr(float(max_wait)))
        keys = (f"{self.prefix}rate:{{{key}}}",)
        reply = self._link.run(self._reserve, keys, args, f"take a token of the rate limit {key!r}")
        return bool(int(reply[0])), float(reply[1])

    def tokens(self, key: str, rate: float, burst: int) -> float:
        """Tokens in ``key``'s bucket now, taking none (one read, for displays)."""
        keys = (f"{self.prefix}rate:{{{key}}}",)
        held = self._link.run(self._bucket, keys, (), f"read the bucket of the rate limit {key!r}")
        tokens, stamp = (None if v is None else float(v) for v in held)
        return bucket_tokens(tokens, stamp, self._clock.wall(), rate, burst)

    def close(self) -> None:
        """Close the client's connections."""
        self._link.close()

    def __repr__(self) -> str:
        return f"RedisSharedLimits({self.name!r}, prefix={self.prefix!r})"


SharedLimits = MemorySharedLimits | SqliteSharedLimits | RedisSharedLimits


def shared_limits_from_settings(
    values: Mapping[str, Any],
    *,
    path: str | Path | None = None,
    client: Any = None,
    clock: Clock | None = None,
) -> SharedLimits:
    """The store the ``store.backend`` setting names for shared limits: this process (``memory``), the home
    database (``sqlite``, every process of the machine) or Redis (``redis``, a fleet).

    ``store.on_unavailable`` becomes the store's ``on_unavailable``: what the limits using it do while it
    cannot be reached (``fail-open``: each process's own limit; ``fail-closed``: refuse calls).

    >>> shared_limits_from_settings({"store.backend": "memory"})
    MemorySharedLimits(keys=0)
    """
    backend = values.get("store.backend", "sqlite")
    mode = unavailable_choice(values.get("store.on_unavailable", "fail-open"), "store.on_unavailable")
    if backend == "memory":
        return MemorySharedLimits(clock=clock)
    if backend == "sqlite":
        return SqliteSharedLimits(path, clock=clock, on_unavailable=mode)
    if backend == "redis":
        url = str(values.get("store.redis_url", "") or "")
        if not url and client is None:
            raise ConfigError(
                "store.redis_url", url, "a URL such as 'redis://127.0.0.1:6379/0'",
                hint="shared limits on the redis backend need it: bounceback settings set store.redis_url URL",
            )  # fmt: skip
        return RedisSharedLimits(url or None, client=client, clock=clock, on_unavailable=mode)
    raise ConfigError("store.backend", backend, "one of 'memory', 'sqlite', 'redis'")
