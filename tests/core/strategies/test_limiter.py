"""The concurrency limiter (bulkhead): slots, the queue, its timeout, threads, tasks and the Policy chain."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from bounceback import (
    CircuitBreaker,
    CircuitOpenError,
    ConcurrencyLimiter,
    ConcurrencyLimitExceeded,
    ConfigError,
    ErrorKind,
    Policy,
)
from bounceback.classify import classify
from bounceback.events import EventBus, LimitRejected
from bounceback.settings import StaticSettings
from bounceback.testing import FakeClock


def wait_until(check: Callable[[], bool], what: str) -> None:
    """Poll a condition other threads make true (not a timing: the bound only stops a broken test)."""
    give_up = time.monotonic() + 10
    while not check():
        if time.monotonic() > give_up:
            raise AssertionError(f"never became true: {what}")
        time.sleep(0.001)


# -- the rules, one thread -------------------------------------------------------------------------


def test_full_limiter_refuses_with_a_throttled_error_and_an_event() -> None:
    bus = EventBus()
    seen: list[object] = []
    bus.subscribe(seen.append)
    limiter = ConcurrencyLimiter(1, name="reports", bus=bus)
    limiter.acquire()
    with pytest.raises(ConcurrencyLimitExceeded) as info:
        limiter.acquire()
    exc = info.value
    assert (exc.limiter, exc.limit, exc.max_waiting, exc.reason) == ("reports", 1, 0, "full")
    assert "max_in_flight" in str(exc) and "reports" in str(exc)
    assert classify(exc).kind is ErrorKind.THROTTLED
    assert limiter.rejected == 1
    assert [type(e) for e in seen] == [LimitRejected]
    assert seen[0].reason == "full" and seen[0].limiter == "concurrency"  # type: ignore[attr-defined]
    limiter.release()
    assert limiter.in_flight == 0
    with pytest.raises(RuntimeError, match="without a matching acquire"):
        limiter.release()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_in_flight": 0}, "max_in_flight"),
        ({"max_in_flight": True}, "max_in_flight"),
        ({"max_in_flight": 2, "max_waiting": -1}, "max_waiting"),
        ({"max_in_flight": 2, "queue_timeout": -1}, "queue_timeout"),
        ({"max_in_flight": 2, "name": " "}, "name"),
    ],
)
def test_bad_limits_name_the_field(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        ConcurrencyLimiter(**kwargs)  # type: ignore[arg-type]
    assert info.value.field == field


def test_queued_thread_times_out_and_leaves_the_queue() -> None:
    limiter = ConcurrencyLimiter(1, max_waiting=1, queue_timeout=0.01, name="slow")
    limiter.acquire()
    with pytest.raises(ConcurrencyLimitExceeded) as info:
        limiter.acquire()  # nobody releases: the wait runs out
    assert info.value.reason == "queue timeout"
    assert "queue" in str(info.value)
    assert limiter.waiting == 0 and limiter.in_flight == 1
    limiter.release()


# -- real threads ----------------------------------------------------------------------------------


def test_threads_never_exceed_the_limit_and_queued_ones_all_get_a_slot() -> None:
    limiter = ConcurrencyLimiter(3, max_waiting=5, queue_timeout=None)
    go = threading.Event()
    lock = threading.Lock()
    running = peak = done = 0
    errors: list[BaseException] = []

    def worker() -> None:
        nonlocal running, peak, done
        try:
            with limiter:
                with lock:
                    running += 1
                    peak = max(peak, running)
                go.wait()
                with lock:
                    running -= 1
            with lock:
                done += 1
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    wait_until(lambda: limiter.in_flight == 3 and limiter.waiting == 5, "3 in flight, 5 queued")
    with pytest.raises(ConcurrencyLimitExceeded):
        limiter.acquire()  # a ninth finds the queue full too
    go.set()
    for t in threads:
        t.join()
    assert errors == []
    assert done == 8 and peak == 3
    assert limiter.in_flight == 0 and limiter.waiting == 0


def test_policy_threads_pass_the_limiter_and_every_slot_comes_back() -> None:
    limiter = ConcurrencyLimiter(2, max_waiting=10, queue_timeout=None)
    policy = Policy("render", limiter=limiter, attempts=3, clock=FakeClock(), budget=None)
    go = threading.Event()
    results: list[str] = []
    inside = 0
    peak = 0
    lock = threading.Lock()

    def render(i: int) -> str:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        go.wait()
        with lock:
            inside -= 1
        if i % 3 == 0:
            raise ValueError("bad page")  # permanent: the slot must come back on failures too
        return f"page {i}"

    def run(i: int) -> None:
        try:
            results.append(policy.call(render, i))
        except ValueError:
            results.append("failed")

    threads = [threading.Thread(target=run, args=(i,)) for i in range(9)]
    for t in threads:
        t.start()
    wait_until(lambda: limiter.in_flight == 2 and limiter.waiting == 7, "2 in flight, 7 queued")
    go.set()
    for t in threads:
        t.join()
    assert peak == 2
    assert sorted(results).count("failed") == 3 and len(results) == 9
    assert limiter.in_flight == 0


# -- asyncio ---------------------------------------------------------------------------------------


def test_tasks_queue_in_order_and_cancellation_passes_slots_on() -> None:
    async def main() -> None:
        limiter = ConcurrencyLimiter(1, max_waiting=3, queue_timeout=None)
        order: list[int] = []
        release = asyncio.Event()

        async def job(i: int) -> None:
            async with limiter:
                order.append(i)
                await release.wait()

        first = asyncio.create_task(job(0))
        await asyncio.sleep(0)
        queued = [asyncio.create_task(job(i)) for i in (1, 2, 3)]
        await asyncio.sleep(0)
        assert limiter.waiting == 3
        queued[0].cancel()  # leaves the queue without a slot
        await asyncio.sleep(0)
        assert limiter.waiting == 2
        release.set()
        await asyncio.gather(first, *queued[1:])
        assert order == [0, 2, 3]
        assert limiter.in_flight == 0 and limiter.waiting == 0

    asyncio.run(main())


def test_task_queue_timeout_and_cancel_after_grant() -> None:
    async def main() -> None:
        limiter = ConcurrencyLimiter(1, max_waiting=2, queue_timeout=0.01)
        await limiter.acquire_async()
        with pytest.raises(ConcurrencyLimitExceeded) as info:
            await limiter.acquire_async()
        assert info.value.reason == "queue timeout" and limiter.waiting == 0
        # A slot handed to a task that is cancelled before it runs goes to the next in line.
        limiter.queue_timeout = float("inf")
        a = asyncio.create_task(limiter.acquire_async())
        b = asyncio.create_task(limiter.acquire_async())
        await asyncio.sleep(0)
        limiter.release()  # granted to a
        a.cancel()
        with pytest.raises(asyncio.CancelledError):
            await a
        await b  # b got the slot a gave back
        assert limiter.in_flight == 1 and limiter.waiting == 0
        limiter.release()
        assert limiter.in_flight == 0

    asyncio.run(main())


def test_an_async_policy_queues_at_the_limiter_without_blocking_the_loop() -> None:
    async def main() -> None:
        clock = FakeClock()
        limiter = ConcurrencyLimiter(1, max_waiting=5, queue_timeout=None)
        policy = Policy("feed", limiter=limiter, attempts=2, clock=clock, budget=None)
        hold = asyncio.Event()

        async def fetch() -> str:
            await hold.wait()
            return "ok"

        running = asyncio.create_task(policy.acall(fetch))
        await asyncio.sleep(0)
        assert limiter.in_flight == 1
        queued = asyncio.create_task(policy.acall(fetch))  # waits for the slot on the loop
        await asyncio.sleep(0)
        assert limiter.waiting == 1 and not queued.done()
        hold.set()  # the loop was never blocked: the first call can finish and hand its slot on
        assert await running == "ok"
        assert await queued == "ok"
        assert limiter.in_flight == 0 and clock.sleeps == []  # queued, not refused and retried

    asyncio.run(main())


# -- in a Policy -----------------------------------------------------------------------------------


def test_refusal_by_the_breaker_gives_the_slot_back() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker("db", consecutive_failures=1, open_seconds=60, clock=clock)
    limiter = ConcurrencyLimiter(1)
    policy = Policy("db", limiter=limiter, breaker=breaker, attempts=1, clock=clock, budget=None)
    with pytest.raises(ConnectionResetError):
        policy.call(lambda: (_ for _ in ()).throw(ConnectionResetError("down")))
    with pytest.raises(Exception, match="open"):
        policy.call(lambda: "never")
    assert limiter.in_flight == 0


def test_interrupt_inside_the_call_gives_the_slot_back() -> None:
    class Stop(BaseException):
        pass

    limiter = ConcurrencyLimiter(1)
    policy = Policy("job", limiter=limiter, clock=FakeClock())

    def interrupted() -> None:
        raise Stop

    with pytest.raises(Stop):
        policy.call(interrupted)
    assert limiter.in_flight == 0


def test_settings_give_each_operation_one_limiter() -> None:
    clock = FakeClock()
    settings = StaticSettings(
        {"concurrency.max_in_flight": 4, "concurrency.max_waiting": 2, "concurrency.queue_timeout": "250ms"}
    )
    a = Policy("search", settings=settings, clock=clock)
    b = Policy("search", settings=settings, clock=clock)
    other = Policy("orders", settings=settings, clock=clock)
    assert a.limiter is b.limiter and a.limiter is not other.limiter
    assert a.limiter is not None
    assert (a.limiter.max_in_flight, a.limiter.max_waiting, a.limiter.queue_timeout) == (4, 2, 0.25)
    assert Policy("plain", settings=StaticSettings({}), clock=clock).limiter is None  # off by default
    assert a.replace(attempts=2).limiter is a.limiter
    with pytest.raises(ConfigError) as info:
        Policy("x", limiter=3)  # type: ignore[arg-type]
    assert info.value.field == "limiter"


# -- the state machine -----------------------------------------------------------------------------


class LimiterMachine(RuleBasedStateMachine):
    """Tasks take, queue for and give back slots in any order; the limiter agrees with a simple model."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.limiter = ConcurrencyLimiter(2, max_waiting=3, queue_timeout=None)
        self.holding: list[asyncio.Task[None]] = []  # tasks that have a slot, waiting to be told to leave
        self.queued: list[asyncio.Task[None]] = []  # in arrival order
        self.leave: dict[asyncio.Task[None], asyncio.Event] = {}
        self.refused = 0

    def settle(self) -> None:
        for _ in range(5):
            self.loop.run_until_complete(asyncio.sleep(0))

    async def _job(self, done: asyncio.Event) -> None:
        async with self.limiter:
            await done.wait()

    def _promote(self) -> None:
        """The model: slots go to the oldest queued tasks, in order."""
        while self.queued and len(self.holding) < 2:
            self.holding.append(self.queued.pop(0))

    @rule()
    def arrive(self) -> None:
        done = asyncio.Event()
        task = self.loop.create_task(self._job(done))
        self.leave[task] = done
        self.settle()
        if len(self.holding) < 2:
            self.holding.append(task)
        elif len(self.queued) < 3:
            self.queued.append(task)
        else:
            assert task.done() and isinstance(task.exception(), ConcurrencyLimitExceeded)
            self.refused += 1

    @precondition(lambda self: self.holding)
    @rule(which=st.integers(0, 10))
    def finish(self, which: int) -> None:
        task = self.holding.pop(which % len(self.holding))
        self.leave[task].set()
        self.settle()
        assert task.done() and task.exception() is None
        self._promote()

    @precondition(lambda self: self.queued)
    @rule(which=st.integers(0, 10))
    def give_up_waiting(self, which: int) -> None:
        task = self.queued.pop(which % len(self.queued))
        task.cancel()
        self.settle()
        assert task.cancelled()

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.limiter.in_flight == len(self.holding) <= 2
        assert self.limiter.waiting == len(self.queued) <= 3
        assert self.limiter.rejected == self.refused
        for task in self.holding:
            assert not task.done()  # holding a slot, not refused

    def teardown(self) -> None:
        for task in self.holding + self.queued:
            task.cancel()
        self.settle()
        self.loop.close()


TestLimiterMachine = LimiterMachine.TestCase
TestLimiterMachine.settings = hsettings(max_examples=60, stateful_step_count=25, deadline=None)


# -- the chain of gates, any outcomes ----------------------------------------------------------------


class _Interrupted(BaseException):
    """Stands for KeyboardInterrupt / cancellation: an end without an outcome."""


_OUTCOMES = ("ok", "transient", "permanent", "interrupt", "busy")


@given(outcomes=st.lists(st.sampled_from(_OUTCOMES), min_size=1, max_size=25), breaker_on=st.booleans())
@hsettings(max_examples=60, deadline=None)
def test_every_slot_comes_back_whatever_the_outcome(outcomes: list[str], breaker_on: bool) -> None:
    from bounceback import AdaptiveThrottle, RateLimiter, RequestThrottled

    clock = FakeClock()
    limiter = ConcurrencyLimiter(1)
    bucket = RateLimiter(1000, burst=1000, clock=clock)
    breaker = (
        CircuitBreaker("chain", consecutive_failures=3, open_seconds=1, clock=clock) if breaker_on else None
    )
    policy = Policy(
        "chain",
        limiter=limiter,
        rate_limit=bucket,
        throttle=AdaptiveThrottle(name="chain", clock=clock),
        breaker=breaker,
        attempts=2,
        clock=clock,
        budget=None,
    )
    for outcome in outcomes:

        def call(outcome: str = outcome) -> str:
            if outcome == "transient":
                raise ConnectionResetError("reset")
            if outcome == "permanent":
                raise ValueError("bad")
            if outcome == "interrupt":
                raise _Interrupted
            if outcome == "busy":
                # Someone else holds the only slot during the call: a nested call is refused, not queued.
                with pytest.raises((ConcurrencyLimitExceeded, RequestThrottled)):
                    policy.call(lambda: "nested")
            return "ok"

        refused_by_breaker = False
        try:
            policy.call(call)
        except (ConnectionResetError, ValueError, _Interrupted, ConcurrencyLimitExceeded, RequestThrottled):
            pass
        except CircuitOpenError:
            refused_by_breaker = True  # the slot taken before the breaker said no must come back too
        assert breaker_on or not refused_by_breaker
        assert limiter.in_flight == 0 and limiter.waiting == 0
        clock.advance(1)
