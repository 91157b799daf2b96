"""CircuitBreaker: trip rules, open time, half-open probes, manual control, metrics, events, forms."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta

import pytest

from bounceback import (
    BreakerState,
    BulkheadFull,
    CircuitBreaker,
    CircuitOpenError,
    Classification,
    ConfigError,
    ErrorKind,
)
from bounceback.core.breaker._config import SETTINGS_KEYS
from bounceback.core.classify._rules import DEFAULT_CLASSIFIER
from bounceback.core.settings._schema import SCHEMA
from bounceback.events import (
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerStateChanged,
    CallRejected,
    EventBus,
    registry,
)
from bounceback.testing import FakeClock, RecordingSink

DOWN = Classification(ErrorKind.TRANSIENT, "down")
CALLER = Classification(ErrorKind.PERMANENT, "bad argument")


def make(clock: FakeClock | None = None, **kw: object) -> CircuitBreaker:
    kw.setdefault("bus", EventBus())
    # Exact open times here; the jitter drawn per opening has tests of its own (test_breaker_jitter.py).
    kw.setdefault("open_jitter", 0)
    return CircuitBreaker("test", clock=clock or FakeClock(), **kw)  # type: ignore[arg-type]


def fail(brk: CircuitBreaker, n: int = 1, verdict: Classification = DOWN) -> None:
    for _ in range(n):
        brk.release(brk.acquire(), verdict)


def succeed(brk: CircuitBreaker, n: int = 1) -> None:
    for _ in range(n):
        brk.release(brk.acquire(), None)


def down() -> None:
    raise ConnectionError("connection refused")


# -- trip rules --------------------------------------------------------------------------------------


def test_failure_rate_opens_only_after_min_calls() -> None:
    brk = make(window=10, min_calls=4, failure_rate=50)
    fail(brk, 3)
    assert brk.state is BreakerState.CLOSED  # 3 calls < min_calls: rate not judged yet
    fail(brk, 1)
    assert brk.state is BreakerState.OPEN


def test_success_that_reaches_min_calls_can_trip() -> None:
    # 3 failures of 3 are not judged; the 4th call (a success) makes 3/4 = 75% >= 50%.
    brk = make(window=10, min_calls=4, failure_rate=50)
    fail(brk, 3)
    assert not brk.fast_path  # a success could trip now, so successes must be recorded one by one
    succeed(brk)
    assert brk.state is BreakerState.OPEN


def test_rate_below_threshold_stays_closed() -> None:
    brk = make(window=10, min_calls=10, failure_rate=50)
    succeed(brk, 6)
    fail(brk, 4)
    assert brk.state is BreakerState.CLOSED
    assert brk.metrics().failure_rate == 40.0


def test_count_window_forgets_old_outcomes() -> None:
    brk = make(window=4, min_calls=4, failure_rate=75)
    fail(brk, 2)
    succeed(brk, 4)  # pushes both failures out
    fail(brk, 2)
    m = brk.metrics()
    assert (m.calls, m.failures, m.state) == (4, 2, "closed")


def test_time_window_forgets_after_its_seconds() -> None:
    clock = FakeClock()
    brk = make(clock, window_type="time", window=10, min_calls=3, failure_rate=50)
    fail(brk, 2)
    clock.advance(11)
    fail(brk, 1)
    succeed(brk, 2)
    m = brk.metrics()
    assert (m.calls, m.failures, m.state) == (3, 1, "closed")
    fail(brk, 1)
    assert brk.state is BreakerState.OPEN


def test_consecutive_failures_open_regardless_of_rate() -> None:
    brk = make(window=100, min_calls=100, consecutive_failures=3)
    succeed(brk, 50)
    fail(brk, 2)
    succeed(brk)
    fail(brk, 2)
    assert brk.state is BreakerState.CLOSED
    fail(brk)
    assert brk.state is BreakerState.OPEN
    assert "3 failures in a row" in brk.metrics().last_transitions[-1].reason


def test_fast_path_successes_reset_the_consecutive_run() -> None:
    brk = make(consecutive_failures=2, min_calls=1000)
    fail(brk)
    brk.count_success()  # what the engine does after a success on the fast path
    fail(brk)
    assert brk.state is BreakerState.CLOSED
    fail(brk)
    assert brk.state is BreakerState.OPEN


def test_slow_calls_open_the_breaker() -> None:
    clock = FakeClock()
    brk = make(clock, window=4, min_calls=4, slow_call_rate=50, slow_call_duration=2)
    assert not brk.fast_path  # calls must be timed
    for _ in range(2):
        permit = brk.acquire()
        clock.advance(2.5)
        brk.release(permit, None)
    succeed(brk, 1)
    assert brk.state is BreakerState.CLOSED
    succeed(brk, 1)
    assert brk.state is BreakerState.OPEN
    assert "slow-call rate 50%" in brk.metrics().last_transitions[-1].reason


def test_permanent_errors_do_not_count_by_default() -> None:
    brk = make(window=4, min_calls=2)
    fail(brk, 10, CALLER)
    assert brk.state is BreakerState.CLOSED
    assert brk.metrics().calls == 0


def test_record_permanent_and_is_failure_decide_what_counts() -> None:
    brk = make(window=4, min_calls=2, record_permanent=True)
    fail(brk, 2, CALLER)
    assert brk.state is BreakerState.OPEN
    only_timeouts = make(window=4, min_calls=2, is_failure=lambda c: "timeout" in c.reason)
    fail(only_timeouts, 5, DOWN)
    assert only_timeouts.state is BreakerState.CLOSED
    fail(only_timeouts, 2, Classification(ErrorKind.TRANSIENT, "timeout"))
    assert only_timeouts.state is BreakerState.OPEN


# -- open, half-open, probes --------------------------------------------------------------------------


def test_open_rejects_with_time_to_next_probe() -> None:
    clock = FakeClock()
    brk = make(clock, window=2, min_calls=2, open_seconds=30)
    fail(brk, 2)
    clock.advance(10)
    with pytest.raises(CircuitOpenError) as info:
        brk.acquire()
    err = info.value
    assert (err.breaker, err.state, err.retry_after) == ("test", "open", 20.0)
    assert err.retry_at == clock.wall() + 20
    assert DEFAULT_CLASSIFIER.classify(err).kind is ErrorKind.THROTTLED
    assert brk.metrics().rejected == 1


def test_half_open_admits_exactly_half_open_calls_and_closes_after_all_succeed() -> None:
    clock = FakeClock()
    brk = make(clock, window=2, min_calls=2, open_seconds=5, half_open_calls=3)
    fail(brk, 2)
    clock.advance(5)
    permits = [brk.acquire() for _ in range(3)]
    assert brk.state is BreakerState.HALF_OPEN
    with pytest.raises(CircuitOpenError) as info:
        brk.acquire()
    assert info.value.state == "half_open"
    assert info.value.retry_after == 0.0
    assert brk.metrics().probes_in_flight == 3
    brk.release(permits[0], None)
    brk.release(permits[1], None)
    assert brk.state is BreakerState.HALF_OPEN
    brk.release(permits[2], None)
    assert brk.state is BreakerState.CLOSED
    assert brk.metrics().calls == 0  # a fresh window after closing


def test_failed_probe_reopens_for_longer_up_to_the_cap() -> None:
    clock = FakeClock()
    brk = make(clock, window=2, min_calls=2, open_seconds=10, open_seconds_max=35, half_open_calls=1)
    fail(brk, 2)
    waits = []
    for _ in range(4):
        waits.append(brk.metrics().retry_after)
        clock.advance(waits[-1])
        fail(brk)  # the probe fails
    assert waits == [10, 20, 35, 35]


def test_probes_that_succeed_end_the_open_time_streak() -> None:
    clock = FakeClock()
    brk = make(clock, window=2, min_calls=2, open_seconds=10, half_open_calls=1)
    fail(brk, 2)
    clock.advance(10)
    fail(brk)
    clock.advance(20)
    succeed(brk)
    assert brk.state is BreakerState.CLOSED
    fail(brk, 2)
    assert brk.metrics().retry_after == 10


def test_force_close_keeps_the_streak_but_reset_forgets_it() -> None:
    clock = FakeClock()
    brk = make(clock, window=2, min_calls=2, open_seconds=10, open_seconds_max=300, half_open_calls=1)
    fail(brk, 2)
    brk.force_close()
    fail(brk, 2)
    assert brk.metrics().retry_after == 20
    brk.reset()
    fail(brk, 2)
    assert brk.metrics().retry_after == 10


def test_abandoned_probe_gives_its_permit_back() -> None:
    clock = FakeClock()
    brk = make(clock, window=2, min_calls=2, open_seconds=1, half_open_calls=1)
    fail(brk, 2)
    clock.advance(1)
    permit = brk.acquire()
    with pytest.raises(CircuitOpenError):
        brk.acquire()
    brk.abandon(permit)
    assert brk.state is BreakerState.HALF_OPEN
    succeed(brk)
    assert brk.state is BreakerState.CLOSED


def test_late_outcome_of_an_old_probe_is_ignored() -> None:
    clock = FakeClock()
    brk = make(clock, window=2, min_calls=2, open_seconds=1, half_open_calls=2)
    fail(brk, 2)
    clock.advance(1)
    slow_probe = brk.acquire()
    fail(brk)  # the other probe fails: open again
    clock.advance(2)
    assert brk.state is BreakerState.HALF_OPEN
    brk.release(slow_probe, DOWN)  # belongs to the previous half-open round
    assert brk.state is BreakerState.HALF_OPEN


def test_timer_half_open_moves_on_tick_without_a_call() -> None:
    clock = FakeClock()
    brk = make(clock, window=2, min_calls=2, open_seconds=5, half_open="timer")
    fail(brk, 2)
    assert brk.tick() == 5
    clock.advance(5)
    assert brk.tick() is None
    assert brk.state_name == "half_open"


# -- manual control ----------------------------------------------------------------------------------


def test_forced_open_rejects_without_retry_time_and_is_permanent() -> None:
    brk = make()
    brk.force_open("maintenance window")
    with pytest.raises(CircuitOpenError) as info:
        brk.call(len, "x")
    assert info.value.retry_after is None and info.value.retry_at is None
    assert info.value.state == "forced_open"
    assert DEFAULT_CLASSIFIER.classify(info.value).kind is ErrorKind.PERMANENT
    assert brk.metrics().last_transitions[-1].reason == "maintenance window"


def test_forced_open_does_not_leave_by_itself() -> None:
    clock = FakeClock()
    brk = make(clock, open_seconds=1, half_open="timer")
    brk.force_open()
    clock.advance(1000)
    assert brk.tick() is None
    assert brk.state is BreakerState.FORCED_OPEN


def test_disabled_lets_everything_through_and_counts_nothing() -> None:
    brk = make(window=2, min_calls=2)
    brk.disable()
    for _ in range(5):
        with pytest.raises(ConnectionError):
            brk.call(down)
    assert brk.state is BreakerState.DISABLED
    assert brk.metrics().calls == 0
    brk.force_close()
    assert brk.state is BreakerState.CLOSED


def test_reset_zeroes_counters() -> None:
    brk = make(window=2, min_calls=2)
    fail(brk, 2)
    with pytest.raises(CircuitOpenError):
        brk.acquire()
    brk.reset()
    m = brk.metrics()
    assert (m.state, m.rejected, m.opens, m.calls) == ("closed", 0, 0, 0)


# -- bulkhead ----------------------------------------------------------------------------------------


def test_max_in_flight_refuses_beyond_the_limit_and_frees_on_release() -> None:
    brk = make(max_in_flight=2)
    assert not brk.fast_path
    a, b = brk.acquire(), brk.acquire()
    with pytest.raises(BulkheadFull) as info:
        brk.acquire()
    assert (info.value.breaker, info.value.limit) == ("test", 2)
    assert brk.metrics().in_flight == 2
    brk.release(a, None)
    brk.abandon(b)
    c = brk.acquire()
    brk.release(c, DOWN)
    assert brk.metrics().in_flight == 0


# -- events ------------------------------------------------------------------------------------------


def test_events_for_each_transition_and_rejection() -> None:
    clock = FakeClock()
    bus = EventBus()
    with RecordingSink(bus) as sink:
        brk = make(clock, bus=bus, window=2, min_calls=2, open_seconds=5, half_open_calls=1)
        fail(brk, 2)
        with pytest.raises(CircuitOpenError):
            brk.acquire()
        clock.advance(5)
        succeed(brk)
        brk.disable()
    kinds = [type(e) for e in sink.events]
    assert kinds == [BreakerOpened, CallRejected, BreakerHalfOpened, BreakerClosed, BreakerStateChanged]
    opened = sink.of(BreakerOpened)[0]
    assert (opened.operation, opened.old_state, opened.new_state) == ("test", "closed", "open")
    assert opened.open_until == clock.wall()  # opened at t=0 for 5 s, now t=5
    assert sink.of(CallRejected)[0].retry_at == opened.open_until


def test_no_events_built_when_nobody_listens() -> None:
    bus = EventBus()
    brk = make(bus=bus, window=2, min_calls=2)
    fail(brk, 2)
    assert brk.state is BreakerState.OPEN  # no subscriber; nothing to assert but that it ran


# -- forms -------------------------------------------------------------------------------------------


def test_decorator_with_call_and_async_forms_share_one_path() -> None:
    clock = FakeClock()
    brk = make(clock, window=8, min_calls=8)

    @brk
    def add(a: int, b: int) -> int:
        return a + b

    @brk
    async def aadd(a: int, b: int) -> int:
        return a + b

    assert add(1, 2) == 3
    assert brk.call(add.__wrapped__, 2, 2) == 4  # type: ignore[attr-defined]
    with brk:
        pass
    with pytest.raises(ConnectionError), brk:
        down()

    async def main() -> None:
        assert await aadd(3, 4) == 7
        assert await brk.acall(aadd.__wrapped__, 1, 1) == 2  # type: ignore[attr-defined]
        async with brk:
            pass
        with pytest.raises(ConnectionError):
            async with brk:
                down()

    asyncio.run(main())
    m = brk.metrics()
    assert (m.calls, m.failures) == (8, 2)
    assert add.breaker is brk  # type: ignore[attr-defined]


def test_with_block_refused_does_not_run_the_body() -> None:
    brk = make()
    brk.force_open()
    ran = []
    with pytest.raises(CircuitOpenError), brk:
        ran.append(1)
    assert ran == []


def test_cancelled_task_gives_its_probe_back() -> None:
    clock = FakeClock()
    brk = make(clock, window=2, min_calls=2, open_seconds=1, half_open_calls=1)
    fail(brk, 2)
    clock.advance(1)

    async def main() -> None:
        started = asyncio.Event()

        async def hang() -> None:
            started.set()
            await asyncio.sleep(3600)

        task = asyncio.create_task(brk.acall(hang))
        await started.wait()
        assert brk.metrics().probes_in_flight == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert brk.metrics().probes_in_flight == 0
        assert await brk.acall(asyncio.sleep, 0) is None

    asyncio.run(main())
    assert brk.state is BreakerState.CLOSED


# -- configuration -----------------------------------------------------------------------------------


def test_defaults_match_the_settings_schema() -> None:
    cfg = CircuitBreaker(clock=FakeClock()).config
    for key, field in SETTINGS_KEYS.items():
        assert getattr(cfg, field) == SCHEMA[key].default, key
    assert (cfg.failure_rate, cfg.slow_call_rate, cfg.slow_call_duration) == (50, 100, 60)
    assert (cfg.window_type, cfg.window, cfg.min_calls, cfg.consecutive_failures) == ("count", 100, 10, 0)
    # Short, growing, jittered open times: the outage simulations behind them are in docs/breaker.md.
    assert (cfg.open_seconds, cfg.open_seconds_max, cfg.open_jitter) == (5, 15, 0.5)
    assert (cfg.half_open_calls, cfg.max_in_flight) == (3, 0)


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"failure_rate": 0}, "failure_rate", "percentage from 1 to 100"),
        ({"failure_rate": 101}, "failure_rate", "percentage from 1 to 100"),
        ({"window": 0}, "window", "whole number from 1"),
        ({"window_type": "sliding"}, "window_type", "'count', 'time'"),
        ({"open_seconds": -1}, "open_seconds", ">= 0"),
        ({"open_seconds": 60, "open_seconds_max": 10}, "open_seconds_max", ">= open_seconds"),
        ({"half_open_calls": 0}, "half_open_calls", "whole number from 1"),
        ({"max_in_flight": -1}, "max_in_flight", "whole number from 0"),
        ({"half_open": "eager"}, "half_open", "'lazy', 'timer'"),
        ({"failure_treshold": 5}, "failure_treshold", "a breaker parameter"),
    ],
)
def test_invalid_arguments_name_parameter_value_and_range(
    kwargs: dict[str, object], field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        make(**kwargs)
    assert info.value.field == field
    assert words in str(info.value)
    assert repr(kwargs[field]) in str(info.value)


def test_durations_accept_timedelta_and_text() -> None:
    cfg = make(open_seconds=timedelta(minutes=1), slow_call_duration="250ms").config
    assert (cfg.open_seconds, cfg.slow_call_duration) == (60.0, 0.25)


def test_from_settings_and_live_reconfigure() -> None:
    brk = CircuitBreaker.from_settings(
        "settings-test",
        {"breaker.failure_rate": 30, "breaker.window": 5, "breaker.min_calls": 5, "retry.max_attempts": 3},
        clock=FakeClock(),
        bus=EventBus(),
    )
    assert (brk.config.failure_rate, brk.config.window) == (30.0, 5)
    fail(brk, 1)
    succeed(brk, 3)
    brk.apply_settings({"breaker.max_in_flight": 1})
    assert brk.config.max_in_flight == 1 and not brk.fast_path
    with pytest.raises(ConfigError) as info:
        brk.apply_settings({"breaker.window": -3})
    assert info.value.field == "breaker.window"
    assert brk.config.window == 5  # unchanged after a refused change
    with pytest.raises(ConfigError):
        brk.apply_settings({"breaker.falure_rate": 3})
    brk.configure(max_in_flight=0)
    assert not brk.fast_path  # 1 failure in 4 calls, below min_calls: the next success is judged
    succeed(brk, 1)  # 1 failure of 5 = 20% < 30%
    assert brk.state is BreakerState.CLOSED
    assert brk.fast_path  # min_calls reached: a success can only lower the rate now
    brk.configure(failure_rate=10)
    fail(brk, 1)
    assert brk.state is BreakerState.OPEN


def test_settings_source_is_followed_live() -> None:
    from bounceback.core.settings._source import StaticSettings

    settings = StaticSettings({"breaker.failure_rate": 30})
    brk = CircuitBreaker("live-settings", settings=settings, clock=FakeClock(), bus=EventBus())
    assert brk.config.failure_rate == 30
    settings.set("breaker.failure_rate", 70)
    assert brk.config.failure_rate == 70
    brk.configure(failure_rate=90)  # an argument in code wins over settings
    settings.set("breaker.failure_rate", 40)
    assert brk.config.failure_rate == 90


def test_named_breakers_are_registered() -> None:
    brk = CircuitBreaker("registry-test", clock=FakeClock())
    assert registry.breaker("registry-test") is brk
    assert "registry-test" in repr(brk)


def test_metrics_snapshot() -> None:
    clock = FakeClock()
    brk = make(clock, window=10, min_calls=4, open_seconds=30)
    for _ in range(3):
        brk.count_success()
    fail(brk, 1)
    m = brk.metrics()
    assert (m.calls, m.failures, m.failure_rate, m.consecutive_failures) == (4, 1, 25.0, 1)
    fail(brk, 2)  # 3 of 6 = 50%: open
    clock.advance(12)
    m = brk.metrics()
    assert (m.state, m.time_in_state, m.retry_after, m.opens) == ("open", 12.0, 18.0, 1)
    assert m.store == "memory" and m.store_available
    assert not math.isnan(m.failure_rate)


def test_every_breaker_setting_key_exists_in_the_schema_with_the_same_default() -> None:
    from bounceback.core.breaker._config import SETTINGS_KEYS, BreakerConfig
    from bounceback.core.settings._source import SCHEMA

    base = BreakerConfig()
    for key, field in SETTINGS_KEYS.items():
        assert key in SCHEMA, key
        assert SCHEMA[key].default == getattr(base, field), key
    breaker_keys = {k for k in SCHEMA if k.startswith("breaker.")} - {"breaker.enabled"}
    assert breaker_keys == set(SETTINGS_KEYS)


def test_state_name_is_true_after_the_open_time_without_reading_state_first() -> None:
    clock = FakeClock()
    brk = make(clock, window=2, min_calls=2, open_seconds=10)
    fail(brk, 2)
    assert brk.state_name == "open"
    clock.advance(10)
    assert brk.state_name == "half_open"  # not "open" until someone reads .state


def test_every_form_counts_what_the_breaker_s_own_classifier_calls_a_failure() -> None:
    # A plain function as the classifier: "quota" errors are the caller's fault (permanent, not counted),
    # anything else has no opinion (the defaults decide: RuntimeError is transient). Every form of the breaker
    # (call, acall, the decorators, the blocks) asks the same bound verdict, breaker.classify.
    def mine(exc: BaseException) -> str | None:
        return "permanent" if "quota" in str(exc) else None

    brk = CircuitBreaker("own-verdict", window=100, min_calls=100, classifier=mine)
    assert brk.classify(RuntimeError("quota exceeded")).kind is ErrorKind.PERMANENT
    assert brk.classify(RuntimeError("boom")).kind is ErrorKind.TRANSIENT

    def fail(text: str) -> None:
        raise RuntimeError(text)

    async def afail(text: str) -> None:
        raise RuntimeError(text)

    decorated, adecorated = brk(fail), brk(afail)
    for text in ("quota exceeded", "boom"):
        with pytest.raises(RuntimeError):
            brk.call(fail, text)
        with pytest.raises(RuntimeError):
            asyncio.run(brk.acall(afail, text))
        with pytest.raises(RuntimeError):
            decorated(text)
        with pytest.raises(RuntimeError):
            asyncio.run(adecorated(text))
        with pytest.raises(RuntimeError), brk:
            fail(text)
    m = brk.metrics()
    assert (m.calls, m.failures) == (5, 5)  # the five "boom" failures; the quota errors were not counted
    assert CircuitBreaker("defaults").classify(ValueError("bad")).kind is ErrorKind.PERMANENT
