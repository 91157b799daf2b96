"""State changes of shared breakers pushed to every process of a fleet through Redis pub/sub.

The breaker script publishes every state change it writes (``transition``: an open, a half-open, a close,
a force-open or force-close from any process) on the channel ``<prefix>changes``.
:class:`RedisStateFeed` is the subscriber: a daemon thread that holds one pub/sub connection and hands each
change to the batched store's cache (``deliver``), so a process learns of a change made anywhere within the
push latency (one Redis hop) instead of at its next flush or refresh.

Nothing here sits on a caller's path: the thread waits on the socket, and a caller never waits on it. When
the connection breaks (a restart, a failover, a killed node) the thread subscribes again with a growing
pause (up to ``max_pause`` seconds). Pub/sub keeps no history, so a change published while the feed was
away is lost to it: after every (re)subscription, the feed reads the current state of every key the
process runs (``current()``, one read per key) and delivers those, so nothing published before the
subscription is missed, and nothing after it. When that read fails, it asks the batched store to refresh
every key in its next round instead (``deliver(None, None, False)``). Until then, the flushes and refreshes
of the batched store carry the news (polling as the fallback).

Redis Cluster delivers a ``PUBLISH`` to subscribers on every node, so the feed subscribes through any one of
them; with Sentinel it subscribes on the primary and follows the Sentinels to the new one after a failover.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from bounceback.core.breaker._pending import Deliver
from bounceback.core.breaker._store import SharedState
from bounceback.errors import StoreError

__all__ = ["RedisStateFeed", "parse_change"]

_log = logging.getLogger("bounceback.store")


def parse_change(data: bytes | str) -> tuple[str, SharedState, bool] | None:
    """``(name, state, cleared)`` from a published change, or None for a message that is not one.

    >>> name, state, cleared = parse_change('["db","open","3","10.5","40.5","1","0","tripped"]')
    >>> name, state.state, state.version, state.open_until, cleared
    ('db', 'open', 3, 40.5, False)
    """
    try:
        fields = json.loads(data)
        name, state, version, since, until, reopens, cleared, reason = fields
        return (
            str(name),
            SharedState(
                str(state),
                int(version),
                float(since),
                float(until) if until not in ("", None) else None,
                int(reopens),
                str(reason),
            ),
            cleared == "1",
        )
    except (ValueError, TypeError):
        # A message from a newer or foreign publisher: not ours to understand, and no reason to stop.
        return None


class RedisStateFeed:
    """A daemon thread subscribed to ``channel`` that delivers each state change to ``deliver``.

    ``subscribe()`` returns a fresh redis-py ``PubSub`` (``client.pubsub``); ``current()`` reads the stored
    states of the keys this process runs (after each subscription); ``poll_seconds`` is how long one wait
    on the socket lasts (how soon :meth:`close` is noticed). ``deliveries`` counts the changes handed
    on, ``subscriptions`` the (re)subscriptions made.

    .. code-block:: text

        feed = store.watch(deliver, keys)     # what BatchedBreakerStore does with a RedisBreakerStore
        ...
        feed.close()
    """

    def __init__(
        self,
        subscribe: Callable[[], Any],
        channel: str,
        deliver: Deliver,
        current: Callable[[], list[tuple[str, SharedState | None]]] | None = None,
        *,
        name: str = "redis",
        poll_seconds: float = 0.2,
        max_pause: float = 1.0,
    ) -> None:
        self.channel = channel
        self.deliveries = 0
        self.subscriptions = 0
        self._subscribe = subscribe
        self._deliver = deliver
        self._current = current
        self._poll = poll_seconds
        self._max_pause = max_pause
        self._stopped = threading.Event()
        self._pubsub: Any = None
        self._drop_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=f"bounceback-push {name}", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        pause = 0.05
        try:
            while not self._stopped.is_set():
                try:
                    self._listen()
                    pause = 0.05
                except Exception as exc:  # a broken connection, a failover, a node gone: subscribe again
                    _log.debug("push feed on %s lost its subscription: %s", self.channel, exc)
                    self._drop()
                    # A pause that grows while the server stays away, so a dead server is not hammered.
                    self._stopped.wait(pause)
                    pause = min(pause * 2, self._max_pause)
        finally:
            self._drop()  # stopped (closed, or its store was dropped): release the connection

    def _listen(self) -> None:
        pubsub = self._pubsub = self._subscribe()
        pubsub.subscribe(self.channel)
        while not self._stopped.is_set():
            message = pubsub.get_message(timeout=self._poll)
            if message is None:
                continue
            kind = message.get("type")
            if kind in ("subscribe", b"subscribe"):
                self.subscriptions += 1
                self._catch_up()
            elif kind in ("message", b"message"):
                change = parse_change(message["data"])
                if change is not None:
                    self.deliveries += 1
                    self._deliver(*change)

    def _catch_up(self) -> None:
        """Deliver the states stored now: what was published while there was no subscription is gone."""
        if self._current is None:
            self._deliver(None, None, False)
            return
        try:
            states = self._current()
        except StoreError:
            self._deliver(None, None, False)  # the batched store's next round refreshes every key instead
            return
        for key, state in states:
            if state is not None:
                # A close always empties the window (the breaker's only transitions to closed clear it).
                self._deliver(key, state, state.state == "closed")

    def _drop(self) -> None:
        with self._drop_lock:  # the thread on its way out and close() may both drop it
            pubsub, self._pubsub = self._pubsub, None
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception:  # closing a broken connection may complain; it is dropped anyway
                _log.debug("closing a broken pub/sub connection failed", exc_info=True)

    @property
    def alive(self) -> bool:
        """True while the feed's thread runs (until :meth:`close`)."""
        return self._thread.is_alive()

    def stop(self) -> None:
        """Ask the thread to end (it closes its connection on its way out), without waiting."""
        self._stopped.set()

    def close(self) -> None:
        """Stop the thread and close its connection; idempotent."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout=max(2.0, 4 * self._poll))
        self._drop()
