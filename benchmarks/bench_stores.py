"""Shared breaker state: per-call cost on SQLite and on Redis, beside the bare round trip, in one run.

Measures (microseconds per call, best of several repeats) and reports the ratios to the references:

* SQLite (a WAL file in a temporary folder, opened as the home database is): a bare ``SELECT 1``, a bare
  one-row write transaction (``BEGIN IMMEDIATE; UPDATE; COMMIT``), then a successful and a failed call through
  a ``CircuitBreaker`` on ``SqliteBreakerStore``, ``store.record`` alone, and a retry-budget ``try_spend``;
* Redis (a ``redis-server`` this script starts on 127.0.0.1 with a free port): a bare ``PING`` with the same
  client settings, then the same calls on ``RedisBreakerStore`` and ``RedisBudgetLedger``.

It also counts what each breaker call costs in store work: transactions (``BEGIN IMMEDIATE``) per call on
SQLite and commands sent per call on Redis (the budget in shared/DESIGN.md: at most one each).

Run: ``python benchmarks/bench_stores.py`` (``--quick`` for fewer calls). Needs ``redis-server`` on the PATH
(or ``$BOUNCEBACK_REDIS_SERVER``). Only 127.0.0.1 is used.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from bounceback import CircuitBreaker
from bounceback.core.breaker._store import WindowSpec
from bounceback.core.breaker._window import OK
from bounceback.core.retry._budget import RetryBudget
from bounceback.events import EventBus
from bounceback.stores import (
    RedisBreakerStore,
    RedisBudgetLedger,
    SqliteBreakerStore,
    SqliteBudgetLedger,
    connect,
    redis_client,
)


def measure(fn: Callable[[], Any], number: int, repeat: int) -> float:
    """Microseconds per call, best of ``repeat`` runs of ``number`` calls."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number * 1e6


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """A throwaway redis-server on 127.0.0.1 (no persistence); yields its URL."""
    binary = (
        os.environ.get("BOUNCEBACK_REDIS_SERVER")
        or shutil.which("redis-server")
        or shutil.which("valkey-server")
    )
    if not binary:
        sys.exit("bench_stores: no redis-server found; install it or set BOUNCEBACK_REDIS_SERVER")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    args = [
        binary,
        "--bind",
        "127.0.0.1",
        "--port",
        str(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(workdir),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    client = redis_client(url, timeout=0.2)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                sys.exit("bench_stores: redis-server did not start")
            time.sleep(0.01)
    try:
        yield url
    finally:
        client.close()
        proc.terminate()
        proc.wait(timeout=10)


def work() -> int:
    return 1


def failing() -> None:
    raise ConnectionError("down")


def breaker(name: str, store: Any) -> CircuitBreaker:
    # A breaker that never trips here, so every call (success or failure) is admitted and recorded.
    return CircuitBreaker(
        name,
        store=store,
        bus=EventBus(),
        timers=False,
        window=1_000_000,
        failure_rate=100,
        min_calls=1_000_000,
    )


def call_failing(brk: CircuitBreaker) -> Callable[[], None]:
    def run() -> None:
        with suppress(ConnectionError):
            brk.call(failing)

    return run


def budget(name: str, ledger: Any) -> Callable[[], None]:
    # A floor so large the budget never runs out: every try_spend settles and spends.
    b = RetryBudget(0.2, min_per_second=1e6, window=10, name=name, ledger=ledger)

    def run() -> None:
        b.record_call(name)
        b.try_spend(name)

    return run


def sqlite_rows(folder: Path, number: int, repeat: int) -> list[tuple[str, float]]:
    path = folder / "bounceback.db"
    bare = connect(folder / "bare.db", timeout=1.0)
    bare.execute("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, n INTEGER)")
    bare.execute("INSERT OR IGNORE INTO t VALUES (1, 0)")

    def write_txn() -> None:
        bare.execute("BEGIN IMMEDIATE")
        bare.execute("UPDATE t SET n = n + 1 WHERE id = 1")
        bare.execute("COMMIT")

    store = SqliteBreakerStore(path)
    brk = breaker("bench-sqlite", store)
    spec = WindowSpec("count", 100)
    rows = [
        ("sqlite SELECT 1 (bare)", measure(lambda: bare.execute("SELECT 1").fetchone(), number, repeat)),
        ("sqlite write transaction (bare)", measure(write_txn, number, repeat)),
        ("breaker call, success (sqlite store)", measure(lambda: brk.call(work), number, repeat)),
        ("breaker call, failure (sqlite store)", measure(call_failing(brk), number, repeat)),
        (
            "store.record alone (sqlite)",
            measure(lambda: store.record("rec", spec, 0, OK, 1.0), number, repeat),
        ),
        (
            "budget try_spend (sqlite ledger)",
            measure(budget("bench", SqliteBudgetLedger(path)), number, repeat),
        ),
    ]
    bare.close()
    return rows


def sqlite_transactions_per_call(folder: Path, calls: int) -> float:
    store = SqliteBreakerStore(folder / "count.db")
    brk = breaker("bench-count", store)
    brk.call(work)  # opens the database and applies the schema first
    seen: list[str] = []
    store._link._connection().set_trace_callback(seen.append)
    for _ in range(calls):
        brk.call(work)
    return sum(s.strip().upper().startswith("BEGIN") for s in seen) / calls


def redis_rows(url: str, number: int, repeat: int) -> list[tuple[str, float]]:
    client = redis_client(url)
    store = RedisBreakerStore(client=client)
    brk = breaker("bench-redis", store)
    spec = WindowSpec("count", 100)
    return [
        ("redis PING (bare)", measure(client.ping, number, repeat)),
        ("breaker call, success (redis store)", measure(lambda: brk.call(work), number, repeat)),
        ("breaker call, failure (redis store)", measure(call_failing(brk), number, repeat)),
        (
            "store.record alone (redis)",
            measure(lambda: store.record("rec", spec, 0, OK, 1.0), number, repeat),
        ),
        (
            "budget try_spend (redis ledger)",
            measure(budget("bench", RedisBudgetLedger(client=client)), number, repeat),
        ),
    ]


def redis_commands_per_call(url: str, calls: int) -> float:
    """Commands the breaker's client sends per call, seen through MONITOR (script internals excluded)."""
    client = redis_client(url)
    brk = breaker("bench-count", RedisBreakerStore(client=client))
    brk.call(work)  # loads the script first
    watcher, marker = redis_client(url, timeout=5.0), redis_client(url)
    marker.ping()  # connected before watching: its handshake is not counted
    sent = 0
    with watcher.monitor() as monitor:
        for _ in range(calls):
            brk.call(work)
        marker.echo("bench-done")
        while (cmd := monitor.next_command())["command"] != "ECHO bench-done":
            sent += cmd["client_type"] == "tcp"
    return sent / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    opts = parser.parse_args()
    number, repeat = (200, 3) if opts.quick else (2000, 5)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        sqlite = sqlite_rows(folder, number, repeat)
        txns = sqlite_transactions_per_call(folder, 500)
        with redis_server(folder) as url:
            red = redis_rows(url, number, repeat)
            cmds = redis_commands_per_call(url, 500)
    print(f"{'path':44} {'us/call':>9} {'ratio':>7}")
    for title, rows, ref in (("SQLite", sqlite, sqlite[1][1]), ("Redis", red, red[0][1])):
        print(f"-- {title} (ratio to {'the bare write transaction' if title == 'SQLite' else 'PING'})")
        for name, us in rows:
            print(f"{name:44} {us:9.1f} {us / ref:7.2f}")
    print(f"-- per breaker call: {txns:.3f} SQLite transactions, {cmds:.3f} Redis round trips (budget: <= 1)")
    select = sqlite[0][1]
    print(f"-- breaker call on SQLite vs a bare SELECT 1: {sqlite[2][1] / select:.1f}x")


if __name__ == "__main__":
    main()
