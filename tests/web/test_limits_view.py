"""Limiter occupancy and rate on the dashboard: a program's journal writer publishes them to the home
database about once a second; the dashboard sums the fresh readings per limiter and shows them."""

from __future__ import annotations

import os
from pathlib import Path

from bounceback import ConcurrencyLimiter, Policy, RateLimiter
from bounceback.events import Registry
from bounceback.stores import Journal, JournalWriter
from bounceback.testing import FakeClock
from bounceback.web._collect import LIMIT_FRESH_SECONDS, Collector
from bounceback.web.views._overview import render_overview


def test_published_limiters_show_with_occupancy_and_rate(tmp_path: Path) -> None:
    db = tmp_path / "bounceback.db"
    clock = FakeClock(wall_start=1_700_000_000.0)
    named = Registry()
    limiter = ConcurrencyLimiter(4, max_waiting=2, name="search")
    bucket = RateLimiter(10, burst=5, name="quotes", clock=clock)
    # The registry holds policies weakly, as a program's do: keep them alive.
    policies = [
        Policy("search", limiter=limiter, clock=clock),
        Policy("quotes", rate_limit=bucket, clock=clock),
        Policy("search-again", limiter=limiter, clock=clock),  # one limiter, counted once
    ]
    for policy in policies:
        named.add_policy(policy)
    limiter.acquire()
    limiter.acquire()
    bucket.acquire()
    writer = JournalWriter(db, clock=clock, named=named)
    assert writer.publish_limits() == 2
    readings = {(r.name, r.kind): r for r in Journal(db).limits()}
    assert readings[("search", "concurrency")].used == 2 and readings[("search", "concurrency")].capacity == 4
    assert readings[("quotes", "rate")].used == 4 and readings[("quotes", "rate")].pid == os.getpid()
    writer.close()

    collector = Collector(db, clock=clock)
    snapshot = collector.collect()
    views = {v.name: v for v in snapshot.limits}
    assert views["search"].occupancy == 0.5 and views["search"].processes == 1
    assert views["quotes"].capacity == 10
    markup = render_overview(snapshot, "t0k")["overview-operations"]
    assert 'data-limit="search"' in markup and "2 (50%)" in markup and "10/s" in markup

    clock.advance(LIMIT_FRESH_SECONDS + 1)  # the program stopped publishing: its readings go stale
    assert collector.collect().limits == ()
    collector.close()
    limiter.release()
    limiter.release()


def test_nothing_is_written_without_limiters(tmp_path: Path) -> None:
    writer = JournalWriter(tmp_path / "bounceback.db", named=Registry())
    assert writer.publish_limits() == 0
    writer.close()
    assert not (tmp_path / "bounceback.db").exists()  # no connection opened for nothing
