"""The breaker against a simple model: random calls, outcomes, slow calls, time, manual actions, probes.

The model restates the rules in the plainest way (a deque for the window, a set of probes out) and the
machine checks after every step that the breaker is in the model's state, that no more than
``half_open_calls`` probes are ever out, and that every transition it announced is allowed (and, unless
the step was a manual action, one the breaker may make by itself).
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass
from typing import Any

import hypothesis.strategies as st
from hypothesis import settings
from hypothesis.stateful import Bundle, RuleBasedStateMachine, consumes, invariant, rule

from bounceback import CircuitBreaker, CircuitOpenError, Classification, ErrorKind
from bounceback.core.breaker._core import ALLOWED_TRANSITIONS, AUTOMATIC_TRANSITIONS, BreakerState
from bounceback.events import BreakerStateChanged, EventBus
from bounceback.testing import FakeClock

WINDOW = 4
MIN_CALLS = 3
RATE = 50.0
CONSECUTIVE = 3
OPEN = 2.0
OPEN_MAX = 8.0
JITTER = 0.5
SEED = 1234
PROBES = 2
SLOW_AFTER = 1.5
SLOW_RATE = 50.0

FAILED, SLOW = 1, 2
VERDICTS = {
    "ok": None,
    "fail": Classification(ErrorKind.TRANSIENT, "down"),
    "ignored": Classification(ErrorKind.PERMANENT, "caller error"),
}


@dataclass
class Call:
    permit: Any
    started: float
    epoch: int
    kind: str  # "plain" (permit None), "closed" (a timed permit) or "probe"


class Model:
    """The rules, restated plainly."""

    def __init__(self, timed: bool) -> None:
        self.timed = timed
        self.state = "closed"
        self.window: deque[int] = deque(maxlen=WINDOW)
        self.consecutive = 0
        self.open_until = 0.0
        self.reopens = 0
        self.draws = random.Random(SEED)
        self.epoch = 0
        self.probes_out = 0
        self.probe_ok = 0

    def move(self, state: str) -> None:
        self.state = state
        self.epoch += 1
        self.probes_out = 0
        self.probe_ok = 0

    def open(self, now: float) -> None:
        self.move("open")
        # The same draws as the breaker's own generator: one per opening, taking up to JITTER off.
        self.open_until = now + min(OPEN * 2**self.reopens, OPEN_MAX) * (1 - JITTER * self.draws.random())
        self.reopens += 1

    def close(self, *, reopens: int | None) -> None:
        self.move("closed")
        self.window.clear()
        self.consecutive = 0
        if reopens is not None:
            self.reopens = reopens

    def due(self, now: float) -> None:
        if self.state == "open" and now >= self.open_until:
            self.move("half_open")

    def acquire(self, now: float) -> str:
        """'plain', 'closed', 'probe', or 'rejected:<state>'."""
        if self.state == "open":
            self.due(now)
        if self.state == "closed":
            return "closed" if self.timed else "plain"
        if self.state == "disabled":
            return "plain"
        if self.state == "half_open" and self.probes_out < PROBES:
            self.probes_out += 1
            return "probe"
        return f"rejected:{self.state}"

    def record(self, outcome: int, now: float) -> None:
        self.window.append(outcome)
        self.consecutive = self.consecutive + 1 if outcome & FAILED else 0
        calls = len(self.window)
        failures = sum(o & FAILED for o in self.window)
        slow = sum(1 for o in self.window if o & SLOW)
        if (
            self.consecutive >= CONSECUTIVE
            or (calls >= MIN_CALLS and failures * 100 >= RATE * calls)
            or (self.timed and calls >= MIN_CALLS and slow * 100 >= SLOW_RATE * calls)
        ):
            self.open(now)

    def release(self, call: Call, verdict: str, now: float) -> None:
        outcome = {"ok": 0, "fail": FAILED, "ignored": -1}[verdict]
        if outcome >= 0 and self.timed and call.kind != "plain" and now - call.started >= SLOW_AFTER:
            outcome |= SLOW
        if call.kind == "plain":
            if outcome >= 0 and self.state == "closed":
                self.record(outcome, now)
        elif call.kind == "closed":
            if outcome >= 0 and self.state == "closed" and call.epoch == self.epoch:
                self.record(outcome, now)
        elif call.epoch == self.epoch and self.state == "half_open":
            self.probes_out -= 1
            if outcome == 0:
                self.probe_ok += 1
                if self.probe_ok >= PROBES:
                    self.close(reopens=0)
            elif outcome > 0:
                self.open(now)

    def abandon(self, call: Call) -> None:
        if call.kind == "probe" and call.epoch == self.epoch and self.state == "half_open":
            self.probes_out -= 1


class BreakerMachine(RuleBasedStateMachine):
    timed = False
    half_open = "lazy"

    calls = Bundle("calls")

    def __init__(self) -> None:
        super().__init__()
        self.clock = FakeClock()
        self.bus = EventBus()
        self.events: list[BreakerStateChanged] = []
        self.bus.subscribe(lambda e: self.events.append(e) if isinstance(e, BreakerStateChanged) else None)
        self.brk = CircuitBreaker(
            "machine",
            window=WINDOW,
            min_calls=MIN_CALLS,
            failure_rate=RATE,
            consecutive_failures=CONSECUTIVE,
            open_seconds=OPEN,
            open_seconds_max=OPEN_MAX,
            open_jitter=JITTER,
            rng=random.Random(SEED),
            half_open_calls=PROBES,
            slow_call_rate=SLOW_RATE if self.timed else 100,
            slow_call_duration=SLOW_AFTER,
            half_open=self.half_open,
            clock=self.clock,
            bus=self.bus,
        )
        self.model = Model(self.timed)
        self.manual = False

    def now(self) -> float:
        return self.clock.monotonic()

    # -- calls ---------------------------------------------------------------------------------------

    @rule(target=calls)
    def start(self) -> Any:
        expected = self.model.acquire(self.now())
        try:
            permit = self.brk.acquire()
        except CircuitOpenError as exc:
            refused = exc.state
        else:
            refused = None
        if refused is not None:
            assert expected == f"rejected:{refused}", (expected, refused)
            return None  # a refused call leaves nothing to finish: the bundle holds None
        assert not expected.startswith("rejected"), expected
        assert (permit is None) == (expected == "plain"), (permit, expected)
        return Call(permit, self.now(), self.model.epoch, expected)

    @rule(call=consumes(calls), verdict=st.sampled_from(sorted(VERDICTS)))
    def finish(self, call: Any, verdict: str) -> None:
        if call is None:
            return
        self.brk.release(call.permit, VERDICTS[verdict])
        self.model.release(call, verdict, self.now())

    @rule(call=consumes(calls))
    def abandon(self, call: Any) -> None:
        if call is None:
            return
        self.brk.abandon(call.permit)
        self.model.abandon(call)

    @rule(verdict=st.sampled_from(["ok", "ok", "ok", "fail", "fail", "ignored"]), halves=st.integers(0, 4))
    def quick_call(self, verdict: str, halves: int) -> None:
        """A whole call in one step (taking ``halves`` half-seconds), so the machine trips and probes often."""
        call = self.start()
        if call is not None:
            self.clock.advance(halves * 0.5)
            self.finish(call, verdict)

    @rule(verdict=st.sampled_from(sorted(VERDICTS)))
    def fast_call(self, verdict: str) -> None:
        """What the retry engine does on its fast path: no acquire, a bare count on success."""
        if not self.brk.fast_path:
            return
        assert self.model.state == "closed" and not self.timed
        if verdict == "ok":
            self.brk.count_success()
        else:
            self.brk.release(None, VERDICTS[verdict])
        self.model.release(Call(None, self.now(), self.model.epoch, "plain"), verdict, self.now())

    # -- time and timers -----------------------------------------------------------------------------

    @rule(halves=st.integers(min_value=1, max_value=12))
    def advance(self, halves: int) -> None:
        self.clock.advance(halves * 0.5)  # exact binary fractions: no rounding at the boundaries

    @rule()
    def tick(self) -> None:
        self.brk.tick()
        if self.half_open == "timer":
            self.model.due(self.now())

    @rule()
    def read_state(self) -> None:
        state = self.brk.state
        self.model.due(self.now())
        assert state.value == self.model.state

    # -- manual --------------------------------------------------------------------------------------

    @rule(action=st.sampled_from(["force_open", "force_close", "reset", "disable"]), dice=st.integers(0, 5))
    def by_hand(self, action: str, dice: int) -> None:
        if dice:
            return  # manual actions are rarer than calls, or the breaker would seldom trip by itself
        self.manual = True
        getattr(self.brk, action)()
        m = self.model
        if action == "force_open" and m.state != "forced_open":
            m.move("forced_open")
        elif action == "disable" and m.state != "disabled":
            m.move("disabled")
        elif action == "force_close":
            m.close(reopens=None)
        elif action == "reset":
            m.close(reopens=0)

    # -- invariants ----------------------------------------------------------------------------------

    @invariant()
    def same_state(self) -> None:
        # Reading the state moves an open breaker whose time is over to half-open, as reading .state does.
        self.model.due(self.now())
        assert self.brk.state_name == self.model.state

    @invariant()
    def probes_bounded(self) -> None:
        probes = self.brk.metrics().probes_in_flight
        assert 0 <= probes <= PROBES
        assert self.brk.store.probes("machine", self.now()) <= PROBES
        assert probes == self.model.probes_out

    @invariant()
    def transitions_allowed(self) -> None:
        allowed = ALLOWED_TRANSITIONS if self.manual else AUTOMATIC_TRANSITIONS
        for e in self.events:
            step = (BreakerState(e.old_state), BreakerState(e.new_state))
            assert step in allowed, (step, e.reason, self.manual)
        self.events.clear()
        self.manual = False

    @invariant()
    def window_matches_while_closed(self) -> None:
        if self.model.state != "closed":
            return
        m = self.brk.metrics()
        window = self.model.window
        assert m.calls == len(window)
        assert m.failures == sum(o & FAILED for o in window)
        assert m.consecutive_failures == self.model.consecutive


BreakerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
test_lazy_untimed = BreakerMachine.TestCase


class TimedTimerMachine(BreakerMachine):
    timed = True
    half_open = "timer"


TimedTimerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=60, deadline=None)
test_timer_timed = TimedTimerMachine.TestCase
