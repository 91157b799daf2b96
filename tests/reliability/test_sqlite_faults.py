"""The home database under faults: held by another process, made read-only, and its writers SIGKILLed.

Real files, real processes. What must hold: calls keep their own results; settings keep their last good
values; a write that cannot be made is refused with a clear error and changes nothing; what was queued is
written once the database is free (nothing lost); after a crash every table is consistent, row by row.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from bounceback import Backoff, CircuitBreaker, Policy, StoreError
from bounceback.core._events import StoreRecovered, StoreUnavailable
from bounceback.events import EventBus
from bounceback.stores import SqliteBreakerStore, SqliteSettings
from bounceback.stores.journal._journal import Journal
from bounceback.stores.journal._writer import JournalWriter
from bounceback.testing import FakeClock, RecordingSink
from tests.reliability.conftest import ROOT, Figures, soak_size
from tests.reliability.dbcheck import consistency_problems, snapshot

QUICK = Backoff(initial=0.01, jitter="none")


def _worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.workers", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _prepare(db: Path) -> None:
    """A home with stored settings, a journal and a breaker row, as a running program leaves it."""
    with SqliteSettings(db) as settings:
        settings.set("retry.max_attempts", 3, operation="meter")
    run = subprocess.run(
        [sys.executable, "-m", "tests.reliability.workers", "use", str(db)],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.stdout.strip() == "ok", run.stderr


@pytest.fixture
def held(home: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    db = home / "bounceback.db"
    _prepare(db)
    with _worker("hold-lock", str(db)) as proc:
        assert proc.stdout is not None and proc.stdout.readline().startswith("locked")
        try:
            yield db, proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def _release(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().startswith("released")


class Flaky(ConnectionError):
    pass


def test_a_long_write_transaction_elsewhere_loses_nothing(
    held: tuple[Path, subprocess.Popen[str]], figures: Callable[[str], Figures]
) -> None:
    fig = figures("sqlite-long-write-lock")
    db, holder = held
    clock, bus = FakeClock(), EventBus()
    sink = RecordingSink(bus)
    settings = SqliteSettings(db, timeout=0.2, bus=bus)
    before = snapshot(db, skip=("reliability_scratch",))
    # Reads go on: WAL readers do not wait for a writer.
    assert settings.effective("meter")["retry.max_attempts"] == 3
    started = time.monotonic()
    with pytest.raises(StoreError, match="locked") as refused:
        settings.set("retry.max_attempts", 8, operation="meter")
    assert "try again" in str(refused.value)
    assert time.monotonic() - started < 3
    assert settings.effective("meter")["retry.max_attempts"] == 3

    breaker = CircuitBreaker(
        "held-db", store=SqliteBreakerStore(db, timeout=0.1), clock=clock, bus=bus, window=10, min_calls=10
    )
    results = [breaker.call(lambda i=i: i) for i in range(20)]
    assert results == list(range(20))
    assert len(sink.of(StoreUnavailable)) == 1

    runs = soak_size(50, 500)
    writer = JournalWriter(db, bus=bus, clock=clock, timeout=0.1, flush_interval=0.01).start()
    try:
        for i in range(runs):
            left = [1]

            def flaky(left: list[int] = left) -> int:
                if left[0]:
                    left[0] -= 1
                    raise Flaky("reset by peer")
                return 1

            Policy(f"held-{i % 5}", attempts=3, backoff=QUICK, clock=clock, bus=bus).call(flaky)
        assert writer.flush() == 0  # locked: kept for later, not dropped
        assert writer.queued >= runs
        _release(holder)
        # Written on the next flush now that the lock is gone (bounded wait for the writer thread).
        deadline = time.monotonic() + 10
        while writer.queued:
            writer.flush()
            assert time.monotonic() < deadline
    finally:
        writer.close()
    journal = Journal(db)
    recovered = [r for r in journal.runs(limit=None) if r.operation.startswith("held-")]
    assert len(recovered) == runs and all(r.status == "recovered" for r in recovered)
    journal.close()

    clock.advance(10)  # past store_retry_seconds: the breaker looks for its store again
    breaker.call(lambda: None)
    assert len(sink.of(StoreRecovered)) == 1
    after = snapshot(db, skip=("reliability_scratch",))
    # The refused setting is not there; the other tables only gained what was queued.
    assert after["settings_history"] == before["settings_history"]
    assert after["settings_values"] == before["settings_values"]
    assert consistency_problems(db) == []
    fig.tries = 1 + 20 + runs
    fig.result = (
        f"reads kept last values; set refused ('locked ... try again') and not stored; breaker ran locally "
        f"and resynchronised; {runs} recoveries queued under the lock, all written after it"
    )


@pytest.mark.parametrize("what", ["file", "folder"])  # the database file; the file and its folder
def test_a_read_only_home_keeps_working_and_says_why(
    home: Path, what: str, figures: Callable[[str], Figures]
) -> None:
    fig = figures("home-read-only")
    db = home / "bounceback.db"
    _prepare(db)
    before = snapshot(db)
    # As after a clean shutdown: the last connection to close folds the WAL back and removes -wal/-shm.
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    files = [p for p in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")) if p.exists()]
    for path in files:
        os.chmod(path, 0o444)
    if what == "folder":
        # No -wal / -shm can be created either: SQLite must read the WAL database without them.
        os.chmod(home, 0o555)
    try:
        run = subprocess.run(
            [sys.executable, "-m", "tests.reliability.workers", "read-only", str(db)],
            cwd=ROOT,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.chmod(home, 0o700)
        for path in files:
            os.chmod(path, 0o644)
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout)
    assert seen["file_writable"] is False
    assert seen["effective"] == 3, "stored settings must still apply when the home cannot be written"
    assert "read-only" in seen["set"] and "fix the permissions" in seen["set"]
    assert seen["effective_after"] == 3
    assert seen["breaker_results"] == list(range(20))
    assert seen["store_unavailable"] == 1
    assert seen["policy"] == "ok"
    # A give-up that cannot be parked still reaches the caller as a ticket (not as a store error).
    assert seen["park"].startswith("RecoveryRequired"), seen["park"]
    assert snapshot(db) == before
    fig.tries += 20 + 4
    fig.result = "reads kept stored values, writes refused with a fix, calls unaffected, file unchanged"


def _kill_at_random(db: Path, seed: int) -> int:
    """Run the churn worker, SIGKILL it after a random number of rounds; returns the rounds seen."""
    rng = random.Random(seed)
    target = rng.randint(3, 60)
    ticks = 0
    with _worker("churn", str(db), str(seed)) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        deadline = time.monotonic() + 60
        try:
            while ticks < target and time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    break
                ticks += line.startswith("tick")
            # Kill at a random point inside the next round, not just after a tick was printed.
            time.sleep(rng.random() * 0.01)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(10)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    return ticks


@pytest.mark.soak
def test_sigkill_mid_recovery_leaves_every_table_consistent(
    home: Path, figures: Callable[[str], Figures]
) -> None:
    fig = figures("sigkill-mid-recovery")
    db = home / "bounceback.db"
    kills = soak_size(6, 40)
    rounds = 0
    for i in range(kills):
        rounds += _kill_at_random(db, seed=i)
        problems = consistency_problems(db)
        assert problems == [], f"after kill {i + 1}: {problems}"
        # A new process finds everything usable: settings, breaker, tickets, journal.
        after = subprocess.run(
            [sys.executable, "-m", "tests.reliability.workers", "use", str(db)],
            cwd=ROOT,
            check=False,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert after.stdout.strip() == "ok", after.stderr[-3000:]
        assert consistency_problems(db) == []
    journal = Journal(db)
    abandoned = [r for r in journal.runs(limit=None) if r.status == "abandoned"]
    journal.close()
    fig.tries = kills
    fig.result = (
        f"{kills} SIGKILLs at random points of {rounds} rounds: integrity_check ok, no orphan or half-written "
        f"row, no duplicate ticket, settings equal their history; {len(abandoned)} interrupted runs shown as "
        "abandoned; a new process used every store"
    )
    fig.note(rounds=rounds, abandoned_runs=len(abandoned))


def test_a_journal_gap_past_the_queue_bound_is_counted_and_logged(
    held: tuple[Path, subprocess.Popen[str]], caplog: pytest.LogCaptureFixture
) -> None:
    """Past ``max_queue`` unwritten events the oldest go (memory stays bounded): never silently."""
    db, holder = held
    clock, bus = FakeClock(), EventBus()
    writer = JournalWriter(db, bus=bus, clock=clock, timeout=0.05, flush_interval=3600, max_queue=50).start()
    try:
        for i in range(40):  # 3 events each (failed attempt, wait, recovered): 120 events for 50 places
            left = [1]

            def flaky(left: list[int] = left) -> int:
                if left[0]:
                    left[0] -= 1
                    raise Flaky("reset by peer")
                return 1

            Policy(f"gap-{i}", attempts=2, backoff=QUICK, clock=clock, bus=bus).call(flaky)
            if i % 10 == 9:
                assert writer.flush() == 0  # still locked
        assert writer.dropped > 0
        assert any("dropping the oldest" in r.getMessage() for r in caplog.records)
        _release(holder)
        written = writer.flush()
        assert written == 50 and written + writer.dropped == 120
    finally:
        writer.close()
