"""The recovery journal: what the writer records, what the queries answer, cancel requests, retention, crashes."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import closing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bounceback import Backoff, Classification, ConfigError, ErrorKind, Policy, RecoveryCancelled
from bounceback.core._control import RunControls
from bounceback.core.settings._source import StaticSettings
from bounceback.events import AttemptFailed, BreakerOpened, CallRejected, EventBus
from bounceback.stores.journal._journal import HOST, Journal, is_process_alive
from bounceback.stores.journal._writer import JournalWriter
from bounceback.testing import FakeClock

NO_JITTER = Backoff(initial=1, max_delay=100, jitter="none")


class Flaky:
    def __init__(self, failures: int, error: Exception | None = None) -> None:
        self.failures = failures
        self.error = error or ConnectionRefusedError(111, "Connection refused")
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "ok"


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bounceback.db"


def _writer(db: Path, bus: EventBus, clock: FakeClock, **kw: object) -> JournalWriter:
    # A long flush interval: the tests flush by hand, so the thread never races them.
    return JournalWriter(db, bus=bus, clock=clock, flush_interval=60, controls=RunControls(), **kw)  # type: ignore[arg-type]


def test_recovered_and_exhausted_runs_with_their_attempts(db: Path) -> None:
    bus, clock = EventBus(), FakeClock()
    with _writer(db, bus, clock) as writer:
        ok = Policy("fetch", attempts=5, backoff=NO_JITTER, bus=bus, clock=clock)
        assert ok.call(Flaky(2)) == "ok"
        bad = Policy("store", attempts=3, backoff=NO_JITTER, bus=bus, clock=clock)
        with pytest.raises(TimeoutError):
            bad.call(Flaky(10, TimeoutError("no answer")))
        writer.flush()
    journal = Journal(db)
    runs = {run.operation: run for run in journal.runs()}
    fetch, store = runs["fetch"], runs["store"]
    assert (fetch.status, fetch.outcome, fetch.reason, fetch.attempts) == ("recovered", "recovered", None, 3)
    assert (store.status, store.reason, store.attempts) == ("gave-up", "attempts", 3)
    assert store.last_error_type == "TimeoutError" and store.last_error == "no answer"
    assert store.last_kind == "transient" and store.max_attempts == 3
    assert fetch.pid == os.getpid() and fetch.host == HOST
    # Virtual time: the waits were 1 s and 2 s, so the run took 3 s of wall time.
    assert fetch.duration == pytest.approx(3.0)
    attempts = journal.attempts(fetch.run_id)
    assert [(a.attempt, a.outcome, a.delay) for a in attempts] == [
        (1, "failed", 1.0),
        (2, "failed", 2.0),
        (3, "succeeded", None),
    ]
    assert attempts[0].error_type == "ConnectionRefusedError" and attempts[0].kind == "transient"
    assert attempts[0].retry_at == pytest.approx(attempts[0].at + 1.0)
    assert [a.delay for a in journal.attempts(store.run_id)] == [1.0, 2.0, None]
    assert journal.active_runs() == []


def test_the_success_path_writes_nothing_and_costs_no_python_code(db: Path) -> None:
    bus, clock = EventBus(), FakeClock()
    with _writer(db, bus, clock) as writer:
        # The subscriber is the queue's own append: an emitting thread runs no Python code of ours.
        assert bus._subscribers == (writer._queue.append,)
        policy = Policy("fast", attempts=3, bus=bus, clock=clock)
        for _ in range(100):
            policy.call(lambda: 1)
        assert writer.queued == 0
        assert writer.flush() == 0
    assert Journal(db).runs() == []


def test_active_runs_counts_and_breaker_changes(db: Path) -> None:
    bus, clock = EventBus(), FakeClock()
    verdict = Classification(ErrorKind.TRANSIENT, "refused")
    with _writer(db, bus, clock) as writer:
        at = clock.wall()
        bus.emit(AttemptFailed("sync", at, "r-1", 1, 4, 0.5, "OSError", "refused", verdict, True, "closed"))
        bus.emit(BreakerOpened("sync", at + 1, "closed", "open", "failure rate 100%", at + 31))
        for _ in range(3):
            bus.emit(CallRejected("sync", at + 2, "open", at + 31))
        Policy("sync", attempts=2, bus=bus, clock=clock).call(Flaky(1))
        writer.flush()
    journal = Journal(db)
    [active] = journal.active_runs()
    assert (active.run_id, active.status, active.attempts, active.breaker_state) == (
        "r-1",
        "running",
        1,
        "closed",
    )
    assert journal.active_runs(operation="other") == []
    counts = journal.counts()
    assert counts["sync"].runs == 2 and counts["sync"].running == 1 and counts["sync"].recovered == 1
    assert counts["sync"].failed_attempts == 2 and counts["sync"].rejections == 3
    [change] = journal.breaker_changes(name="sync")
    assert (change.old_state, change.new_state, change.open_until) == ("closed", "open", at + 31)
    assert journal.operations() == ["sync"]
    # Since a time after everything: nothing counted.
    assert journal.counts(since=at + 3600) == {}


def test_runs_since_and_per_operation(db: Path) -> None:
    bus, clock = EventBus(), FakeClock()
    with _writer(db, bus, clock) as writer:
        Policy("a", attempts=3, backoff=NO_JITTER, bus=bus, clock=clock).call(Flaky(1))
        clock.advance(3600)
        middle = clock.wall()
        Policy("b", attempts=3, backoff=NO_JITTER, bus=bus, clock=clock).call(Flaky(1))
        Policy("a", attempts=3, backoff=NO_JITTER, bus=bus, clock=clock).call(Flaky(2))
        writer.flush()
    journal = Journal(db)
    assert [r.operation for r in journal.runs()] == ["a", "b", "a"]
    assert [r.operation for r in journal.runs(since=middle)] == ["b", "a"]
    assert [r.attempts for r in journal.runs(operation="a")] == [2, 3]
    assert [r.operation for r in journal.runs(limit=1)] == ["a"]
    runs = journal.runs()
    found = journal.attempts_of(r.run_id for r in runs)
    assert [len(found[r.run_id]) for r in runs] == [2, 2, 3]


def test_retention_prunes_old_entries_from_settings(db: Path) -> None:
    bus, clock = EventBus(), FakeClock()
    settings = StaticSettings({"journal.retention": 3600})
    with _writer(db, bus, clock, settings=settings) as writer:
        Policy("old", attempts=3, bus=bus, clock=clock).call(Flaky(1))
        bus.emit(BreakerOpened("old", clock.wall(), "closed", "open", "x", None))
        writer.flush()
        clock.advance(7200)
        Policy("new", attempts=3, bus=bus, clock=clock).call(Flaky(1))
        writer.flush()
        assert writer.prune() == 1
    journal = Journal(db)
    assert [r.operation for r in journal.runs()] == ["new"]
    assert journal.breaker_changes() == []
    with closing(sqlite3.connect(db)) as conn:
        ops = {row[0] for row in conn.execute("SELECT operation FROM journal_attempts")}
    assert ops == {"new"}
    with pytest.raises(ValueError, match="retention"):
        journal.prune(0)


def test_a_locked_database_keeps_the_batch_for_the_next_flush(db: Path) -> None:
    bus, clock = EventBus(), FakeClock()
    writer = JournalWriter(db, bus=bus, clock=clock, flush_interval=60, timeout=0.05, controls=RunControls())
    with writer:
        Policy("x", attempts=3, bus=bus, clock=clock).call(Flaky(1))
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        assert writer.flush() == 0
        assert writer.queued == 3  # AttemptFailed, RetryScheduled, RecoverySucceeded
        blocker.execute("ROLLBACK")
        blocker.close()
        assert writer.flush() == 3
    assert [r.status for r in Journal(db).runs()] == ["recovered"]


def test_the_thread_writes_within_the_flush_interval(db: Path) -> None:
    bus = EventBus()
    verdict = Classification(ErrorKind.TRANSIENT, "refused")
    journal = Journal(db)
    with JournalWriter(db, bus=bus, flush_interval=0.05, controls=RunControls()):
        emitted = time.monotonic()
        bus.emit(AttemptFailed("live", time.time(), "r-9", 1, 3, 0.0, "OSError", "x", verdict, True))
        deadline = emitted + 5
        while journal.run("r-9") is None and time.monotonic() < deadline:
            time.sleep(0.005)
        seen = time.monotonic() - emitted
    assert journal.run("r-9") is not None
    assert seen < 0.5, f"the event took {seen:.3f} s to reach the journal"


def test_cancel_request_stops_a_waiting_run_in_this_process(db: Path) -> None:
    bus = EventBus()
    journal = Journal(db)
    outcome: list[BaseException] = []
    slow = Policy(
        "wait", attempts=3, backoff=Backoff(initial=60, max_delay=60, jitter="none"), deadline=None, bus=bus
    )

    def run() -> None:
        try:
            slow.call(Flaky(5))
        except BaseException as exc:
            outcome.append(exc)

    # The writer enables the process-wide run controls, so the run registers its cancel token.
    with JournalWriter(db, bus=bus, flush_interval=0.02, cancel_poll=0.05):
        worker = threading.Thread(target=run)
        worker.start()
        _wait_for(journal.active_runs, 5)
        [active] = journal.active_runs()
        asked = time.monotonic()
        assert journal.request_cancel(active.run_id, reason="operator pressed Cancel")
        worker.join(timeout=5)
        took = time.monotonic() - asked
    assert not worker.is_alive()
    assert isinstance(outcome[0], RecoveryCancelled) and "operator pressed Cancel" in str(outcome[0])
    assert took < 2.0
    request = journal.cancel_request(active.run_id)
    assert request is not None and request.handled and request.handled_pid == os.getpid()
    ended = journal.run(active.run_id)
    assert ended is not None and (ended.status, ended.reason) == ("gave-up", "cancelled")
    # Asking again after the end is refused; an unknown id is an error that says what to use.
    assert journal.request_cancel(active.run_id) is False
    with pytest.raises(ValueError, match="bounceback status"):
        journal.request_cancel("no-such-run")


CHILD = textwrap.dedent(
    """
    import sys
    from bounceback import Backoff, Policy
    from bounceback.stores.journal._writer import JournalWriter

    def fail():
        raise ConnectionRefusedError(111, "Connection refused")

    with JournalWriter(sys.argv[1], flush_interval=0.02, cancel_poll=0.05):
        policy = Policy("remote", attempts=5, backoff=Backoff(initial=60, max_delay=60, jitter="none"), deadline=None)
        try:
            policy.call(fail)
        except Exception as exc:
            print(type(exc).__name__, flush=True)
    """
)


def _wait_for(predicate: object, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:  # type: ignore[operator]
        time.sleep(0.01)


def test_cancel_request_from_another_process_reaches_its_run(db: Path, tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True)
    try:
        journal = Journal(db)
        _wait_for(lambda: db.exists() and journal.active_runs())
        [active] = journal.active_runs()
        assert active.pid == child.pid
        asked = time.monotonic()
        assert journal.request_cancel(active.run_id, reason="stop from the test")
        out, _ = child.communicate(timeout=10)
        took = time.monotonic() - asked
    finally:
        child.kill()
        child.wait()
    assert out.strip() == "RecoveryCancelled"
    assert took < 3.0
    ended = journal.run(active.run_id)
    assert ended is not None and ended.reason == "cancelled"


CRASHER = textwrap.dedent(
    """
    import sys, time
    from bounceback import Classification, ErrorKind
    from bounceback.events import EventBus
    from bounceback.core._events import AttemptFailed, RetryScheduled
    from bounceback.stores.journal._writer import JournalWriter

    bus = EventBus()
    verdict = Classification(ErrorKind.TRANSIENT, "x")
    writer = JournalWriter(sys.argv[1], bus=bus, flush_interval=0.001).start()
    n = -1
    while True:
        n += 1
        run = f"crash-{n // 50}"
        attempt = n % 50 + 1
        now = time.time()
        bus.emit(AttemptFailed("crash", now, run, attempt, None, 0.1, "OSError", "e" * 200, verdict, True))
        bus.emit(RetryScheduled("crash", now, run, attempt + 1, None, 0.0, now, None, now, "backoff"))
        if n == 2000:
            print("busy", flush=True)
        if n % 100 == 0:
            time.sleep(0.001)
    """
)


def test_sigkill_leaves_no_half_written_rows(db: Path, tmp_path: Path) -> None:
    script = tmp_path / "crasher.py"
    script.write_text(CRASHER)
    child = subprocess.Popen([sys.executable, str(script), str(db)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "busy"

        def committed_runs() -> int:
            with closing(sqlite3.connect(db)) as conn:
                return int(conn.execute("SELECT count(*) FROM journal_runs").fetchone()[0])

        _wait_for(lambda: committed_runs() > 5)  # a few batches are in; it keeps writing ...
        os.kill(child.pid, signal.SIGKILL)  # ... and is killed mid-stream
        child.wait(timeout=10)
    finally:
        child.kill()
        child.wait()
        assert child.stdout is not None
        child.stdout.close()
    with closing(sqlite3.connect(db)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        rows = conn.execute(
            "SELECT r.run_id, r.attempts, count(a.attempt), max(a.attempt) FROM journal_runs r "
            "LEFT JOIN journal_attempts a USING (run_id) GROUP BY r.run_id"
        ).fetchall()
        orphans = conn.execute(
            "SELECT count(*) FROM journal_attempts WHERE run_id NOT IN (SELECT run_id FROM journal_runs)"
        ).fetchone()[0]
    assert len(rows) > 5
    # Every batch is one transaction: a run's attempt count always matches its attempt rows.
    assert all(attempts == count == highest for _, attempts, count, highest in rows), rows[:5]
    assert orphans == 0
    journal = Journal(db)
    # Its process is gone: the unfinished runs are abandoned, not active.
    assert journal.active_runs() == []
    assert {r.status for r in journal.runs()} == {"abandoned"}
    assert is_process_alive(child.pid) is False


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plans=st.lists(st.tuples(st.integers(0, 6), st.integers(1, 5)), min_size=1, max_size=6))
def test_the_journal_matches_what_the_policies_did(tmp_path: Path, plans: list[tuple[int, int]]) -> None:
    db = tmp_path / f"p{abs(hash(tuple(plans)))}.db"
    db.unlink(missing_ok=True)
    bus, clock = EventBus(), FakeClock()
    expected = []
    with _writer(db, bus, clock) as writer:
        for i, (failures, attempts) in enumerate(plans):
            policy = Policy(f"op{i}", attempts=attempts, backoff=NO_JITTER, bus=bus, clock=clock)
            try:
                policy.call(Flaky(failures))
                recovered = True
            except ConnectionRefusedError:
                recovered = False
            if failures:
                made = min(failures + 1, attempts) if recovered else attempts
                expected.append((f"op{i}", "recovered" if recovered else "gave-up", made))
        writer.flush()
    journal = Journal(db)
    runs = journal.runs()
    assert [(r.operation, r.status, r.attempts) for r in runs] == expected
    for run in runs:
        attempts = journal.attempts(run.run_id)
        assert [a.attempt for a in attempts] == list(range(1, run.attempts + 1))
        assert all(a.outcome == "failed" for a in attempts[:-1])
        assert (attempts[-1].outcome == "succeeded") == (run.status == "recovered")


def test_an_announced_command_has_one_row_from_its_first_attempt_to_its_end(db: Path, tmp_path: Path) -> None:
    from bounceback.integrations._subprocess import CommandRun, CommandRunner

    flaky = str(Path(__file__).resolve().parents[1] / "flaky_command.py")
    bus, clock, controls = EventBus(), FakeClock(), RunControls()
    with JournalWriter(db, bus=bus, clock=clock, flush_interval=60, controls=controls) as writer:
        journal = Journal(db)
        # The first attempt succeeds: listed while it runs, forgotten after (as a library call's success).
        run = CommandRun(
            "backup", ["true"], attempts=3, deadline=600, bus=bus, controls=controls, clock=clock
        )
        assert controls.active() == {run.run_id: "backup"}  # a Cancel of its id reaches it
        runner = CommandRunner(["true"], operation="backup", announce=run, clock=clock)
        Policy("backup", attempts=3, bus=bus, clock=clock, cancel=run.token).call(runner.attempt)
        writer.flush()
        [entry] = journal.active_runs()
        assert (entry.run_id, entry.attempts, entry.max_attempts, entry.status) == (
            run.run_id,
            0,
            3,
            "running",
        )
        assert entry.deadline_at == pytest.approx(entry.started_at + 600)
        run.close(0, runner.attempts)
        writer.flush()
        assert journal.runs() == [] and controls.active() == {}

        # The first attempt fails: the row moves to the recovery's id and ends as recovered.
        argv = [sys.executable, flaky, str(tmp_path / "n"), "1"]
        run = CommandRun("backup", argv, attempts=3, bus=bus, controls=controls, clock=clock)
        runner = CommandRunner(argv, operation="backup", announce=run, clock=clock)
        policy = Policy("backup", attempts=3, backoff=NO_JITTER, bus=bus, clock=clock, cancel=run.token)
        policy.call(runner.attempt)
        run.close(0, runner.attempts)
        writer.flush()
        [entry] = journal.runs()
        assert entry.run_id != run.run_id and (entry.status, entry.attempts) == ("recovered", 2)
        assert [a.outcome for a in journal.attempts(entry.run_id)] == ["failed", "succeeded"]


def test_announced_rows_are_matched_to_their_recoveries_by_start_time(db: Path) -> None:
    from bounceback.events import RunEnded, RunStarted

    bus, clock = EventBus(), FakeClock()
    verdict = Classification(ErrorKind.TRANSIENT, "test")
    with _writer(db, bus, clock) as writer:
        for run_id, at in (("c-1", 1000.0), ("c-2", 1010.0)):
            bus.emit(RunStarted("export", at, run_id, 5, None, 4242, ("export.sh",)))
        # Another operation's recovery, and a second attempt, never take an announced row.
        bus.emit(AttemptFailed("other", 1011.0, "r-x", 1, 5, 0.5, "OSError", "no", verdict, True))
        bus.emit(AttemptFailed("export", 1012.0, "r-y", 2, 5, 2.0, "OSError", "no", verdict, True))
        # The recovery that started at 1010 takes c-2, the one of 1000 takes c-1.
        bus.emit(AttemptFailed("export", 1011.0, "r-2", 1, 5, 1.0, "OSError", "no", verdict, True))
        bus.emit(AttemptFailed("export", 1003.0, "r-1", 1, 5, 3.0, "OSError", "no", verdict, True))
        bus.emit(RunEnded("export", 1020.0, "c-1", 1, 20.0, 75))  # moved already: nothing to delete
        writer.flush()
    rows = {r.run_id: r for r in Journal(db).runs()}
    assert set(rows) == {"r-x", "r-y", "r-1", "r-2"}
    assert (rows["r-1"].started_at, rows["r-2"].started_at) == (1000.0, 1010.0)
    assert rows["r-x"].started_at == 1010.5


def test_a_cancel_of_an_announced_command_follows_it_to_its_recovery_id(tmp_path: Path) -> None:
    db = tmp_path / "bounceback.db"
    journal = Journal(db)
    journal.runs()  # opens the home and applies the journal's migrations
    with closing(sqlite3.connect(db)) as conn, conn:
        # The command's first attempt failed: its announced row (ab12-c1) became the recovery's (ab12-7).
        conn.execute(
            "INSERT INTO journal_runs (run_id, operation, started_at, updated_at, attempts, pid, host) "
            "VALUES ('ab12-7', 'backup', 100.0, 101.0, 1, ?, ?)",
            (os.getpid(), HOST),
        )
        conn.execute(
            "INSERT INTO journal_runs (run_id, operation, started_at, updated_at, attempts, pid, host) "
            "VALUES ('cd34-3', 'other', 100.0, 101.0, 1, ?, ?)",
            (os.getpid(), HOST),
        )
    assert journal.current_run_id("ab12-c1") == "ab12-7"  # the same process prefix, still running
    assert journal.current_run_id("cd34-3") == "cd34-3"  # ids that exist are themselves
    assert journal.current_run_id("ef56-c2") == "ef56-c2"  # nothing to follow: unknown stays unknown
    assert journal.request_cancel("ab12-c1", reason="pressed a moment too late")
    assert journal.cancel_request("ab12-7") is not None
    with pytest.raises(ConfigError):
        journal.request_cancel("ef56-c2")
    journal.close()
