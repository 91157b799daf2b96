"""Shared fixtures: every test gets a fresh bounceback home and an isolated default event bus."""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.redis_cluster import redis_cluster  # noqa: F401  (fixture)
from tests.redis_sentinel import redis_sentinel  # noqa: F401  (fixture)
from tests.redis_server import _session_redis, own_redis_server, redis_server  # noqa: F401  (fixtures)


@pytest.fixture(autouse=True)
def _isolated_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Point $BOUNCEBACK_HOME at a fresh folder so no test touches the user's real home database."""
    home = tmp_path_factory.mktemp("bbhome")
    monkeypatch.setenv("BOUNCEBACK_HOME", str(home))
    yield home


@pytest.fixture
def home() -> Path:
    """The bounceback home folder of this test."""
    return Path(os.environ["BOUNCEBACK_HOME"])


# Threads of the shared stores (push feeds, flushers): a test must not leave one behind. A store that is
# neither closed nor dropped keeps polling (SQLite every 20 ms) or reconnecting (a killed Redis) for the rest
# of the run, and a reconnection through redis-py's cluster client calls the global ``random`` module, which
# hypothesis then blames on an unrelated test.
STORE_THREADS = ("bounceback-push", "bounceback-flush")
STORE_THREAD_GRACE = 3.0
"""Seconds a store's thread gets to end after the test (it notices a close or a drop within one poll)."""


def leaked_store_threads(before: set[threading.Thread], grace: float) -> list[str]:
    """Names of the store threads started since ``before`` still alive after ``grace`` seconds, collecting
    garbage while waiting: a store dropped in a reference cycle ends its threads once it is collected. One
    collection is not enough: if it runs while a store thread holds the store for a moment (a flush), the
    cycle survives it into the oldest generation, which the interpreter seldom collects by itself."""
    left = [t for t in threading.enumerate() if t.name.startswith(STORE_THREADS) and t not in before]
    if not left:
        return []
    deadline = time.monotonic() + grace
    while True:
        gc.collect()
        for thread in left:
            thread.join(timeout=max(0.0, min(0.2, deadline - time.monotonic())))
        alive = sorted(t.name for t in left if t.is_alive())
        if not alive or time.monotonic() >= deadline:
            return alive


@pytest.fixture(autouse=True)
def _no_leaked_store_threads() -> Iterator[None]:
    """Fail a test that leaves a push or flush thread of a breaker store alive: close the stores you make."""
    before = {t for t in threading.enumerate() if t.name.startswith(STORE_THREADS)}
    yield
    left = leaked_store_threads(before, STORE_THREAD_GRACE)
    if left:
        pytest.fail(f"the test left store threads running: {left}; close the stores it made", pytrace=False)
