"""What a person hears about: the notices found between two snapshots."""

from __future__ import annotations

from bounceback.web._live import notices_between
from bounceback.web._model import BreakerView, RunView, Snapshot, TicketView

NOW = 1_800_000_000.0


def test_notices_for_breaker_opened_gave_up_and_ticket_waiting() -> None:
    closed = BreakerView("db", "closed", NOW - 100, None, "", 10, 0)
    opened = BreakerView("db", "open", NOW, NOW + 30, "failure rate 60%", 10, 6)
    reopened = BreakerView("db", "open", NOW + 31, NOW + 91, "probe failed", 10, 6)
    running = RunView("r1", "sync", "running", NOW - 9, NOW - 1, None, 2, 3)
    gave_up = RunView("r1", "sync", "gave-up", NOW - 9, NOW, NOW, 3, 3, reason="attempts",
                      last_error_type="OSError", last_error="boom")  # fmt: skip
    ticket = TicketView("t1", "sync", "open", NOW, "OSError", "boom")
    before = Snapshot(now=NOW - 1, breakers=(closed,), runs=(running,))
    after = Snapshot(now=NOW, breakers=(opened,), runs=(gave_up,), tickets=(ticket,))
    found = notices_between(before, after)
    assert [n.kind for n in found] == ["breaker-opened", "recovery-gave-up", "ticket-waiting"]
    assert found[1].title == "Recovery of sync gave up after 3 attempts: no attempts left"
    assert notices_between(after, after) == []
    again = notices_between(
        after, Snapshot(now=NOW + 31, breakers=(reopened,), runs=(gave_up,), tickets=(ticket,))
    )
    assert [n.kind for n in again] == ["breaker-opened"]
    assert notices_between(None, after) == []  # the state found at start is not news
