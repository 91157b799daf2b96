"""Tickets in the home database: park, list, resolve exactly once (also across processes), outcomes, pruning."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from bounceback import ConfigError, GiveUp
from bounceback.core.classify._rules import DEFAULT_CLASSIFIER
from bounceback.core.recovery._ports import MemoryTickets
from bounceback.core.recovery._tickets import ChoiceKind, Record, Ticket, open_ticket
from bounceback.stores import open_home
from bounceback.stores._tickets import SqliteTickets
from bounceback.testing import FakeClock

NOW = 1_800_000_000.0


def ticket_for(
    op: str = "sync", error: BaseException | None = None, now: float = NOW, skip: bool = False
) -> Ticket:
    error = error or ConnectionRefusedError(111, "Connect call failed ('10.0.0.7', 8080)")
    info = GiveUp(op, error, "attempts", (), DEFAULT_CLASSIFIER.classify(error), "run-1", 2.5, "closed")
    return open_ticket(info, now=now, can_skip=skip)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(wall_start=NOW)


@pytest.fixture
def store(home: Path, clock: FakeClock) -> SqliteTickets:
    with SqliteTickets(home / "bounceback.db", clock=clock) as tickets:
        yield tickets  # type: ignore[misc]


def test_a_parked_ticket_reads_back_whole(store: SqliteTickets) -> None:
    ticket = ticket_for(skip=True)
    store.park(ticket)
    again = store.get(ticket.id)
    assert again == ticket
    assert again.facts["address"] == "10.0.0.7:8080" and again.breaker_state == "closed"
    assert store.get(f"  {ticket.id} ").id == ticket.id  # pasted ids with spaces work


def test_list_filters_by_status_and_operation_newest_first(store: SqliteTickets, clock: FakeClock) -> None:
    ids = []
    for n, op in enumerate(["a", "b", "a"]):
        ids.append(store.park(ticket_for(op, now=NOW + n)).id)
    store.decide(ids[0], "abort", by="ann")
    assert [t.id for t in store.list()] == ids[::-1]
    assert [t.id for t in store.list("open")] == [ids[2], ids[1]]
    assert [t.id for t in store.list("resolved")] == [ids[0]]
    assert [t.id for t in store.list(operation="a")] == [ids[2], ids[0]]
    assert [t.id for t in store.list(limit=1)] == [ids[2]]
    with pytest.raises(ConfigError, match="open or resolved"):
        store.list("closed")


def test_resolving_twice_is_refused_with_who_and_when(store: SqliteTickets, clock: FakeClock) -> None:
    ticket = store.park(ticket_for())
    done = store.decide(ticket.id, "retry", by="ann@desk", note="restarted the gateway")
    assert done.status == "resolved" and done.resolution is not None
    assert (done.resolution.by, done.resolution.note, done.resolution.at) == (
        "ann@desk",
        "restarted the gateway",
        NOW,
    )
    clock.advance(60)
    with pytest.raises(ConfigError, match=r"already resolved by ann@desk at \d\d:\d\d:\d\d with 'retry'"):
        store.decide(ticket.id, "abort", by="bo")
    with pytest.raises(ConfigError, match="already resolved by ann@desk"):
        store.resolve(ticket.id, ticket.decide("abort", by="bo", at=clock.wall()))
    assert store.get(ticket.id).resolution.by == "ann@desk"  # type: ignore[union-attr]


def test_unknown_ids_and_choices_not_offered_are_refused(store: SqliteTickets) -> None:
    ticket = store.park(ticket_for())
    with pytest.raises(ConfigError, match="the id of a recorded ticket"):
        store.get("nope")
    with pytest.raises(ConfigError, match="the id of a recorded ticket"):
        store.resolve("nope", ticket.decide("retry", by="ann", at=NOW))
    with pytest.raises(ConfigError, match="skip needs a fallback value"):
        store.decide(ticket.id, "skip", by="ann")
    assert store.get(ticket.id).is_open


def test_exactly_one_of_many_threads_resolves(store: SqliteTickets, home: Path) -> None:
    ticket = store.park(ticket_for())
    barrier = threading.Barrier(8)
    wins: list[str] = []
    refusals: list[str] = []

    def person(n: int) -> None:
        with SqliteTickets(home / "bounceback.db") as mine:
            barrier.wait()
            try:
                mine.decide(ticket.id, "retry" if n % 2 else "abort", by=f"person{n}")
                wins.append(f"person{n}")
            except ConfigError as exc:
                refusals.append(str(exc))

    threads = [threading.Thread(target=person, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(wins) == 1 and len(refusals) == 7
    assert all(f"already resolved by {wins[0]}" in r for r in refusals)
    assert store.get(ticket.id).resolution.by == wins[0]  # type: ignore[union-attr]


_RESOLVER = """
import json, os, sys, time
from bounceback.errors import ConfigError
from bounceback.stores._tickets import SqliteTickets
db, who, go, ids = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
store = SqliteTickets(db)
store.list()  # connect and migrate before the start line
print("ready", flush=True)
end = time.monotonic() + 20
while not os.path.exists(go) and time.monotonic() < end:
    time.sleep(0.001)
results = {}
for ticket_id in ids:
    try:
        store.decide(ticket_id, "retry", by=who)
        results[ticket_id] = "won"
    except ConfigError as exc:
        results[ticket_id] = str(exc)
print(json.dumps(results), flush=True)
"""


def test_two_processes_resolving_the_same_tickets_each_ticket_has_one_winner(
    store: SqliteTickets, home: Path
) -> None:
    ids = [store.park(ticket_for(now=NOW + n)).id for n in range(20)]
    go = home / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RESOLVER, str(home / "bounceback.db"), who, str(go), *ids],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in ("ann", "bo")
    ]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    go.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    for ticket_id in ids:
        outcomes = [r[ticket_id] for r in results]
        assert outcomes.count("won") == 1, outcomes
        (refusal,) = [o for o in outcomes if o != "won"]
        winner = "ann" if results[0][ticket_id] == "won" else "bo"
        assert f"already resolved by {winner} at" in refusal
        assert store.get(ticket_id).resolution.by == winner  # type: ignore[union-attr]


def test_outcomes_are_recorded_once_and_only_for_choices_that_run_again(store: SqliteTickets) -> None:
    retry = store.park(ticket_for())
    assert not store.record_outcome(retry.id, True)  # still open
    store.decide(retry.id, "retry", by="ann", did=["1", "firewall"], not_useful=["address"])
    assert store.record_outcome(retry.id, True)
    assert not store.record_outcome(retry.id, False)  # once
    aborted = store.park(ticket_for(now=NOW + 1))
    store.decide(aborted.id, "abort", by="ann")
    assert not store.record_outcome(aborted.id, True)
    assert not store.record_outcome("nope", True)
    assert store.stats("sync", "connection-refused") == {
        "choice:retry": Record(1, 1),
        "step:service-up": Record(1, 1),
        "step:firewall": Record(1, 1),
        "step:address": Record(0, 0, 1),
    }
    assert store.get(retry.id).resolution.outcome == "succeeded"  # type: ignore[union-attr]


def test_later_tickets_are_ranked_by_recorded_outcomes(store: SqliteTickets) -> None:
    for n, worked in enumerate([True, True, True, True, False]):
        ticket = store.park(ticket_for(now=NOW + n))
        store.decide(ticket.id, "retry-adjusted", by="ann", did=["firewall"])
        store.record_outcome(ticket.id, worked)
    fresh = store.park(ticket_for(now=NOW + 10))
    shown = store.get(fresh.id)
    assert shown.guidance[0].key == "firewall" and shown.guidance[0].record.text() == "worked 4 of 5 times"
    assert shown.choices[0].kind is ChoiceKind.RETRY_ADJUSTED
    # another operation has its own record
    other = store.park(ticket_for("other-op", now=NOW + 11))
    assert store.get(other.id).guidance[0].key == "service-up"


def test_steps_can_be_marked_not_useful_after_the_fact(store: SqliteTickets) -> None:
    ticket = store.park(ticket_for())
    marked = store.mark_not_useful(ticket.id, ["1", "service-up", "2"])
    assert [s.key for s in marked.guidance] == ["firewall", "service-up", "address"]
    assert marked.guidance[-1].record.text() == "marked not useful 1 time"
    with pytest.raises(ConfigError, match="step"):
        store.mark_not_useful(ticket.id, ["9"])


def test_the_next_run_counts_as_the_follow_up_of_a_retry_resolution(
    store: SqliteTickets, clock: FakeClock
) -> None:
    assert store.follow_up("sync", True) is None
    ticket = store.park(ticket_for())
    store.decide(ticket.id, "retry", by="ann")
    clock.advance(600)
    assert store.follow_up("sync", False) == ticket.id
    assert store.follow_up("sync", True) is None  # already counted
    late = store.park(ticket_for(now=NOW + 700))
    store.decide(late.id, "retry", by="ann")
    clock.advance(2 * 86400)
    assert store.follow_up("sync", True, within=86400) is None


def test_pruning_deletes_old_resolved_tickets_but_keeps_what_was_learned(
    home: Path, clock: FakeClock
) -> None:
    store = SqliteTickets(home / "bounceback.db", clock=clock, retention="1d")
    old = store.park(ticket_for())
    store.decide(old.id, "retry", by="ann")
    store.record_outcome(old.id, True)
    still_open = store.park(ticket_for(now=NOW + 1))
    clock.advance(86400 + 1)
    recent = store.park(ticket_for(now=clock.wall()))  # parking prunes (at most hourly)
    store.decide(recent.id, "abort", by="ann")
    assert {t.id for t in store.list()} == {still_open.id, recent.id}
    assert store.stats("sync", "connection-refused")["choice:retry"] == Record(1, 1)
    assert store.prune(now=clock.wall() + 2 * 86400) == 1
    assert [t.id for t in store.list()] == [still_open.id]
    with pytest.raises(ConfigError):
        SqliteTickets(home / "bounceback.db", retention=0)
    store.close()


def test_open_home_creates_the_ticket_tables(home: Path) -> None:
    conn = open_home(home / "bounceback.db")
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    conn.close()
    assert {"tickets", "ticket_stats"} <= tables


def test_a_ticket_parked_by_one_process_is_read_by_another(home: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from bounceback import Policy, RecoveryRequired
        from bounceback.core.policy._manual import ManualRecovery
        from bounceback.stores._tickets import SqliteTickets
        from bounceback.testing import FakeClock
        def read():
            raise ConnectionRefusedError(111, "Connect call failed ('10.0.0.7', 8080)")
        try:
            Policy("read", attempts=2, clock=FakeClock(), fallback=ManualRecovery("park", store=SqliteTickets(sys.argv[1]))).call(read)
        except RecoveryRequired as exc:
            print(exc.ticket.id)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(home / "bounceback.db")],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    with SqliteTickets(home / "bounceback.db") as store:
        ticket = store.get(out.stdout.strip())
    assert ticket.operation == "read" and len(ticket.attempts) == 2 and ticket.is_open


class TicketsMatchTheModel(RuleBasedStateMachine):
    """The SQLite store behaves like the in-memory one under any sequence of parks, resolutions and outcomes."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.n = 0

    @initialize()
    def open_stores(self) -> None:
        import tempfile

        self.dir = tempfile.TemporaryDirectory()
        self.sqlite = SqliteTickets(Path(self.dir.name) / "bounceback.db", clock=FakeClock(wall_start=NOW))
        self.memory = MemoryTickets()

    def teardown(self) -> None:
        self.sqlite.close()
        self.dir.cleanup()

    @rule(op=st.sampled_from(["a", "b"]))
    def park(self, op: str) -> None:
        self.n += 1
        ticket = ticket_for(op, now=NOW + self.n)
        self.sqlite.park(ticket)
        self.memory.park(ticket)
        self.ids.append(ticket.id)

    @rule(
        pick=st.integers(0, 50),
        choice=st.sampled_from(["retry", "retry-adjusted", "abort"]),
        did=st.lists(st.sampled_from(["1", "2", "3"]), max_size=2),
        not_useful=st.lists(st.sampled_from(["1", "2", "3"]), max_size=2),
    )
    def resolve(self, pick: int, choice: str, did: list[str], not_useful: list[str]) -> None:
        if not self.ids:
            return
        ticket_id = self.ids[pick % len(self.ids)]
        ticket = self.memory.get(ticket_id)
        res = ticket.decide(choice, by="p", at=NOW, did=did, not_useful=not_useful)
        errors = []
        for store in (self.sqlite, self.memory):
            try:
                store.resolve(ticket_id, res)
                errors.append(None)
            except ConfigError:
                errors.append("refused")
        assert errors[0] == errors[1]
        assert (errors[0] is None) == ticket.is_open

    @rule(pick=st.integers(0, 50), worked=st.booleans())
    def outcome(self, pick: int, worked: bool) -> None:
        if self.ids:
            ticket_id = self.ids[pick % len(self.ids)]
            assert self.sqlite.record_outcome(ticket_id, worked) == self.memory.record_outcome(
                ticket_id, worked
            )

    @invariant()
    def same_records(self) -> None:
        if hasattr(self, "sqlite"):
            for op in ("a", "b"):
                assert dict(self.sqlite.stats(op, "connection-refused")) == dict(
                    self.memory.stats(op, "connection-refused")
                )


TicketsMatchTheModel.TestCase.settings = settings(
    max_examples=25, stateful_step_count=15, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
test_sqlite_tickets_match_the_model = TicketsMatchTheModel.TestCase


def test_the_store_is_quick_enough_for_a_person(store: SqliteTickets) -> None:
    started = time.perf_counter()
    for n in range(50):
        ticket = store.park(ticket_for(now=NOW + n))
        store.decide(ticket.id, "retry", by="ann")
        store.record_outcome(ticket.id, True)
    per_ticket = (time.perf_counter() - started) / 50
    assert per_ticket < 0.25, per_ticket
