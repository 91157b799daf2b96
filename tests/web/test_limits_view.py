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
from bounceback.web._model import LimitView, Snapshot
from bounceback.web.views._overview import render_overview
from tests.web.limit_fleet import running_fleet


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


def test_a_shared_limit_shows_the_fleets_limit_once_and_the_stores_count(tmp_path: Path) -> None:
    """Three real processes share a concurrency limit of 4 and a rate limit of 10/s through the home
    database; a fourth holder publishes nothing. The dashboard shows 4 and 10/s (not 12 and 30/s), the
    store's 3 in flight (not the 2 the processes hold) and the fleet's 14 tokens left (not 3 x 18)."""
    db = tmp_path / "bounceback.db"
    with running_fleet(db):
        readings = [r for r in Journal(db).limits() if r.name == "payments-db"]
        assert len(readings) == 3
        assert {r.shared for r in readings} == {f"sqlite:{db}"}
        assert {r.fleet_used for r in readings} == {3.0}
        collector = Collector(db)
        views = {v.name: v for v in collector.collect().limits}
        collector.close()
    db_limit, quotes, local = views["payments-db"], views["quotes-api"], views["local-cache"]
    assert (db_limit.used, db_limit.capacity, db_limit.processes) == (3.0, 4.0, 3)
    assert db_limit.shared == f"sqlite:{db}" and not db_limit.store_unavailable
    assert (quotes.used, quotes.capacity, quotes.processes) == (14.0, 10.0, 3)
    assert (local.used, local.capacity, local.shared) == (2.0, 15.0, None)  # local limits still add up
    markup = render_overview(Snapshot(now=0.0, limits=tuple(views.values())), "t0k")["overview-operations"]
    row = markup[markup.index('data-limit="payments-db"') :].split("</tr>")[0]
    assert ">3 (75%)<" in row and ">4 calls<" in row and "shared by 3 processes" in row


def test_a_shared_limit_whose_store_nobody_could_read_says_so() -> None:
    unreadable = LimitView(
        "payments-db", "concurrency", 2.0, 0, 4.0, 1, 2, shared="redis://r:6379/0", store_unavailable=True
    )
    rate = LimitView(
        "quotes-api", "rate", 0.0, 0, 10.0, 0, 2, shared="redis://r:6379/0", store_unavailable=True
    )
    markup = render_overview(Snapshot(now=0.0, limits=(unreadable, rate)), "t0k")["overview-operations"]
    assert markup.count("store unavailable") == 2
    assert 'data-shared="redis://r:6379/0"' in markup
