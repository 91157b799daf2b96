"""Multi-process scenarios run against each shared store (SQLite file, Redis server).

Each drives real worker processes (:mod:`tests.stores.shared_workers`) and checks, from the test process,
what the issue asks of a shared breaker: it opens once, exactly ``half_open_calls`` probes run across all
processes, no outcome is lost, and a probe holder killed mid-call frees its permit when its lease ends.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import signal
import time
from typing import Any

import pytest

from bounceback import CircuitOpenError
from bounceback.core.breaker._store import WindowSpec
from tests.stores import shared_workers as w

CTX = multiprocessing.get_context("spawn")
N_OK = 25


def wait_for(predicate: Any, what: str, timeout: float = 30.0) -> None:
    """Poll ``predicate`` (real processes are being waited on) for at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.01)


def _meet(barrier: Any, procs: list[Any], out: Any) -> None:
    """Join the workers at ``barrier``; fail at once (with their tracebacks) if one of them died."""

    def ready() -> bool:
        return barrier.n_waiting == len(procs) or not all(p.is_alive() for p in procs)

    wait_for(ready, "the worker processes to reach the next phase", timeout=w.BARRIER_TIMEOUT)
    if not all(p.is_alive() for p in procs):
        reports = []
        while not out.empty():
            reports.append(out.get())
        pytest.fail(f"a worker process died: {reports}")
    barrier.wait(w.BARRIER_TIMEOUT)


def collect(out: Any, n: int, procs: list[Any]) -> list[Any]:
    """Collect ``n`` reports; fail at once if the workers died without sending them."""
    results: list[Any] = []
    deadline = time.monotonic() + w.BARRIER_TIMEOUT
    while len(results) < n:
        try:
            results.append(out.get(timeout=0.05))
        except queue.Empty:
            if not any(p.is_alive() for p in procs) and out.empty():
                codes = [p.exitcode for p in procs]
                pytest.fail(
                    f"workers ended with exit codes {codes} after sending {len(results)} of {n} reports"
                )
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for worker reports ({len(results)} of {n})")
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0, f"worker exited with {p.exitcode}"
    return results


def run_hammer(kind: str, target: str) -> None:
    """Eight processes on one breaker: opens once, exactly half_open_calls probes, counts add up."""
    cell = CTX.RawValue("d", 0.0)
    clock = w.SharedClock(cell)
    barrier = CTX.Barrier(w.N_WORKERS + 1)
    ran = CTX.Value("i", 0)
    release = CTX.Event()
    out = CTX.Queue()
    procs = [
        CTX.Process(target=w.hammer, args=(kind, target, cell, N_OK, barrier, ran, release, out))
        for _ in range(w.N_WORKERS)
    ]
    for p in procs:
        p.start()
    store = w.make_store(kind, target)
    spec = WindowSpec("count", 100_000)
    try:
        _meet(barrier, procs, out)
        # Phase 1 done: every success of every process is in the one shared window.
        counts = store.counts("hammer", spec, clock.wall())
        assert counts.calls == w.N_WORKERS * N_OK
        assert counts.failures == 0
        _meet(barrier, procs, out)
        _meet(barrier, procs, out)
        # Phase 2 done: the breaker opened exactly once (one version step, closed -> open).
        state = store.load("hammer")
        assert state is not None
        assert (state.state, state.version) == ("open", 1)
        after_failures = store.counts("hammer", spec, clock.wall())
        clock.advance(30.0)  # the open time is over for everyone
        _meet(barrier, procs, out)
        # Phase 3: each process makes one call at once; exactly half_open_calls run, the rest are refused.
        wait_for(lambda: ran.value % 1000 + ran.value // 1000 == w.N_WORKERS, "every process to try a call")
        assert ran.value % 1000 == w.HALF_OPEN_CALLS
        assert store.probes("hammer", clock.wall()) == w.HALF_OPEN_CALLS
        release.set()
        _meet(barrier, procs, out)
        state = store.load("hammer")
        assert state is not None
        # open (1) -> half_open (2) -> closed (3): nobody else moved it in between.
        assert (state.state, state.version) == ("closed", 3)
        results = collect(out, w.N_WORKERS, procs)
    finally:
        release.set()
        for p in procs:
            if p.is_alive():
                p.kill()
    errors = [r["error"] for r in results if "error" in r]
    assert not errors, errors[0]
    # No outcome lost: the window holds exactly what the processes recorded, successes and failures.
    assert after_failures.calls == sum(r["phase2"][0] for r in results)
    assert after_failures.failures == sum(r["phase2"][1] for r in results)
    assert after_failures.failures >= N_OK * w.N_WORKERS  # the rate reached 50%
    assert sum(r["own_opens"] for r in results) == 1
    outcomes = sorted(r["outcome"] for r in results)
    assert outcomes.count("probe") == w.HALF_OPEN_CALLS
    assert outcomes.count("rejected:half_open") == w.N_WORKERS - w.HALF_OPEN_CALLS
    # One probe round for the fleet: the opener drew the jittered open time once, and every process
    # waits for that same moment (not one draw, and one round of probes, per process).
    due = [r["retry_at"] for r in results]
    assert all(at is not None for at in due)
    assert max(due) - min(due) < 1e-3, due
    assert w.WALL0 + 15.0 <= due[0] <= w.WALL0 + 30.0  # 30 s open time, up to half of it taken off


def run_killed_probe(kind: str, target: str) -> None:
    """A probe holder SIGKILLed mid-call keeps its permit until the lease (5 s) ends, then frees it."""
    cell = CTX.RawValue("d", 0.0)
    clock = w.SharedClock(cell)
    store = w.make_store(kind, target)
    brk = w.lease_breaker(store, clock)
    with pytest.raises(ConnectionError):
        brk.call(w._fail)
    assert brk.state.value == "open"
    clock.advance(10.0)  # open time over: the next caller becomes the probe
    holding = CTX.Event()
    proc = CTX.Process(target=w.hold_probe, args=(kind, target, cell, holding))
    proc.start()
    try:
        wait_for(lambda: holding.is_set() or not proc.is_alive(), "the worker to take the probe permit")
        assert holding.is_set(), f"the worker ended with exit code {proc.exitcode} before taking the permit"
        assert proc.pid is not None
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(timeout=30)
        assert proc.exitcode == -signal.SIGKILL
    finally:
        if proc.is_alive():
            proc.kill()
    assert store.probes("lease", clock.wall()) == 1  # the dead process still holds the permit
    with pytest.raises(CircuitOpenError) as refused:
        brk.call(lambda: "probe")
    assert refused.value.state == "half_open"
    clock.advance(4.9)  # not yet: the lease runs 5 s
    with pytest.raises(CircuitOpenError):
        brk.call(lambda: "probe")
    clock.advance(0.2)
    assert brk.call(lambda: "probe") == "probe"  # the lease ran out: the permit is free again
    state = store.load("lease")
    assert state is not None
    assert state.state == "closed"
    assert brk.state.value == "closed"


def run_budget_fleet(kind: str, target: str) -> None:
    """Eight processes spend one retry budget: the fleet gets exactly its allowance, not 8 times it."""
    cell = CTX.RawValue("d", 0.0)
    barrier = CTX.Barrier(w.N_WORKERS)
    out = CTX.Queue()
    procs = [
        CTX.Process(target=w.spend_budget, args=(kind, target, cell, 5, barrier, out))
        for _ in range(w.N_WORKERS)
    ]
    for p in procs:
        p.start()
    try:
        granted = collect(out, w.N_WORKERS, procs)
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    assert all(isinstance(g, int) for g in granted), granted
    # ratio 0, 1 retry per second over 10 s: a floor of 10 retries for the whole fleet.
    assert sum(granted) == 10
