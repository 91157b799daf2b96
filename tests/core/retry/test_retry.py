from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import pytest

import bounceback
import bounceback.events
from bounceback import (
    AttemptTimeout,
    Backoff,
    CancelToken,
    ConfigError,
    GiveUp,
    Policy,
    RecoveryCancelled,
    RetriesExhausted,
    RetryAgain,
    retry,
)
from bounceback.classify import mark
from bounceback.events import AttemptFailed, EventBus, RecoveryExhausted, RecoverySucceeded, RetryScheduled
from bounceback.testing import FakeClock, RecordingSink, no_waits

NO_JITTER = Backoff(initial=1, max_delay=100, jitter="none")


class Flaky:
    """Fails with ``error`` the first ``failures`` calls, then returns ``result``."""

    def __init__(
        self, failures: int, error: type[Exception] | Exception = ConnectionResetError, result: Any = "ok"
    ):
        self.failures = failures
        self.error = error
        self.result = result
        self.calls = 0

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error if isinstance(self.error, Exception) else self.error("boom")
        return self.result


def test_recovers_after_transient_failures_with_exponential_waits() -> None:
    clock = FakeClock()
    fn = Flaky(3)
    wrapped = retry(attempts=5, backoff=NO_JITTER, clock=clock)(fn)
    assert wrapped() == "ok"
    assert fn.calls == 4
    assert clock.sleeps == [1, 2, 4]


def test_gives_up_after_max_attempts_reraising_the_original_with_history() -> None:
    clock = FakeClock()
    error = ConnectionRefusedError(111, "refused")
    fn = Flaky(10, error)
    with pytest.raises(ConnectionRefusedError) as info:
        Policy("dial", attempts=3, backoff=NO_JITTER, clock=clock).call(fn)
    assert info.value is error
    assert fn.calls == 3
    history = info.value.bounceback_attempts  # type: ignore[attr-defined]
    assert [r.attempt for r in history] == [1, 2, 3]
    assert [r.delay for r in history] == [1, 2, None]
    assert info.value.bounceback_reason == "attempts"  # type: ignore[attr-defined]
    assert "gave up after 3 attempt(s)" in info.value.__notes__[0]


def test_permanent_errors_are_not_retried() -> None:
    fn = Flaky(5, ValueError)
    with pytest.raises(ValueError):
        retry(attempts=5, clock=FakeClock())(fn)()
    assert fn.calls == 1


@pytest.mark.parametrize("exc", [KeyboardInterrupt, SystemExit, asyncio.CancelledError])
def test_base_exceptions_propagate_at_once(exc: type[BaseException]) -> None:
    fn = Flaky(5, exc)  # type: ignore[arg-type]
    with pytest.raises(exc):
        retry(attempts=5, clock=FakeClock())(fn)()
    assert fn.calls == 1


def test_a_zero_delay_never_calls_sleep() -> None:
    clock = FakeClock()
    clock.on_sleep = lambda s: pytest.fail(f"slept {s}")
    fn = Flaky(2)
    assert retry(attempts=3, backoff=Backoff("constant", initial=0, jitter="none"), clock=clock)(fn)() == "ok"


def test_deadline_stops_before_a_wait_that_would_pass_it() -> None:
    clock = FakeClock()
    fn = Flaky(100)
    with pytest.raises(ConnectionResetError) as info:
        Policy("x", attempts=None, deadline=10, backoff=NO_JITTER, clock=clock).call(fn)
    # waits 1, 2, 4 (t=7); the next wait of 8 would end at 15 > 10
    assert clock.sleeps == [1, 2, 4]
    assert info.value.bounceback_reason == "deadline"  # type: ignore[attr-defined]


@pytest.mark.parametrize("timed", [False, True])
def test_the_deadline_counts_from_the_first_failure_unless_the_first_attempt_is_timed(timed: bool) -> None:
    """A success must not read the clock, so an untimed first attempt starts the deadline when it fails; a
    timed one (attempt_timeout, retry_if_result, hedge) starts it when it started."""
    clock = FakeClock()
    calls = 0

    def slow_then_fails() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            clock.advance(25)  # the first attempt takes 25 s of the 30 s deadline, then fails
            raise ConnectionResetError("reset")
        return "ok"

    wait = Backoff("constant", initial=10, jitter="none")
    check = (lambda result: False) if timed else None
    policy = Policy("slow", attempts=3, deadline=30, backoff=wait, retry_if_result=check, clock=clock)
    if timed:
        with pytest.raises(ConnectionResetError) as info:
            policy.call(slow_then_fails)  # 25 s gone + a 10 s wait passes the deadline
        assert info.value.bounceback_reason == "deadline"  # type: ignore[attr-defined]
        assert clock.sleeps == []
    else:
        assert policy.call(slow_then_fails) == "ok"  # 0 s since the failure + 10 s is within it
        assert clock.sleeps == [10]


def test_retry_after_hint_is_respected_capped_and_kept_within_the_deadline() -> None:
    clock = FakeClock()
    fn = Flaky(1, mark(ConnectionResetError("slow down"), "throttled", retry_after=7))
    assert retry(attempts=3, backoff=NO_JITTER, clock=clock)(fn)() == "ok"
    assert clock.sleeps == [7]

    clock = FakeClock()
    fn = Flaky(1, mark(ConnectionResetError("slow down"), "throttled", retry_after=10_000))
    assert retry(attempts=3, backoff=NO_JITTER, max_retry_after=20, clock=clock)(fn)() == "ok"
    assert clock.sleeps == [20]

    clock = FakeClock()
    fn = Flaky(1, mark(ConnectionResetError("slow down"), "throttled", retry_after=60))
    with pytest.raises(ConnectionResetError) as info:
        retry(attempts=3, deadline=30, backoff=NO_JITTER, clock=clock)(fn)()
    assert clock.sleeps == []
    assert info.value.bounceback_reason == "retry-after"  # type: ignore[attr-defined]


def test_retry_on_result() -> None:
    clock = FakeClock()
    results = iter([None, None, 42])
    wrapped = retry(attempts=5, retry_if_result=lambda r: r is None, clock=clock)(lambda: next(results))
    assert wrapped() == 42
    with pytest.raises(RetriesExhausted) as info:
        retry(attempts=2, retry_if_result=lambda r: r < 0, clock=FakeClock())(lambda: -1)()
    assert (info.value.attempts, info.value.last_result) == (2, -1)


def test_cancellation_during_a_wait_stops_at_once() -> None:
    clock = FakeClock()
    token = CancelToken()
    clock.on_sleep = lambda s: token.cancel("operator pressed cancel")
    fn = Flaky(10)
    with pytest.raises(RecoveryCancelled) as info:
        retry(attempts=10, cancel=token, clock=clock)(fn)()
    assert fn.calls == 1
    assert clock.sleeps == []  # the wait was cut short
    assert info.value.reason == "operator pressed cancel"
    assert isinstance(info.value.__cause__, ConnectionResetError)


def test_real_cancel_token_wakes_a_real_wait_from_another_thread() -> None:
    token = CancelToken()
    timer = threading.Timer(0.05, token.cancel)
    timer.start()
    fn = Flaky(10)
    with pytest.raises(RecoveryCancelled):
        retry(
            attempts=3, deadline=None, backoff=Backoff("constant", initial=30, jitter="none"), cancel=token
        )(fn)()
    timer.join()


def test_events_for_failures_waits_and_outcomes_and_none_on_success() -> None:
    bus = EventBus()
    sink = RecordingSink(bus)
    clock = FakeClock()
    ok = retry(attempts=3, bus=bus, clock=clock, operation="op")(lambda: 1)
    ok()
    assert sink.events == []
    retry(attempts=3, bus=bus, clock=clock, operation="op", backoff=NO_JITTER)(Flaky(1))()
    kinds = [type(e) for e in sink.events]
    assert kinds == [AttemptFailed, RetryScheduled, RecoverySucceeded]
    failed, scheduled, done = sink.events
    assert (
        isinstance(failed, AttemptFailed)
        and failed.will_retry
        and failed.attempt == 1
        and failed.max_attempts == 3
    )
    assert isinstance(scheduled, RetryScheduled) and scheduled.delay == 1 and scheduled.attempt == 2
    assert scheduled.retry_at == pytest.approx(scheduled.at + 1)
    assert isinstance(done, RecoverySucceeded) and done.attempts == 2
    assert failed.run_id == scheduled.run_id == done.run_id
    sink.events.clear()
    with pytest.raises(ConnectionResetError):
        retry(attempts=2, bus=bus, clock=clock, operation="op")(Flaky(5))()
    exhausted = sink.of(RecoveryExhausted)
    assert len(exhausted) == 1 and exhausted[0].reason == "attempts" and exhausted[0].attempts == 2


def test_logging_subscriber_writes_structured_records(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    stop = bounceback.events.log_events("test.recovery", bus=bus)
    with caplog.at_level(logging.DEBUG, logger="test.recovery"):
        retry(attempts=2, bus=bus, clock=FakeClock(), operation="sensor")(Flaky(1))()
    stop()
    messages = [r.getMessage() for r in caplog.records]
    assert any("sensor: attempt 1/2 failed: ConnectionResetError" in m for m in messages)
    assert any("recovered after 2 attempts" in m for m in messages)
    assert caplog.records[0].bounceback["operation"] == "sensor"  # type: ignore[attr-defined]


def test_fallback_value_function_and_retry_again() -> None:
    clock = FakeClock()
    assert retry(attempts=2, fallback="cached", clock=clock)(Flaky(5))() == "cached"
    seen: list[GiveUp] = []

    def fallback(info: GiveUp) -> str:
        seen.append(info)
        return f"fallback after {len(info.attempts)}"

    assert retry(attempts=2, fallback=fallback, clock=clock)(Flaky(5))() == "fallback after 2"
    assert seen[0].reason == "attempts" and isinstance(seen[0].error, ConnectionResetError)

    asked = []

    def person(info: GiveUp) -> Any:
        asked.append(info)
        return RetryAgain(attempts=5) if len(asked) == 1 else "gave up"

    fn = Flaky(4)
    assert retry(attempts=2, fallback=person, clock=clock)(fn)() == "ok"
    assert fn.calls == 5 and len(asked) == 1


def test_block_form_retries_and_stops_after_success() -> None:
    clock = FakeClock()
    fn = Flaky(2)
    out = []
    for attempt in Policy("block", attempts=5, backoff=NO_JITTER, clock=clock).attempts():
        with attempt:
            out.append(attempt.number)
            fn()
    assert out == [1, 2, 3]
    assert clock.sleeps == [1, 2]


def test_block_form_reraises_the_original_error_when_exhausted() -> None:
    clock = FakeClock()
    with pytest.raises(ConnectionResetError) as info:
        for attempt in Policy("block", attempts=2, clock=clock).attempts():
            with attempt:
                raise ConnectionResetError("down")
    assert len(info.value.bounceback_attempts) == 2  # type: ignore[attr-defined]


def test_block_form_result_check() -> None:
    values = iter([0, 0, 5])
    policy = Policy("block", attempts=4, retry_if_result=lambda v: v == 0, clock=FakeClock())
    for attempt in policy.attempts():
        with attempt:
            got = attempt.check(next(values))
    assert got == 5


def test_async_decorator_call_and_block() -> None:
    clock = FakeClock()

    async def main() -> list[Any]:
        fn = Flaky(2)

        @retry(attempts=3, clock=clock, backoff=NO_JITTER)
        async def fetch() -> str:
            return fn()

        first = await fetch()
        second = await Policy("a", attempts=3, clock=clock).acall(_async(Flaky(1)))
        tries = 0
        async for attempt in Policy("b", attempts=3, clock=clock).attempts():
            with attempt:
                tries += 1
                if tries < 3:
                    raise TimeoutError
        return [first, second, tries]

    assert asyncio.run(main()) == ["ok", "ok", 3]


def _async(fn: Any) -> Any:
    async def inner() -> Any:
        return fn()

    return inner


def test_async_attempt_timeout_is_enforced() -> None:
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(10)  # would hang; the timeout cuts it at 0.05 s
        return "fast"

    policy = Policy(
        "t", attempts=2, attempt_timeout=0.05, backoff=Backoff("constant", initial=0, jitter="none")
    )
    assert asyncio.run(policy.acall(slow)) == "fast"
    assert calls == 2


def test_async_timeout_error_raised_by_the_function_is_not_ours() -> None:
    async def raises() -> None:
        raise TimeoutError("remote said timeout")

    with pytest.raises(TimeoutError) as info:
        asyncio.run(Policy("t", attempts=1, attempt_timeout=5).acall(raises))
    assert not isinstance(info.value, AttemptTimeout)


def test_sync_attempt_timeout_abandons_the_attempt() -> None:
    release = threading.Event()
    calls = []

    def hangs_first() -> str:
        calls.append(1)
        if len(calls) == 1:
            release.wait(5)
        return "second"

    policy = Policy(
        "t", attempts=2, attempt_timeout=0.05, backoff=Backoff("constant", initial=0, jitter="none")
    )
    try:
        assert policy.call(hangs_first) == "second"
        with pytest.raises(AttemptTimeout) as info:
            Policy("t", attempts=1, attempt_timeout=0.02).call(release.wait, 5)
        assert info.value.timeout == pytest.approx(0.02)
    finally:
        release.set()


def test_no_waits_turns_waits_off() -> None:
    clock = FakeClock()
    with no_waits():
        assert retry(attempts=4, clock=clock)(Flaky(3))() == "ok"
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"attempts": 0}, "attempts"),
        ({"attempts": -1}, "attempts"),
        ({"attempts": None, "deadline": None}, "attempts"),  # unbounded needs a deadline
        ({"deadline": -5}, "deadline"),
        ({"deadline": float("nan")}, "deadline"),
        ({"attempt_timeout": 0}, "attempt_timeout"),
        ({"max_retry_after": float("inf")}, "max_retry_after"),
    ],
)
def test_bad_arguments_raise_config_error(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Policy("x", **kwargs)
    assert info.value.field == field


def test_operation_name_defaults_to_the_function_and_policies_register() -> None:
    @retry
    def named() -> int:
        return 1

    @retry(attempts=2)
    def also_named() -> int:
        return 2

    assert named() == 1 and also_named() == 2
    policy, other = named.policy, also_named.policy  # type: ignore[attr-defined]
    assert policy.operation.endswith("named") and other.operation.endswith("also_named")
    # Both forms register under the function's name and spend from that operation's own budget.
    assert bounceback.events.registry.policy(policy.operation) is policy
    assert bounceback.events.registry.policy(other.operation) is other
    assert policy.budget is not other.budget and policy.budget is Policy(policy.operation).budget
    p = Policy("registered-op")
    assert bounceback.events.registry.policy("registered-op") is p


class _Settings:
    def __init__(self, values: dict[str, Any]) -> None:
        self.values = values
        self.callbacks: list[Any] = []

    def effective(self, operation: str | None) -> dict[str, Any]:
        return self.values

    def subscribe(self, cb: Any) -> Any:
        self.callbacks.append(cb)
        return lambda: self.callbacks.remove(cb)

    def change(self, **values: Any) -> None:
        self.values.update(values)
        for cb in list(self.callbacks):
            cb()


def test_policy_reads_settings_live_and_explicit_arguments_win() -> None:
    settings = _Settings({"retry.max_attempts": 2, "retry.initial_delay": 1.0, "retry.jitter": "none"})
    clock = FakeClock()
    policy = Policy("live", settings=settings, clock=clock)
    fn = Flaky(3)
    with pytest.raises(ConnectionResetError):
        policy.call(fn)
    assert fn.calls == 2
    settings.change(**{"retry.max_attempts": 4})
    assert policy.call(Flaky(3)) == "ok"
    pinned = Policy("pinned", settings=settings, attempts=1, clock=clock)
    assert pinned.config.attempts == 1
    pinned.close()
    settings.change(**{"retry.max_attempts": 0})  # a bad stored value keeps the last good config
    assert policy.config.attempts == 4
    policy.close()
    assert settings.callbacks == []


def test_a_run_can_be_cancelled_by_its_id_from_outside() -> None:
    from bounceback.core._control import run_controls

    bus = EventBus()
    sink = RecordingSink(bus)
    clock = FakeClock()

    def cancel_from_outside(delay: float) -> None:
        run_id = sink.of(RetryScheduled)[-1].run_id
        assert run_controls.active()[run_id] == "remote"
        assert run_controls.cancel(run_id, "cancelled from the dashboard")

    clock.on_sleep = cancel_from_outside
    run_controls.enable()
    try:
        with pytest.raises(RecoveryCancelled, match="cancelled from the dashboard"):
            Policy("remote", attempts=5, clock=clock, bus=bus).call(Flaky(10))
        assert run_controls.active() == {}  # nothing left registered
        assert Policy("remote", attempts=5, clock=FakeClock(), bus=bus).call(Flaky(1)) == "ok"
        assert run_controls.active() == {}
    finally:
        run_controls.disable()
    assert sink.of(RecoveryExhausted)[-1].reason == "cancelled"


def test_cancelling_the_policy_token_reaches_runs_with_their_own_tokens() -> None:
    from bounceback.core._control import run_controls

    parent = CancelToken()
    clock = FakeClock()
    clock.on_sleep = lambda s: parent.cancel("shutting down")
    run_controls.enable()
    try:
        with pytest.raises(RecoveryCancelled, match="shutting down"):
            Policy("p", attempts=5, clock=clock, cancel=parent).call(Flaky(10))
    finally:
        run_controls.disable()
    assert parent._children == []


def test_give_up_names_the_failure_behind_a_breaker_refusal() -> None:
    from bounceback import CircuitOpenError

    errors = iter([ConnectionRefusedError(111, "refused"), CircuitOpenError("b", "open", None, 5.0)])
    seen: list[GiveUp] = []

    def fn() -> None:
        raise next(errors)

    Policy("c", attempts=2, clock=FakeClock(), fallback=seen.append).call(fn)
    assert isinstance(seen[0].error, CircuitOpenError)
    assert isinstance(seen[0].cause, ConnectionRefusedError)


def test_a_retry_budget_is_built_from_the_settings_when_enabled() -> None:
    from bounceback import RetryBudget

    on = _Settings(
        {"budget.enabled": True, "budget.ratio": 0.1, "budget.min_per_second": 0.0, "budget.window": 10.0}
    )
    clock = FakeClock()
    policy = Policy("budgeted", settings=on, attempts=5, clock=clock)
    budget = policy.budget
    assert isinstance(budget, RetryBudget)
    assert budget.rule.ratio == 0.1
    # With no recent calls and no floor, the budget refuses the first retry: one attempt only.
    fn = Flaky(10)
    with pytest.raises(ConnectionResetError) as info:
        policy.call(fn)
    assert info.value.bounceback_reason == "budget"  # type: ignore[attr-defined]
    # On by default: a settings source that says nothing gets the built-in budget; off when it says so.
    default = Policy("plain", settings=_Settings({}), clock=clock).budget
    assert isinstance(default, RetryBudget) and default.rule.ratio == 0.2
    assert Policy("off", settings=_Settings({"budget.enabled": False}), clock=clock).budget is None
    assert Policy("none", budget=None, clock=clock).budget is None
