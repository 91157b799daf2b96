"""The home database under the faults of its file system and its neighbours: a read-only mount, a full
disk, another process holding the write lock (or frozen with it), seen by real processes.

Real mounts (``mount --bind`` remounted read-only, a small ``tmpfs``) under the test's temp folder, so the
tests need root, which CI has. What must hold: stored values are read intact; a write that cannot be made
is refused with the true reason (read-only file system, disk full) and nothing half-written; a shared
store is called healthy again only when it can be written; nothing queued is lost silently.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.reliability.conftest import ROOT, Figures, soak_size
from tests.reliability.dbcheck import consistency_problems, snapshot


def _run(
    *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def _worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.reliability.workers", *args],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _end(proc: subprocess.Popen[str]) -> None:
    """Kill ``proc`` if it still runs, reap it and close its pipes."""
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)
    for pipe in (proc.stdin, proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], check=False, capture_output=True, text=True)
    assert done.returncode == 0, f"mount {' '.join(args)}: {done.stderr} (the reliability suite runs as root)"


@contextmanager
def read_only_mount(folder: Path) -> Iterator[Path]:
    """``folder`` bind-mounted onto itself, then remounted read-only; unmounted at the end."""
    _mount("--bind", str(folder), str(folder))
    try:
        _mount("-o", "remount,bind,ro", str(folder))
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@contextmanager
def small_disk(folder: Path, size: str) -> Iterator[Path]:
    """A ``tmpfs`` of ``size`` mounted on ``folder``; unmounted at the end."""
    folder.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(folder))
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` to its last byte; returns the filler file."""
    stat = os.statvfs(folder)
    assert stat.f_blocks * stat.f_frsize <= 64 * 1024 * 1024, f"{folder} is not one of our small disks"
    filler = folder / "filler"
    # Unbuffered writes: a buffered file would fail again (ENOSPC) while flushing at close.
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for size in (65536, 1):  # big blocks, then the last partial block byte by byte
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _prepare(db: Path, *, checkpoint: bool) -> None:
    """A home as running programs leave it: settings, a journal, tickets, a breaker row."""
    from bounceback.stores import SqliteSettings

    with SqliteSettings(db) as settings:
        settings.set("retry.max_attempts", 3, operation="meter")
    used = _run("-m", "tests.reliability.workers", "use", str(db))
    assert used.stdout.strip() == "ok", used.stderr
    if checkpoint:
        close_cleanly(db)


def close_cleanly(db: Path) -> None:
    """As after a clean shutdown: the WAL folded back into the file, no ``-wal`` / ``-shm`` left."""
    import sqlite3

    conn = sqlite3.connect(db)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    for suffix in ("-wal", "-shm"):
        db.with_name(db.name + suffix).unlink(missing_ok=True)


# -- 1. a home on a read-only mount ------------------------------------------------------------------------


@pytest.mark.parametrize("shutdown", ["clean", "after-crash"])
def test_a_home_on_a_read_only_mount_is_read_intact(
    tmp_path: Path, shutdown: str, figures: Callable[[str], Figures]
) -> None:
    """``mount -o remount,bind,ro``: SQLite cannot create ``-shm``; the stored values must still apply."""
    fig = figures("home-read-only-mount")
    folder = tmp_path / "home"
    folder.mkdir()
    db = folder / "bounceback.db"
    _prepare(db, checkpoint=shutdown == "clean")
    if shutdown == "after-crash":
        # The last change sits in the WAL (its writer was SIGKILLed), then the mount goes read-only.
        crash = _run(
            "-c",
            "import os, sys; from bounceback.stores import SqliteSettings; "
            "SqliteSettings(sys.argv[1]).set('retry.initial_delay', 0.25, operation='meter'); "
            "os.kill(os.getpid(), 9)",
            str(db),
        )
        assert crash.returncode == -signal.SIGKILL, crash.stderr
        assert db.with_name(db.name + "-wal").stat().st_size > 0
    before = snapshot(db)
    files_before = sorted(p.name for p in folder.iterdir())
    env = {"BOUNCEBACK_HOME": str(folder)}
    with read_only_mount(folder):
        seen = _run("-m", "tests.reliability.workers", "read-only", str(db))
        status = _run("-m", "bounceback", "status", "--json", env=env)
        get = _run("-m", "bounceback", "settings", "get", "retry.max_attempts", "--op", "meter", env=env)
        refused = _run("-m", "bounceback", "settings", "set", "retry.max_attempts", "5", env=env)
        dashboard = _run("-m", "tests.reliability.workers", "snapshot", str(db))
    assert seen.returncode == 0, seen.stderr[-3000:]
    found = json.loads(seen.stdout)
    assert found["effective"] == 3, "stored settings must apply on a read-only mount, not the defaults"
    assert "mounted read-only" in found["set"] and "remount it read-write" in found["set"], found["set"]
    assert found["effective_after"] == 3
    assert found["breaker_results"] == list(range(20))
    assert found["store_unavailable"] == 1
    assert found["policy"] == "ok"
    assert found["park"].startswith("RecoveryRequired"), found["park"]
    if shutdown == "after-crash":
        assert found["initial_delay"] == 0.25, "the change still in the WAL must be seen"
    assert status.returncode == 0, status.stderr[-2000:]
    names = {row["name"] for row in json.loads(status.stdout)["operations"]}
    assert {"meter", "after-crash"} <= names
    assert get.returncode == 0 and "3" in get.stdout, get.stdout + get.stderr
    assert "using the built-in defaults" not in get.stderr + status.stderr
    assert refused.returncode != 0 and "mounted read-only" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert dashboard.returncode == 0, dashboard.stderr[-2000:]
    assert "meter" in json.loads(dashboard.stdout)["operations"]
    assert snapshot(db) == before
    assert sorted(p.name for p in folder.iterdir()) == files_before, "nothing may be left beside the file"
    fig.tries += 20 + 4 + 4
    fig.result = (
        "a WAL home checkpointed cleanly, and one with its last change still in the WAL, on a bind mount "
        "remounted read-only: stored values applied (not the defaults), status, settings get and the "
        "dashboard snapshot read them; every write refused as 'mounted read-only' with the fix; calls "
        "unaffected; file unchanged"
    )


# -- 2. another process holding the write lock --------------------------------------------------------------


def _hold(db: Path, mode: str = "EXCLUSIVE") -> subprocess.Popen[str]:
    proc = _worker("hold-lock", str(db), mode)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("locked"), line + (proc.stderr.read() if proc.stderr else "")
    return proc


def _release(proc: subprocess.Popen[str]) -> float:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    line = proc.stdout.readline()
    assert line.startswith("released"), line
    proc.wait(10)
    return float(line.split()[1])


def test_a_held_write_lock_keeps_a_fail_closed_fleet_closed(
    home: Path, figures: Callable[[str], Figures]
) -> None:
    """``BEGIN EXCLUSIVE`` held elsewhere: the store is unavailable until it can be written again.

    Each process reports the store unavailable once and recovered once, after the release; in fail-closed
    mode no call goes through between a process learning the store is unavailable and the lock's release.
    """
    fig = figures("sqlite-write-lock-fleet")
    db = home / "bounceback.db"
    _prepare(db, checkpoint=False)
    count = soak_size(4, 8)
    hold_seconds = soak_size(2, 10)
    workers = [_worker("fail-closed", str(db)) for _ in range(count)]
    holder: subprocess.Popen[str] | None = None
    try:
        for proc in workers:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "ready", line + (proc.stderr.read() if proc.stderr else "")
        holder = _hold(db)
        time.sleep(hold_seconds)  # the fault's duration: the fleet keeps calling meanwhile
        released = _release(holder)
        time.sleep(1.5)  # long enough for every worker to find the store again (store_retry 0.2 s)
        reports = []
        for proc in workers:
            out, err = proc.communicate("stop\n", timeout=30)
            assert proc.returncode == 0, err[-3000:]
            reports.append(json.loads(out))
    finally:
        for proc in [*workers, *([holder] if holder else [])]:
            _end(proc)
    leaked = 0
    refused = 0
    for report in reports:
        kinds = [kind for kind, _at in report["events"]]
        assert kinds == ["unavailable", "recovered"], report["events"]
        down_at, back_at = (at for _kind, at in report["events"])
        assert back_at >= released, "the store was called healthy while the lock was still held"
        leaked += sum(1 for at in report["admitted"] if down_at < at < released)
        refused += report["refused"]
    assert leaked == 0, (
        f"{leaked} calls went through a fail-closed breaker while its store could not be written"
    )
    assert refused > 0
    assert consistency_problems(db) == []
    fig.tries = sum(len(r["admitted"]) + r["refused"] for r in reports)
    fig.result = (
        f"{count} processes with fail-closed breakers while another held BEGIN EXCLUSIVE for {hold_seconds} s: "
        f"each reported the store unavailable once and recovered once, after the release; 0 calls let through "
        f"while the store could not be written ({refused} refused)"
    )
    fig.note(lock_fleet_processes=count, lock_fleet_refused=refused)


# -- 4. the disk fills during a run that then exits normally -----------------------------------------------

FAST = {"retry.initial_delay": 0.01, "retry.max_delay": 0.05, "retry.jitter": "none", "manual.mode": "raise"}

_FILL_THEN_FAIL = """
import os, sys
marker, folder = sys.argv[1], sys.argv[2]
if os.path.exists(marker):
    sys.exit(0)
if os.statvfs(folder).f_blocks * os.statvfs(folder).f_frsize > 64 * 1024 * 1024:
    sys.exit("refusing to fill a file system larger than 64 MB: " + folder)
open(marker, "w").close()
fd = os.open(os.path.join(folder, "filler"), os.O_WRONLY | os.O_CREAT)
for size in (65536, 1):
    try:
        while True:
            os.write(fd, b"\\0" * size)
    except OSError:
        pass
os.close(fd)
sys.exit(75)
"""


def _configure(db: Path) -> None:
    from bounceback.stores import SqliteSettings

    with SqliteSettings(db) as settings:
        for key, value in FAST.items():
            settings.set(key, value)


def test_a_disk_filling_during_a_run_gets_a_final_word(
    tmp_path: Path, figures: Callable[[str], Figures]
) -> None:
    """The command fills the disk on its first attempt; the run recovers and exits 0; the journal cannot
    take its events, and the process says so before it ends, naming the run."""
    fig = figures("disk-full-run")
    runs = soak_size(2, 5)
    lost_runs = 0
    with small_disk(tmp_path / "disk", "3m") as disk:
        home = disk / "home"
        db = home / "bounceback.db"
        _configure(db)
        warm = _run("-m", "bounceback", "--home", str(home), "run", "--op", "warm", "--", "true")
        assert warm.returncode == 0, warm.stderr
        for i in range(runs):
            marker = tmp_path / f"marker-{i}"
            done = _run(
                "-m", "bounceback", "--home", str(home), "run", "--op", f"sync-{i}", "--",
                sys.executable, "-c", _FILL_THEN_FAIL, str(marker), str(disk),
            )  # fmt: skip
            assert done.returncode == 0, done.stderr[-3000:]
            assert "recovered after 2 attempts" in done.stderr
            assert "NOT written" in done.stderr and f"sync-{i}: run " in done.stderr, done.stderr[-3000:]
            assert "the disk is full" in done.stderr, done.stderr[-3000:]
            assert "Traceback" not in done.stderr
            lost_runs += 1
            (disk / "filler").unlink()
        # Space back: the database is whole and takes the next run's journal.
        assert consistency_problems(db) == []
        flaky = str(ROOT / "tests" / "flaky_command.py")
        after = _run("-m", "bounceback", "--home", str(home), "run", "--op", "after", "--",
                     sys.executable, flaky, str(tmp_path / "counter"), "1")  # fmt: skip
        assert after.returncode == 0 and "NOT written" not in after.stderr, after.stderr[-2000:]
        status = _run("-m", "bounceback", "--home", str(home), "status", "--json")
        names = {row["name"]: row for row in json.loads(status.stdout)["operations"]}
        assert names["after"]["recovered"] == 1
    fig.tries = runs + 1
    fig.result = (
        f"{runs} runs whose command filled a 3 MB tmpfs holding the home, then recovered and exited 0: each "
        "ended with an error naming the run and operation whose journal events were not written and why "
        "('the disk is full'); with space back the database was whole and journaled the next run"
    )
    fig.note(disk_full_runs_reported=lost_runs)


# -- 5. a disk filled while the home is closed --------------------------------------------------------------


def test_a_full_disk_says_disk_full_reads_on_and_leaves_nothing_behind(
    tmp_path: Path, figures: Callable[[str], Figures]
) -> None:
    fig = figures("disk-full-closed-home")
    with small_disk(tmp_path / "disk", "2m") as disk:
        home = disk / "home"
        db = home / "bounceback.db"
        _configure(db)
        _prepare(db, checkpoint=True)
        before = snapshot(db)
        close_cleanly(db)
        files = sorted(p.name for p in home.iterdir())
        assert files == ["bounceback.db"]
        filler = fill(disk)
        env = {"BOUNCEBACK_HOME": str(home)}
        seen = _run("-m", "tests.reliability.workers", "read-only", str(db))
        status = _run("-m", "bounceback", "status", "--json", env=env)
        get = _run("-m", "bounceback", "settings", "get", "retry.max_attempts", "--op", "meter", env=env)
        refused = _run("-m", "bounceback", "settings", "set", "retry.max_attempts", "5", env=env)
        left = sorted(p.name for p in home.iterdir())
        filler.unlink()
        assert seen.returncode == 0, seen.stderr[-3000:]
        found = json.loads(seen.stdout)
        assert found["effective"] == 3
        assert "the disk is full" in found["set"] and "free some space" in found["set"], found["set"]
        assert found["breaker_results"] == list(range(20)) and found["policy"] == "ok"
        assert status.returncode == 0, status.stderr[-2000:]
        assert get.returncode == 0 and get.stdout.strip() == "3", get.stdout + get.stderr
        assert refused.returncode == 2 and "the disk is full" in refused.stderr, refused.stderr
        assert "disk I/O error: the file" not in refused.stderr + status.stderr
        assert left == files, f"a failed open left files behind: {sorted(set(left) - set(files))}"
        assert snapshot(db) == before
        # Space back: everything writes again, the database whole.
        again = _run("-m", "bounceback", "settings", "set", "retry.max_attempts", "5", env=env)
        assert again.returncode == 0, again.stderr
        assert consistency_problems(db) == []
    fig.tries = 20 + 4 + 4 + 1
    fig.result = (
        "a 2 MB tmpfs filled to its last byte while the home was closed: stored values still applied and "
        "status / settings get read them; every write refused as 'the disk is full ... free some space' "
        "(not 'disk I/O error'); no -shm / -wal stub left beside the file; file unchanged; with space back "
        "writes worked again"
    )


# -- new: the process holding the write lock is frozen (SIGSTOP) ---------------------------------------------


class Flaky(ConnectionError):
    pass


def test_a_frozen_lock_holder_is_named_and_loses_nothing(
    home: Path, figures: Callable[[str], Figures]
) -> None:
    """A process SIGSTOPped inside its write transaction holds the lock until it is resumed: refusals name
    it (pid, command, "stopped", how to resume it), reads go on, nothing queued meanwhile is lost."""
    from bounceback import Backoff, CircuitBreaker, Policy
    from bounceback.core._events import StoreRecovered, StoreUnavailable
    from bounceback.events import EventBus
    from bounceback.stores import SqliteBreakerStore
    from bounceback.stores.journal._journal import Journal
    from bounceback.stores.journal._writer import JournalWriter
    from bounceback.testing import FakeClock, RecordingSink

    fig = figures("sqlite-lock-holder-sigstop")
    db = home / "bounceback.db"
    _prepare(db, checkpoint=False)
    before = snapshot(db, skip=("reliability_scratch",))
    holder = _hold(db)
    runs = soak_size(30, 300)
    try:
        os.kill(holder.pid, signal.SIGSTOP)
        refused = _run("-m", "bounceback", "--home", str(home), "--timeout", "0.2",
                       "settings", "set", "retry.max_attempts", "8", "--op", "meter")  # fmt: skip
        assert refused.returncode == 2, refused.stderr
        assert f"pid {holder.pid}" in refused.stderr and "stopped by a signal" in refused.stderr, (
            refused.stderr
        )
        assert f"kill -CONT {holder.pid}" in refused.stderr
        read = _run(
            "-m", "bounceback", "--home", str(home), "settings", "get", "retry.max_attempts", "--op", "meter"
        )
        assert read.returncode == 0 and read.stdout.strip() == "3", read.stderr

        clock, bus = FakeClock(), EventBus()
        sink = RecordingSink(bus)
        breaker = CircuitBreaker(
            "frozen-db", store=SqliteBreakerStore(db, timeout=0.05), clock=clock, bus=bus, window=10,
            min_calls=10, store_retry_seconds=1,
        )  # fmt: skip
        results = []
        for i in range(20):
            results.append(breaker.call(lambda i=i: i))
            clock.advance(0.5)  # the store is asked again every second: it must stay unavailable
        assert results == list(range(20))
        assert len(sink.of(StoreUnavailable)) == 1 and sink.of(StoreRecovered) == []

        writer = JournalWriter(db, bus=bus, clock=clock, timeout=0.05, flush_interval=3600).start()
        try:
            for i in range(runs):
                left = [1]

                def flaky(left: list[int] = left) -> int:
                    if left[0]:
                        left[0] -= 1
                        raise Flaky("reset by peer")
                    return 1

                # No retry budget: every run must retry once, however many runs the test makes in no time.
                Policy(f"frozen-{i % 3}", attempts=2, backoff=Backoff(initial=0.01, jitter="none"),
                       budget=None, clock=clock, bus=bus).call(flaky)  # fmt: skip
            assert writer.flush() == 0 and writer.queued >= runs
            os.kill(holder.pid, signal.SIGCONT)
            _release(holder)
            assert writer.flush() > 0 and writer.queued == 0
        finally:
            writer.close()
        assert writer.lost == 0
        clock.advance(1)
        breaker.call(lambda: None)
        assert len(sink.of(StoreRecovered)) == 1
    finally:
        if holder.poll() is None:
            os.kill(holder.pid, signal.SIGCONT)
        _end(holder)
    journal = Journal(db)
    found = [r for r in journal.runs(limit=None) if r.operation.startswith("frozen-")]
    journal.close()
    assert len(found) == runs and all(r.status == "recovered" for r in found)
    after = snapshot(db, skip=("reliability_scratch",))
    assert after["settings_values"] == before["settings_values"]
    assert after["settings_history"] == before["settings_history"]
    assert consistency_problems(db) == []
    fig.tries = 2 + 20 + runs
    fig.result = (
        "a process SIGSTOPped inside BEGIN EXCLUSIVE: settings set refused naming its pid, command, 'stopped' "
        f"and kill -CONT; reads went on; a breaker stayed on local state (unavailable once, never falsely "
        f"recovered) and resynchronised after SIGCONT; {runs} recoveries queued meanwhile all journaled"
    )


# -- new: ENOSPC in the middle of journal writes and WAL checkpoints -----------------------------------------


def test_enospc_mid_write_and_mid_checkpoint_loses_nothing_queued(
    tmp_path: Path, figures: Callable[[str], Figures]
) -> None:
    """The journal grows on a nearly full disk while another connection checkpoints the WAL after each
    batch: appends to the WAL and checkpoints into the file meet ENOSPC at some point. Nothing committed
    is lost or corrupted; what could not be written stays queued and is written once space is back."""
    import sqlite3

    from bounceback import Backoff, Policy
    from bounceback.events import EventBus
    from bounceback.stores.journal._journal import Journal
    from bounceback.stores.journal._writer import JournalWriter
    from bounceback.testing import FakeClock

    fig = figures("disk-full-mid-write")
    batches = soak_size(60, 300)
    size_mb = soak_size(6, 32)  # room for every batch once the filler is gone
    with small_disk(tmp_path / "disk", f"{size_mb}m") as disk:
        home = disk / "home"
        db = home / "bounceback.db"
        _configure(db)
        _prepare(db, checkpoint=True)
        filler = fill(disk)
        os.truncate(filler, max(0, filler.stat().st_size - 700 * 1024))  # leave ~700 kB
        clock, bus = FakeClock(), EventBus()
        writer = JournalWriter(db, bus=bus, clock=clock, timeout=0.2, flush_interval=3600).start()
        checkpointer = sqlite3.connect(db, isolation_level=None, timeout=0.2)
        refused_flushes = refused_checkpoints = made = 0
        try:
            for batch in range(batches):
                for i in range(20):
                    left = [1]

                    def flaky(left: list[int] = left) -> int:
                        if left[0]:
                            left[0] -= 1
                            raise ConnectionError("reset by peer " + "x" * 200)
                        return 1

                    Policy(f"grow-{(batch * 20 + i) % 7}", attempts=2, backoff=Backoff(initial=0.01, jitter="none"),
                           budget=None, clock=clock, bus=bus).call(flaky)  # fmt: skip
                    made += 1
                if writer.flush() == 0:
                    refused_flushes += 1
                try:
                    checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                except sqlite3.OperationalError as exc:
                    assert "full" in str(exc).lower() or "i/o" in str(exc).lower(), exc  # noqa: PT017
                    refused_checkpoints += 1
                check = checkpointer.execute("PRAGMA quick_check").fetchone()[0]
                assert check == "ok", f"after batch {batch}: {check}"
            assert refused_flushes + refused_checkpoints > 0, (
                "the disk never filled: make the test disk smaller"
            )
            assert writer.queued > 0
            filler.unlink()  # space back
            assert writer.flush() > 0 and writer.queued == 0
            checkpointer.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        finally:
            checkpointer.close()
            writer.close()
        assert writer.lost == 0 and writer.dropped == 0
        journal = Journal(db)
        found = [r for r in journal.runs(limit=None) if r.operation.startswith("grow-")]
        journal.close()
        assert len(found) == made and all(r.status == "recovered" for r in found)
        assert consistency_problems(db) == []
    fig.tries = made + batches
    fig.result = (
        f"{made} recoveries journaled in {batches} batches on a {size_mb} MB tmpfs left with 700 kB, a WAL checkpoint "
        f"after each: {refused_flushes} batch writes and {refused_checkpoints} checkpoints met ENOSPC; "
        "quick_check ok after every batch; every queued event written once space was back"
    )
    fig.note(enospc_flushes=refused_flushes, enospc_checkpoints=refused_checkpoints)
