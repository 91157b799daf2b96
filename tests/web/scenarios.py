"""Real data for the dashboard tests: breakers, runs and settings written through the library itself.

Each function may run in the test process or, with ``python -m tests.web.scenarios CMD DB ...``, in a
separate process (the dashboard must show what *other* processes write).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bounceback import Backoff, Policy
from bounceback.core.breaker._breaker import CircuitBreaker
from bounceback.events import EventBus
from bounceback.stores.journal._writer import JournalWriter
from bounceback.stores.sqlite._breaker import SqliteBreakerStore
from bounceback.testing import FakeClock

SCRIPT_ERROR = "<script>alert('pwned')</script> upstream said <b>no</b>"


def open_breaker(db: Path, name: str = "payments-db", open_seconds: float = 30.0) -> float:
    """Trip breaker ``name`` on the shared store (real clock); returns the wall time of the write."""
    bus = EventBus()
    with JournalWriter(db, bus=bus), SqliteBreakerStore(db) as store:
        brk = CircuitBreaker(
            name,
            store=store,
            bus=bus,
            timers=False,
            failure_rate=50,
            min_calls=2,
            window=10,
            open_seconds=open_seconds,
            open_jitter=0,  # the page's countdown is then exactly the open time
        )

        def boom() -> None:
            raise ConnectionRefusedError(111, "Connection refused")

        for _ in range(2):
            try:
                brk.call(boom)
            except ConnectionRefusedError:
                pass
        written = time.time()
        assert brk.state.value == "open", brk.state
    return written


def toggle_breaker(db: Path, name: str = "payments-db", times: int = 6, gap: float = 0.3) -> None:
    """Force breaker ``name`` open and closed in turn; print each state and the wall time of its write."""
    with SqliteBreakerStore(db) as store:
        brk = CircuitBreaker(name, store=store, bus=EventBus(), timers=False)
        for i in range(times):
            if i % 2 == 0:
                brk.force_open("forced open by the latency probe")
            else:
                brk.force_close("closed by the latency probe")
            print(json.dumps({"state": brk.state.value, "written": time.time()}), flush=True)
            time.sleep(gap)


def seed_history(db: Path, minutes_ago: float = 12.0) -> None:
    """A few finished runs (recovered and gave up) in the recent past, through Policy and the journal."""
    bus = EventBus()
    clock = FakeClock(wall_start=time.time() - minutes_ago * 60)
    with JournalWriter(db, bus=bus, clock=clock):
        for op, fail_times, attempts in (
            ("fetch-user", 2, 5),
            ("fetch-user", 1, 5),
            ("payments-db", 6, 4),
            ("send-mail", 3, 5),
            ("fetch-user", 9, 3),
        ):
            tries: list[int] = []

            def flaky(tries: list[int] = tries, fail_times: int = fail_times, op: str = op) -> str:
                tries.append(1)
                if len(tries) <= fail_times:
                    if op == "payments-db":
                        raise ConnectionRefusedError(111, "Connection refused to db.internal:5432")
                    if op == "send-mail":
                        raise TimeoutError("SMTP server did not answer in 5 s")
                    raise OSError(SCRIPT_ERROR)
                return "ok"

            backoff = Backoff(initial=4.0, max_delay=60.0, jitter="equal")
            policy = Policy(op, attempts=attempts, backoff=backoff, bus=bus, clock=clock)
            try:
                policy.call(flaky)
            except Exception:
                pass
            clock.advance(97.0)


def running_recovery(db: Path, operation: str = "sync-orders", wait: float = 20.0) -> None:
    """Run a recovery that fails forever with long waits until it is cancelled; print the outcome as JSON."""
    from bounceback.errors import RecoveryCancelled

    bus = EventBus()

    with JournalWriter(db, bus=bus):

        def always() -> None:
            raise ConnectionResetError(104, "Connection reset by peer (orders.example:443)")

        policy = Policy(
            operation,
            attempts=8,
            deadline=600,
            backoff=Backoff("constant", initial=wait, max_delay=wait, jitter="none"),
            bus=bus,
        )
        print(json.dumps({"started": time.time()}), flush=True)
        started = time.monotonic()
        try:
            policy.call(always)
            outcome = "returned"
        except RecoveryCancelled:
            outcome = "cancelled"
        except Exception as exc:
            outcome = type(exc).__name__
        print(
            json.dumps({"outcome": outcome, "after": time.monotonic() - started, "at": time.time()}),
            flush=True,
        )


def parked_ticket(db: Path, operation: str = "read-meter", wait: float = 30.0) -> None:
    """Give up on a dead device, park a ticket and wait for a person; print what happened as JSON.

    The error message carries HTML and script, as a hostile or broken device might send.
    """
    from bounceback.core.policy._manual import ManualRecovery
    from bounceback.stores._tickets import SqliteTickets

    bus = EventBus()
    tries: list[float] = []

    def read_meter() -> str:
        tries.append(time.time())
        if len(tries) <= 2:
            raise ConnectionRefusedError(111, f"Connection refused: meter.local:502 {SCRIPT_ERROR}")
        return "42 kWh"

    with JournalWriter(db, bus=bus), SqliteTickets(db) as store:
        manual = ManualRecovery("park", store=store, wait=wait, poll=0.1, bus=bus)
        policy = Policy(
            operation,
            attempts=2,
            backoff=Backoff("constant", initial=0.05, max_delay=0.05, jitter="none"),
            bus=bus,
            fallback=manual,
        )
        print(json.dumps({"parked": time.time()}), flush=True)
        try:
            value = policy.call(read_meter)
            print(json.dumps({"value": value, "tries": len(tries)}), flush=True)
        except Exception as exc:
            print(json.dumps({"error": type(exc).__name__, "tries": len(tries)}), flush=True)


def follow_setting(db: Path, key: str, operation: str | None = None) -> None:
    """Print the value of ``key`` as JSON each time a running program sees it change (for 30 s at most)."""
    from bounceback.stores import SqliteSettings

    settings = SqliteSettings(db, poll_interval=0.05)
    seen = settings.effective(operation)[key]
    print(json.dumps({"value": seen}), flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        settings.refresh()
        value = settings.effective(operation)[key]
        if value != seen:
            seen = value
            print(json.dumps({"value": value, "at": time.time()}), flush=True)
        time.sleep(0.05)


def closed_with_failures(db: Path, name: str, failures: int) -> None:
    """Breaker ``name`` closed with ``failures`` failed calls in its window, fewer than min_calls (10)."""
    bus = EventBus()
    with SqliteBreakerStore(db) as store:
        brk = CircuitBreaker(
            name, store=store, bus=bus, timers=False, failure_rate=50, min_calls=10, window=20
        )

        def boom() -> None:
            raise ConnectionRefusedError(111, "Connection refused")

        for _ in range(failures):
            try:
                brk.call(boom)
            except ConnectionRefusedError:
                pass
        assert brk.state.value == "closed", brk.state


def force_open(db: Path, name: str) -> None:
    """Force breaker ``name`` open (as a person does)."""
    with SqliteBreakerStore(db) as store:
        CircuitBreaker(name, store=store, bus=EventBus(), timers=False).force_open("forced open")


def second_attempt(db: Path, operation: str) -> None:
    """A run whose first attempt fails at once and whose second hangs; prints when the second starts."""
    bus = EventBus()
    tries: list[int] = []
    with JournalWriter(db, bus=bus):

        def call() -> None:
            tries.append(1)
            if len(tries) == 1:
                raise ConnectionResetError(104, "Connection reset by peer")
            print(json.dumps({"attempt": len(tries), "at": time.time()}), flush=True)
            time.sleep(60)

        backoff = Backoff("constant", initial=0.2, max_delay=0.2, jitter="none")
        Policy(operation, attempts=5, backoff=backoff, bus=bus).call(call)


def cancelled_wait(db: Path, operation: str) -> None:
    """A run cancelled 0.5 s into a planned 20 s wait (its journal keeps the planned delay)."""
    import threading

    from bounceback.core._time import CancelToken
    from bounceback.errors import RecoveryCancelled

    bus = EventBus()
    token = CancelToken()
    with JournalWriter(db, bus=bus):

        def always() -> None:
            threading.Timer(0.5, token.cancel, ("cancelled by the test",)).start()
            raise ConnectionResetError(104, "Connection reset by peer")

        backoff = Backoff("constant", initial=20, max_delay=20, jitter="none")
        try:
            Policy(operation, attempts=5, backoff=backoff, bus=bus, cancel=token).call(always)
        except RecoveryCancelled:
            pass


if __name__ == "__main__":
    command, database, *rest = sys.argv[1:]
    path = Path(database)
    if command == "open-breaker":
        name = rest[0] if rest else "payments-db"
        seconds = float(rest[1]) if len(rest) > 1 else 30.0
        print(json.dumps({"written": open_breaker(path, name, seconds)}), flush=True)
    elif command == "running":
        running_recovery(path, *rest)
    elif command == "follow":
        follow_setting(path, *rest)
    elif command == "toggle":
        toggle_breaker(path, rest[0], int(rest[1]), float(rest[2]))
    elif command == "park":
        parked_ticket(path, *rest)
    elif command == "seed":
        seed_history(path)
    elif command == "closed-with-failures":
        closed_with_failures(path, rest[0], int(rest[1]))
    elif command == "force-open":
        force_open(path, rest[0])
    elif command == "second-attempt":
        second_attempt(path, rest[0])
    elif command == "cancelled-wait":
        cancelled_wait(path, rest[0])
    else:
        raise SystemExit(f"unknown command {command!r}")
