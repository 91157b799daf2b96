"""A shared breaker at fleet scale: the call path of a batched Redis breaker, and what it asks of Redis.

In one run, against a ``redis-server`` this script starts on 127.0.0.1:

1. **Success path** (microseconds per call, best of several repeats): a local breaker (the default
   in-memory store), a local breaker on a shared in-memory store (the same per-call path as any shared
   store, without I/O), a Redis breaker batched with the default settings (``breaker_store_from_settings``),
   and the unbatched Redis breaker (one script per call) for reference.
2. **Redis commands per process per second** under load: ``--procs`` processes each call a batched Redis
   breaker as fast as they can for ``--seconds``; the server's ``INFO commandstats`` before and after gives
   the commands clients sent (the commands run inside the Lua scripts, and the benchmark's own INFO,
   excluded).
3. **Trip delay**: the same processes call a dependency that starts failing at one moment; each reports
   when its breaker first refused a call. Reported in flush intervals (``store.flush_seconds``).
4. **The trade-off** (``--tradeoff``): for several ``store.flush_seconds``, the Redis commands per process
   per second (as in 2), and how long after one process opens the fleet's breaker (the transition a trip
   makes) the slowest of the others refuses calls, with the push of state and without it (then it is
   their next flush reply: up to one interval). A longer interval costs fewer commands and, without
   push, a later trip; with push, the trip itself travels at once whatever the interval.
5. **The fleet** (``--fleet``): the issue's 32 processes x 20,000 calls on one breaker against a real
   redis-server, with its checks (every outcome counted once, open fleet-wide within two flush rounds,
   exactly ``half_open_calls`` probes). It is ``tests/stores/test_fleet.py`` at full size
   (``BOUNCEBACK_SOAK=full``), run here because it is too heavy for CI's 2 cores (CI runs 8 x 2,000).

Run: ``python benchmarks/bench_shared.py`` (``--quick`` for a smoke run). Needs ``redis-server``.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_stores import measure, redis_server

from bounceback import CircuitBreaker, CircuitOpenError
from bounceback.core.breaker import MemoryBreakerStore
from bounceback.core.breaker._batched import BatchedBreakerStore
from bounceback.core.settings._layers import defaults
from bounceback.events import EventBus
from bounceback.stores import RedisBreakerStore, breaker_store_from_settings, redis_client

CTX = multiprocessing.get_context("spawn")


def settings(url: str, flush: float | None = None) -> dict[str, Any]:
    values = dict(defaults())
    values.update({"store.backend": "redis", "store.redis_url": url})
    if flush is not None:
        values.update({"store.flush_seconds": flush, "store.staleness": max(1.0, 4 * flush)})
    return values


def quiet_breaker(name: str, store: Any) -> CircuitBreaker:
    return CircuitBreaker(name, store=store, bus=EventBus(), timers=False, window=100, min_calls=10)


def work() -> int:
    return 1


def success_rows(url: str, number: int, repeat: int) -> list[tuple[str, float]]:
    local = quiet_breaker("local", MemoryBreakerStore())
    shared_mem = quiet_breaker("shared-memory", MemoryBreakerStore(shared=True))
    batched_store = breaker_store_from_settings(settings(url))
    batched = quiet_breaker("batched", batched_store)
    direct = quiet_breaker("direct", RedisBreakerStore(client=redis_client(url)))
    rows = [
        ("local breaker (in-memory store, fast path)", measure(lambda: local.call(work), number, repeat)),
        ("local breaker on a shared in-memory store", measure(lambda: shared_mem.call(work), number, repeat)),
        ("Redis breaker, batched (default settings)", measure(lambda: batched.call(work), number, repeat)),
        ("Redis breaker, one script per call", measure(lambda: direct.call(work), number // 10, repeat)),
    ]
    batched_store.close()  # type: ignore[attr-defined]
    return rows


def hammer(url: str, seconds: float, start: Any, out: Any, flush: float | None = None) -> None:
    store = breaker_store_from_settings(settings(url, flush))
    brk = quiet_breaker("fleet-load", store)
    brk.call(work)
    start.wait()
    calls = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for _ in range(100):
            brk.call(work)
        calls += 100
    out.put(calls)
    store.close()  # type: ignore[attr-defined]


# Commands that only the Lua scripts run: INFO commandstats counts them too, but they are no round trip.
_IN_SCRIPTS = {
    "hmget", "hset", "del", "getrange", "setrange", "hdel", "hget", "hincrby", "hgetall", "hlen",
    "hexists", "pexpire", "hincrbyfloat",
}  # fmt: skip


def commandstats(client: Any) -> int:
    """Commands clients sent (EVALSHA, SCRIPT LOAD, HELLO ...), not the commands scripts ran inside."""
    stats = client.info("commandstats")
    return sum(int(v["calls"]) for k, v in stats.items() if k.removeprefix("cmdstat_") not in _IN_SCRIPTS)


def load_row(url: str, procs: int, seconds: float, flush: float | None = None) -> tuple[float, float]:
    """(calls per process per second, Redis commands per process per second)."""
    start, out = CTX.Event(), CTX.Queue()
    workers = [CTX.Process(target=hammer, args=(url, seconds, start, out, flush)) for _ in range(procs)]
    for p in workers:
        p.start()
    time.sleep(4.0)  # let every process import, connect and warm up before counting
    client = redis_client(url, timeout=5.0)
    before = commandstats(client)
    began = time.monotonic()
    start.set()
    calls = sum(out.get(timeout=120) for _ in workers)
    after = commandstats(client) - 1  # our own INFO
    # The flushers run the whole time between the two readings, not only while the callers call.
    elapsed = time.monotonic() - began
    for p in workers:
        p.join(timeout=30)
    sent = after - before
    return calls / procs / seconds, sent / procs / elapsed


def tripper(
    url: str, failing_from: Any, ready: Any, out: Any, flush: float | None = None, name: str = "fleet-trip"
) -> None:
    store = breaker_store_from_settings(settings(url, flush))
    brk = CircuitBreaker(name, store=store, bus=EventBus(), timers=False, window=100, min_calls=20)
    brk.call(work)
    with ready.get_lock():
        ready.value += 1

    def call() -> None:
        if failing_from.value and time.time() >= failing_from.value:
            raise ConnectionError("down")

    while True:
        try:
            brk.call(call)
        except ConnectionError:
            pass
        except CircuitOpenError:
            out.put(time.time())
            break
        time.sleep(0.0002)  # about 3-5k calls a second per process, like a busy service
    store.close()  # type: ignore[attr-defined]


def trip_row(url: str, procs: int, flush: float | None = None, name: str = "fleet-trip") -> list[float]:
    """Seconds from the moment the dependency fails to each process refusing calls."""
    failing_from = CTX.RawValue("d", 0.0)
    ready = CTX.Value("i", 0)
    out = CTX.Queue()
    workers = [
        CTX.Process(target=tripper, args=(url, failing_from, ready, out, flush, name)) for _ in range(procs)
    ]
    for p in workers:
        p.start()
    while ready.value < procs:
        time.sleep(0.05)
    time.sleep(0.5)
    failing_from.value = time.time() + 0.2
    refused = [out.get(timeout=120) for _ in workers]
    for p in workers:
        p.join(timeout=30)
    return sorted(t - failing_from.value for t in refused)


def follower(url: str, name: str, flush: float, push: bool, ready: Any, out: Any) -> None:
    """A process calling a healthy dependency until its breaker refuses (the fleet was opened elsewhere)."""
    store = BatchedBreakerStore(
        RedisBreakerStore(client=redis_client(url)),
        flush_seconds=flush,
        staleness=max(1.0, 4 * flush),
        push=push,
    )
    brk = CircuitBreaker(name, store=store, bus=EventBus(), timers=False, window=100, min_calls=20)
    brk.call(work)
    with ready.get_lock():
        ready.value += 1
    while True:
        try:
            brk.call(work)
        except CircuitOpenError:
            out.put(time.time())
            break
        time.sleep(0.0002)  # about 3-5k calls a second per process, like a busy service
    store.close()


def propagation_row(url: str, procs: int, flush: float, push: bool) -> list[float]:
    """Seconds from one process opening the fleet's breaker to each other process refusing calls."""
    name = f"propagate-{flush:g}-{push}"
    ready, out = CTX.Value("i", 0), CTX.Queue()
    workers = [CTX.Process(target=follower, args=(url, name, flush, push, ready, out)) for _ in range(procs)]
    for p in workers:
        p.start()
    while ready.value < procs:
        time.sleep(0.05)
    time.sleep(0.5)
    opener_store = RedisBreakerStore(client=redis_client(url))
    opener = CircuitBreaker(name, store=opener_store, bus=EventBus(), timers=False)
    began = time.time()
    opener.force_open("the fleet trips")  # what the process that crossed the threshold does: one transition
    refused = [out.get(timeout=120) - began for _ in workers]
    for p in workers:
        p.join(timeout=30)
    opener_store.close()
    return refused


def tradeoff(url: str, procs: int, seconds: float) -> None:
    """Propagation of a trip and Redis commands per process per second for several flush intervals."""
    print(
        f"{'store.flush_seconds':>20} {'open everywhere: push':>22} {'without push':>13} {'Redis cmds/s/proc':>18}"
    )
    for flush in (0.01, 0.05, 0.2, 1.0):
        _, cmds = load_row(url, procs, seconds, flush)
        pushed = propagation_row(url, procs, flush, True)
        polled = propagation_row(url, procs, flush, False)
        print(f"{flush:>20g} {max(pushed) * 1000:>20.1f}ms {max(polled) * 1000:>11.0f}ms {cmds:>18.1f}")
    print(
        "-- the slowest of the processes to refuse after one opened the fleet's breaker; without push that is "
        "up to one flush interval (their next flush reply). Redis commands ~ 1/flush_seconds per busy "
        "breaker (+ 2/staleness per idle one), whatever the call rate"
    )


def fleet() -> None:
    """The issue's 32 x 20,000 fleet run with its checks (tests/stores/test_fleet.py at full size)."""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "BOUNCEBACK_SOAK": "full", "PYTHONPATH": str(root / "src")}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "tests/stores/test_fleet.py", "-k", "redis"],
        cwd=root, env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    took = time.monotonic() - began
    verdict = "all checks passed" if done.returncode == 0 else "FAILED:\n" + done.stdout[-3000:]
    print(
        f"-- fleet: 32 processes x 20,000 calls on one Redis breaker (exactly once, open fleet-wide within "
        f"2 flush rounds, exactly half_open_calls probes): {verdict} in {took:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls (a smoke run)")
    parser.add_argument("--procs", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument(
        "--tradeoff", action="store_true", help="trip delay and Redis load per flush interval"
    )
    parser.add_argument("--fleet", action="store_true", help="the 32 x 20,000 fleet run with its checks")
    opts = parser.parse_args()
    if opts.fleet:
        fleet()
        return
    number, repeat = (2000, 3) if opts.quick else (20000, 5)
    flush = float(defaults()["store.flush_seconds"])
    with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as url:
        rows = success_rows(url, number, repeat)
        per_proc, cmds = load_row(url, opts.procs, 1.0 if opts.quick else opts.seconds)
        trips = trip_row(url, opts.procs)
    local, shared_mem, batched, direct = (us for _, us in rows)
    print(f"{'success path':48} {'us/call':>9} {'vs local':>9}")
    for name, us in rows:
        print(f"{name:48} {us:9.2f} {us / local:9.2f}")
    print(
        f"-- batched Redis vs the same path without I/O (shared in-memory store): {batched / shared_mem:.2f}x"
    )
    print(f"-- batched Redis vs one script per call: {direct / batched:.0f}x faster")
    print(
        f"-- load: {opts.procs} processes, {per_proc:,.0f} calls/s each; Redis commands per process per "
        f"second: {cmds:.1f} (flush_seconds = {flush:g}: budget <= {1 / flush:.0f})"
    )
    intervals = [t / flush for t in trips]
    print(
        f"-- trip delay from the first failure to refusing calls, {opts.procs} processes: median "
        f"{statistics.median(trips) * 1000:.0f} ms, max {max(trips) * 1000:.0f} ms "
        f"({max(intervals):.1f} flush intervals; includes filling min_calls)"
    )

    if opts.tradeoff:
        print("-- the trade-off (a fresh redis-server; one run):")
        with tempfile.TemporaryDirectory() as tmp, redis_server(Path(tmp)) as url:
            tradeoff(url, opts.procs, 1.0 if opts.quick else 2.0)


if __name__ == "__main__":
    main()
