"""State changes pushed to every process: Redis pub/sub, and a ``PRAGMA data_version`` poll for SQLite.

The watching process runs its batched store on a virtual clock without a flusher thread, so nothing in it
polls: the only way news of a change can reach its cache is the push (a real subscription on a real thread).
The test waits on an event the push sets, never on time.
"""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import pytest

from bounceback import CircuitBreaker, CircuitOpenError
from bounceback.core.breaker._batched import BatchedBreakerStore
from bounceback.core.breaker._store import SharedState
from bounceback.events import EventBus
from bounceback.stores import RedisBreakerStore, SqliteBreakerStore
from bounceback.stores.redis._push import RedisStateFeed, parse_change
from bounceback.testing import FakeClock
from tests.redis_server import RedisServer
from tests.stores import push_workers
from tests.stores.shared_scenarios import CTX, wait_for

WAIT = 30.0  # seconds before a test gives up waiting for a real process or a real socket (never reached)


class Pushes:
    """The pushes a watching store took, as a list and an event per state."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, int]] = []
        self._events: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def event(self, state: str) -> threading.Event:
        with self._lock:
            return self._events.setdefault(state, threading.Event())

    def __call__(self, key: str, state: SharedState) -> None:
        self.seen.append((key, state.state, state.version))
        self.event(state.state).set()


def _inner(kind: str, target: str) -> Any:
    return RedisBreakerStore(target) if kind == "redis" else SqliteBreakerStore(target)


def _force_elsewhere(kind: str, target: str, name: str, action: str) -> None:
    proc = CTX.Process(target=push_workers.force, args=(kind, target, name, action), daemon=True)
    proc.start()
    proc.join(WAIT)
    assert proc.exitcode == 0, f"the other process failed (exit code {proc.exitcode})"


def _target(kind: str, redis_server: RedisServer, tmp_path: Path) -> str:
    return redis_server.url if kind == "redis" else str(tmp_path / "push.db")


@pytest.mark.parametrize("kind", ["redis", "sqlite"])
def test_a_force_open_elsewhere_reaches_this_process_by_push_not_by_polling(
    kind: str, redis_server: RedisServer, tmp_path: Path
) -> None:
    target = _target(kind, redis_server, tmp_path)
    clock = FakeClock()
    pushes = Pushes()
    store = BatchedBreakerStore(
        _inner(kind, target), monotonic=clock.monotonic, background=False, staleness=3600, on_push=pushes
    )
    brk = CircuitBreaker(
        f"push-{kind}", store=store, clock=clock, bus=EventBus(), timers=False, sync_seconds=1
    )
    try:
        assert brk.call(lambda: "ok") == "ok"  # starts the feed (and reads the key's state once)
        assert store.flushes == 0

        _force_elsewhere(kind, target, brk.name, "open")
        assert pushes.event("forced_open").wait(WAIT), "the push never came"
        # No flush and no refresh ran (there is no flusher thread, and virtual time stood still): the
        # cache learned it from the push alone.
        assert store.flushes == 0 and clock.monotonic() == 0.0
        cached = store.load(brk.name)
        assert cached is not None and cached.state == "forced_open"
        # The push handed the state to the breaker too (before ``on_push`` ran): its very next call is
        # refused, with virtual time standing still (no sync_seconds elapsed, no outcome recorded since).
        assert brk.state_name == "forced_open" and not brk.fast_path
        with pytest.raises(CircuitOpenError) as refused:
            brk.call(lambda: "must not run")
        assert refused.value.state == "forced_open"

        # And back: a force-close elsewhere reopens the gate the same way.
        _force_elsewhere(kind, target, brk.name, "close")
        assert pushes.event("closed").wait(WAIT), "the push of the close never came"
        assert brk.call(lambda: "again") == "again"
        assert store.flushes == 0
        assert [s for _, s, _ in pushes.seen] == ["forced_open", "closed"]  # each change once, in order
    finally:
        store.close()


def test_a_push_older_than_the_cache_is_ignored(redis_server: RedisServer) -> None:
    clock = FakeClock()
    store = BatchedBreakerStore(
        RedisBreakerStore(redis_server.url), monotonic=clock.monotonic, background=False
    )
    watcher = BatchedBreakerStore(
        RedisBreakerStore(redis_server.url), monotonic=clock.monotonic, background=False, on_push=Pushes()
    )
    brk = CircuitBreaker("own-change", store=store, clock=clock, bus=EventBus(), timers=False)
    other = CircuitBreaker("own-change", store=watcher, clock=clock, bus=EventBus(), timers=False)
    try:
        brk.call(lambda: None)
        other.call(lambda: None)
        brk.force_open("mine")
        assert watcher._on_push.event("forced_open").wait(WAIT)  # type: ignore[union-attr]
        seen = watcher.load("own-change")
        assert seen is not None and (seen.state, seen.version) == ("forced_open", 1)
        # A late or repeated message (an older version, or the same one again) does not move the cache back.
        taken = store.pushes
        for late in (SharedState("closed", 0, 0.0), store.load("own-change")):
            store._pushed("own-change", late, True)
        assert store.pushes == taken
        cached = store.load("own-change")
        assert cached is not None and (cached.state, cached.version) == ("forced_open", 1)
    finally:
        store.close()
        watcher.close()


def test_the_feed_subscribes_again_after_a_restart_and_asks_for_a_refresh(
    own_redis_server: RedisServer,
) -> None:
    clock = FakeClock()
    pushes = Pushes()
    inner = RedisBreakerStore(own_redis_server.url)
    store = BatchedBreakerStore(
        inner, monotonic=clock.monotonic, background=False, staleness=3600, on_push=pushes
    )
    brk = CircuitBreaker("restarted", store=store, clock=clock, bus=EventBus(), timers=False)
    try:
        brk.call(lambda: None)
        feed: Any = store._feed
        wait_for(lambda: feed.subscriptions == 1, "the first subscription")
        own_redis_server.restart()
        wait_for(lambda: feed.subscriptions == 2, "the feed to subscribe again after the restart")
        _force_elsewhere("redis", own_redis_server.url, "restarted", "open")
        assert pushes.event("forced_open").wait(WAIT)
    finally:
        store.close()
    assert not feed.alive  # closing the store stops its feed


def test_a_change_published_before_the_feed_subscribed_is_read_when_it_does(
    redis_server: RedisServer,
) -> None:
    store = RedisBreakerStore(redis_server.url)
    gate = threading.Event()
    got: list[tuple[str | None, SharedState | None, bool]] = []

    def subscribe() -> Any:
        gate.wait(WAIT)  # the feed (re)connects only once the change is made: it cannot have heard it
        return store.client.pubsub()

    def current() -> list[tuple[str, SharedState | None]]:
        return [("away", store.load("away"))]

    feed = RedisStateFeed(subscribe, store.channel, lambda *change: got.append(change), current)
    try:
        _force_elsewhere("redis", redis_server.url, "away", "open")  # published to nobody
        gate.set()
        wait_for(lambda: any(s is not None and s.state == "forced_open" for _, s, _ in got), "the catch-up")
        assert feed.deliveries == 0  # read after subscribing, not heard on the channel
    finally:
        feed.close()
        store.close()


def test_an_asyncio_program_keeps_running_while_the_push_arrives(redis_server: RedisServer) -> None:
    pushes = Pushes()
    # A real flusher thread, with rounds too far apart to bring the news: the push must.
    store = BatchedBreakerStore(
        RedisBreakerStore(redis_server.url), flush_seconds=30, staleness=60, on_push=pushes
    )
    brk = CircuitBreaker("async-push", store=store, bus=EventBus(), timers=False, sync_seconds=0.01)

    async def main() -> tuple[int, int]:
        loop = asyncio.get_running_loop()
        ticks = 0
        calls = 0

        async def call() -> None:
            await asyncio.sleep(0)

        other = loop.run_in_executor(None, _force_elsewhere, "redis", redis_server.url, brk.name, "open")
        while True:
            try:
                await brk.acall(call)
                calls += 1
            except CircuitOpenError:
                break
            ticks += 1
            await asyncio.sleep(0.001)  # the program's other work: the loop turns while the feed waits
        await other
        return ticks, calls

    try:
        ticks, calls = asyncio.run(main())
    finally:
        store.close()
    assert ticks == calls > 0  # the loop ran call after call until the pushed state refused one
    # Taken from the push: a push is only taken when it is newer than the cache (no flush brought it first).
    assert [s for _, s, _ in pushes.seen] == ["forced_open"]


def test_a_published_change_is_parsed_and_a_foreign_message_is_ignored() -> None:
    change = parse_change('["db","half_open","4","1.25","","2","0","probing"]')
    assert change == ("db", SharedState("half_open", 4, 1.25, None, 2, "probing"), False)
    assert parse_change(b"not json") is None
    assert parse_change('["too", "short"]') is None
