"""The live side: the watcher sees other processes' writes at once, and notices reach the hooks."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bounceback.stores import SqliteSettings
from bounceback.web import DashboardServer
from bounceback.web._collect import Collector
from bounceback.web._live import LiveState
from bounceback.web._model import Snapshot
from tests.web.conftest import run_scenario


def test_the_watcher_publishes_a_snapshot_soon_after_another_connection_writes(database: Path) -> None:
    collector = Collector(database)

    async def scenario() -> tuple[float, int, int]:
        live = LiveState(database, collector.collect, poll=0.05, refresh=60)
        await live.start()
        try:
            start = live.snapshot.version
            idle = await live.wait(start, timeout=0.3)  # nothing written: nothing new
            with SqliteSettings(database) as settings:
                settings.set("retry.max_attempts", 9)
            written = time.monotonic()
            fresh = await live.wait(start, timeout=5)
            assert idle is None and fresh is not None
            assert fresh.settings[None]["retry.max_attempts"] == 9
            return time.monotonic() - written, start, fresh.version
        finally:
            await live.stop()

    try:
        delay, before, after = asyncio.run(scenario())
    finally:
        collector.close()
    assert after > before
    assert delay < 0.5


@pytest.fixture
def webhook() -> Iterator[tuple[list[dict[str, Any]], threading.Event, str]]:
    received: list[dict[str, Any]] = []
    arrived = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            arrived.set()
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield received, arrived, f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_the_dashboard_runs_the_notify_hook_when_a_breaker_opens_elsewhere(
    database: Path, webhook: tuple[list[dict[str, Any]], threading.Event, str]
) -> None:
    received, arrived, url = webhook
    with SqliteSettings(database) as settings:
        settings.set("notify.webhook", url)
    with DashboardServer(database, hooks=True):
        run_scenario("open-breaker", str(database), "payments-db", "30")
        assert arrived.wait(5), "the webhook was not called"
    (event,) = received
    assert event["kind"] == "breaker-opened" and event["operation"] == "payments-db"
    assert event["title"] == "Breaker payments-db opened"


def test_many_waiters_timing_out_and_cancelled_while_snapshots_are_published(database: Path) -> None:
    # The stream crashed once with "RuntimeError: cannot wait on un-acquired lock": a wait that timed out
    # while a snapshot was published. Hundreds of waits with timeouts around each publish, some cancelled.
    versions = iter(range(1, 10_000))
    live = LiveState(
        database, lambda: Snapshot(now=time.time(), version=next(versions)), poll=0.001, refresh=0
    )

    async def scenario() -> tuple[int, int]:
        await live.start()
        got = timed_out = 0
        try:
            for round_ in range(40):
                seen = live.snapshot.version
                waits = [asyncio.ensure_future(live.wait(seen, timeout=0.001 * (i % 5))) for i in range(30)]
                waits[round_ % 30].cancel()
                for outcome in await asyncio.gather(*waits, return_exceptions=True):
                    if isinstance(outcome, asyncio.CancelledError):
                        continue
                    assert not isinstance(outcome, BaseException), outcome
                    if outcome is None:
                        timed_out += 1
                    else:
                        assert outcome.version > seen
                        got += 1
        finally:
            await live.stop()
        return got, timed_out

    got, timed_out = asyncio.run(scenario())
    assert got > 0 and got + timed_out == 40 * 29
