"""Processes the fault tests start, kill and inspect: ``python -m tests.reliability.workers <command> ...``.

``hold-lock DB [IMMEDIATE|EXCLUSIVE]``
    Open the database, take its write lock (``BEGIN IMMEDIATE``, a row written), print ``locked <time>``,
    and keep the transaction open until a line arrives on stdin (or 60 s pass); then roll back and print
    ``released <time>`` (the wall time just before the rollback).
``churn DB SEED``
    Do everything bounceback persists, over and over, printing ``tick N`` after each round: recoveries
    journalled by a JournalWriter, a give-up parked as a ticket (a quarter of them resolved), settings
    written, a breaker on the SQLite store recording outcomes and opening. Meant to be SIGKILLed.
``read-only DB``
    Drop root's file-permission override, then use every part against a home it may not write and print
    what happened, as JSON.
``fail-closed DB``
    A fail-closed breaker on the SQLite store, called every few milliseconds (one call in ten fails) until
    a line arrives on stdin; prints ``ready`` after its first 50 calls, then at the end, as JSON: the wall
    times of the calls it let through, and of its StoreUnavailable / StoreRecovered events.
``snapshot DB``
    Read the home as the dashboard does and print its operations and the problems met, as JSON.
``use DB``
    After a crash: open every store, use each once, and print ``ok`` (exit 0) when all of them work.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import threading
from pathlib import Path

from bounceback import Backoff, CircuitBreaker, CircuitOpenError, Policy, RecoveryRequired
from bounceback.core.policy._manual import ManualRecovery
from bounceback.events import EventBus
from bounceback.stores import SqliteBreakerStore, SqliteSettings
from bounceback.stores._tickets import SqliteTickets
from bounceback.stores.journal._writer import JournalWriter

__all__ = ["SETTING_VALUES", "main"]

SETTING_VALUES = {
    "retry.max_attempts": [2, 3, 4, 5, 7],
    "retry.initial_delay": ["0.1", "0.25", "1", "2s"],
    "breaker.failure_rate": [20, 30, 50, 75],
}
"""The settings ``churn`` writes (valid values only: the crash, not the value, is under test)."""


def hold_lock(db: str, mode: str = "IMMEDIATE") -> None:
    import time

    conn = sqlite3.connect(db, isolation_level=None, timeout=10)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("CREATE TABLE IF NOT EXISTS reliability_scratch (n INTEGER)")
    conn.execute(f"BEGIN {mode}")
    conn.execute("INSERT INTO reliability_scratch VALUES (1)")
    print(f"locked {time.time()!r}", flush=True)
    ready = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), ready.set()), daemon=True).start()
    ready.wait(60)
    released = time.time()  # before the lock goes: nothing can have written before this instant
    conn.execute("ROLLBACK")
    conn.close()
    print(f"released {released!r}", flush=True)


class Flaky(ConnectionError):
    """A transient failure of the churned operation."""


def churn(db: str, seed: int) -> None:
    rng = random.Random(seed)
    bus = EventBus()
    path = Path(db)
    settings = SqliteSettings(path, timeout=5)
    tickets = SqliteTickets(path)
    breaker = CircuitBreaker(
        "churn-db",
        store=SqliteBreakerStore(path),
        window=10,
        min_calls=5,
        open_seconds=0.05,
        half_open_calls=1,
        bus=bus,
        timers=False,
    )
    manual = ManualRecovery("park", store=tickets, bus=bus)
    quick = Backoff(initial=0.0001, max_delay=0.0005, jitter="none")
    with JournalWriter(path, bus=bus, flush_interval=0.005):
        for tick in range(1, 100_000):
            fails = rng.randint(0, 3)
            left = [fails]

            def flaky(left: list[int] = left) -> str:
                if left[0] > 0:
                    left[0] -= 1
                    raise Flaky(f"reset by peer (tick {tick})")
                return "ok"

            policy = Policy(f"churn-{tick % 3}", attempts=3, backoff=quick, bus=bus, fallback=manual)
            try:
                policy.call(flaky)
            except RecoveryRequired as exc:
                if rng.random() < 0.25:
                    tickets.decide(exc.ticket.id, "abort", by="churn")
            key = rng.choice(sorted(SETTING_VALUES))
            settings.set(key, rng.choice(SETTING_VALUES[key]), operation=rng.choice([None, "churn-1"]))
            try:
                breaker.call(lambda: (_ for _ in ()).throw(Flaky("down")) if rng.random() < 0.5 else None)
            except (Flaky, CircuitOpenError):
                pass
            print(f"tick {tick}", flush=True)


def fail_closed(db: str) -> None:
    import json
    import time

    from bounceback.core._events import StoreRecovered, StoreUnavailable
    from bounceback.testing import RecordingSink

    bus = EventBus()
    sink = RecordingSink(bus)
    breaker = CircuitBreaker(
        "fleet-db",
        store=SqliteBreakerStore(Path(db), timeout=0.05),
        store_unavailable="fail-closed",
        store_retry_seconds=0.2,
        sync_seconds=0.1,
        min_calls=50,
        window=100,
        bus=bus,
        timers=False,
    )
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.readline(), stop.set()), daemon=True).start()
    admitted: list[float] = []
    refused = 0
    n = 0

    def work() -> None:
        admitted.append(time.time())
        if n % 10 == 0:
            raise Flaky("one in ten fails")

    while not stop.is_set():
        n += 1
        try:
            breaker.call(work)
        except Flaky:
            pass
        except CircuitOpenError:
            refused += 1
        if n == 50:
            print("ready", flush=True)
        stop.wait(0.003)  # pacing between calls (a steady load), not a backoff
    events = [("unavailable", e.at) for e in sink.of(StoreUnavailable)]
    events += [("recovered", e.at) for e in sink.of(StoreRecovered)]
    print(
        json.dumps({"admitted": admitted, "refused": refused, "events": sorted(events, key=lambda e: e[1])})
    )


def use(db: str) -> None:
    path = Path(db)
    bus = EventBus()
    with SqliteSettings(path, timeout=5) as settings:
        settings.set("retry.max_attempts", 6, operation="after-crash")
        assert settings.effective("after-crash")["retry.max_attempts"] == 6
    breaker = CircuitBreaker(
        "churn-db", store=SqliteBreakerStore(path), bus=bus, open_seconds=0.05, timers=False
    )
    try:
        breaker.call(lambda: None)
    except CircuitOpenError:
        pass  # it may have been left open; refusing is a sane answer, a crash is not
    tickets = SqliteTickets(path)
    for ticket in tickets.list(status="open", limit=5):
        tickets.decide(ticket.id, "abort", by="after-crash")
    with JournalWriter(path, bus=bus, flush_interval=0.005) as writer:
        tries = [0]

        def once() -> None:
            tries[0] += 1
            if tries[0] == 1:
                raise Flaky("after the crash")

        Policy("after-crash", attempts=2, backoff=Backoff(initial=0.0001, jitter="none"), bus=bus).call(once)
        writer.flush()
    print("ok", flush=True)


def drop_file_privileges() -> None:
    """Give up root's right to ignore file permissions (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER),
    so a read-only file is read-only for this process even when the tests run as root."""
    import ctypes
    import os

    if os.geteuid() != 0:
        return

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [
            ("effective", ctypes.c_uint32),
            ("permitted", ctypes.c_uint32),
            ("inheritable", ctypes.c_uint32),
        ]

    libc = ctypes.CDLL(None, use_errno=True)
    header, data = Header(0x20080522, 0), (Data * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    for word in data:
        word.effective &= ~0b1110 & 0xFFFFFFFF
        word.permitted &= ~0b1110 & 0xFFFFFFFF
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")


def read_only(db: str) -> None:
    """Run against a home the process may not write; print what each part did, as JSON."""
    import json
    import logging

    from bounceback.core._events import StoreUnavailable
    from bounceback.errors import StoreError
    from bounceback.testing import RecordingSink

    drop_file_privileges()
    logging.basicConfig(level=logging.CRITICAL)
    path = Path(db)
    seen: dict[str, object] = {}
    try:
        open(path, "ab").close()
        seen["file_writable"] = True
    except OSError:  # PermissionError, or "Read-only file system" on a read-only mount
        seen["file_writable"] = False
    bus = EventBus()
    sink = RecordingSink(bus)
    settings = SqliteSettings(path, timeout=0.5, bus=bus)
    seen["effective"] = settings.effective("meter")["retry.max_attempts"]
    seen["initial_delay"] = settings.effective("meter")["retry.initial_delay"]
    try:
        settings.set("retry.max_attempts", 9, operation="meter")
        seen["set"] = "stored"
    except StoreError as exc:
        seen["set"] = str(exc)
    seen["effective_after"] = settings.effective("meter")["retry.max_attempts"]
    breaker = CircuitBreaker("ro-db", store=SqliteBreakerStore(path, timeout=0.2), bus=bus, timers=False)
    results = []
    for i in range(20):
        try:
            results.append(breaker.call(lambda i=i: i))
        except Exception as exc:
            results.append(f"{type(exc).__name__}: {exc}")
    seen["breaker_results"] = results
    seen["store_unavailable"] = len(sink.of(StoreUnavailable))
    try:
        writer = JournalWriter(path, bus=bus, flush_interval=0.01).start()
        seen["journal_start"] = "started"
    except StoreError as exc:
        writer = None
        seen["journal_start"] = str(exc)
    left = [1]

    def flaky() -> str:
        if left[0]:
            left[0] -= 1
            raise Flaky("reset by peer")
        return "ok"

    seen["policy"] = Policy(
        "meter", attempts=3, backoff=Backoff(initial=0.0001, jitter="none"), bus=bus
    ).call(flaky)
    if writer is not None:
        seen["journal_flush"] = writer.flush()
        seen["journal_queued"] = writer.queued
        writer.close()
    tickets = SqliteTickets(path, timeout=0.2)
    manual = ManualRecovery("park", store=tickets, bus=bus)

    def broken() -> None:
        raise Flaky("meter down")

    try:
        Policy("meter", attempts=1, bus=bus, fallback=manual).call(broken)
    except Exception as exc:
        seen["park"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(seen), flush=True)


def dashboard_snapshot(db: str) -> None:
    """What the dashboard would show: operations, breakers and the problems it met, as JSON."""
    import json

    from bounceback.web._collect import Collector

    collector = Collector(Path(db))
    try:
        snap = collector.collect()
    finally:
        collector.close()
    operations = sorted({str(op) for op in snap.settings if op} | {r.operation for r in snap.runs})
    print(json.dumps({"operations": operations, "problems": list(snap.problems)}), flush=True)


def main(argv: list[str]) -> None:
    command, *args = argv
    if command == "hold-lock":
        hold_lock(*args)
    elif command == "churn":
        churn(args[0], int(args[1]))
    elif command == "snapshot":
        dashboard_snapshot(args[0])
    elif command == "fail-closed":
        fail_closed(args[0])
    elif command == "use":
        use(args[0])
    elif command == "read-only":
        read_only(args[0])
    else:
        raise SystemExit(f"unknown command {command!r}: use hold-lock, churn or use")


if __name__ == "__main__":
    main(sys.argv[1:])
