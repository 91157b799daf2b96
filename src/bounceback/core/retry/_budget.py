"""Retry budgets: retries may be at most a fraction of recent calls, plus a small floor.

A retry budget (as in Finagle and gRPC) keeps an outage from turning into a retry storm. Each call a
policy makes deposits into a sliding window; each retry withdraws. A retry is allowed while the retries
spent in the last ``window`` seconds stay below ``ratio * calls + min_per_second * window``. When the
service fails every call, callers therefore make about ``1 + ratio`` calls per request instead of
``attempts``; when it is healthy, the budget is never felt.

The arithmetic lives in :class:`RetryBudget`; the counts live in a :class:`BudgetLedger`. The default
:class:`LocalLedger` keeps them in memory for one process. A shared ledger (SQLite for the processes of
one machine, Redis for a fleet) implements the same one-method protocol, so a budget spent by one worker is
felt by all of them, in one transaction or one round trip per retry.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from bounceback.core._pools import shared_instance as _shared
from bounceback.core._tally import Tally
from bounceback.core._time import SYSTEM_CLOCK, Clock, to_seconds
from bounceback.core.settings._layers import DEFAULTS
from bounceback.errors import ConfigError

__all__ = [
    "BudgetLedger",
    "BudgetReading",
    "BudgetRule",
    "LocalLedger",
    "RetryBudget",
    "budget_from_settings",
]


@dataclass(frozen=True, slots=True)
class BudgetRule:
    """The limits of a retry budget: ``ratio`` of recent calls plus ``min_per_second`` over ``window``.

    >>> rule = BudgetRule(ratio=0.1, min_per_second=1.0, window=10.0)
    >>> rule.allowance(calls=200)
    30.0
    """

    ratio: float = 0.2
    min_per_second: float = 10.0
    window: float = 10.0

    def __post_init__(self) -> None:
        _check_number("ratio", self.ratio, "a finite number >= 0, such as 0.1 for 10% of calls")
        _check_number("min_per_second", self.min_per_second, "a finite number of retries per second >= 0")
        if not (isinstance(self.window, (int, float)) and math.isfinite(self.window) and self.window > 0):
            raise ConfigError("window", self.window, "a finite number of seconds > 0, such as 10")

    @property
    def floor(self) -> float:
        """Retries allowed in any window however few calls were made (``min_per_second * window``)."""
        return self.min_per_second * self.window

    def allowance(self, calls: float) -> float:
        """How many retries a window holding ``calls`` calls allows."""
        return self.ratio * calls + self.min_per_second * self.window


_RULES: dict[tuple[object, ...], BudgetRule] = {}
_reading = tuple.__new__  # a BudgetReading built in C: a third of the cost of BudgetReading(...)
_MAX_TOKENS = 256  # retries granted without the ledger between two askings (the take-back is a loop)
_NO_GRANTS: tuple[float, list[None], int] = (-math.inf, [], 0)  # never taken from: always past its time


def _rule(ratio: float, min_per_second: float, window: float) -> BudgetRule:
    """The (immutable) rule for these limits, shared by the budgets that use the same: one per operation
    would cost every policy a validated dataclass of its own."""
    # The types are part of the key: True == 1, and a bool must still be refused by BudgetRule.
    key = (type(ratio), ratio, type(min_per_second), min_per_second, window)
    try:
        return _RULES[key]
    except (KeyError, TypeError):  # TypeError: unhashable nonsense, for BudgetRule to refuse by name
        rule = BudgetRule(ratio, min_per_second, window)
        if len(_RULES) < 256:
            _RULES[key] = rule
        return rule


def _check_number(field: str, value: object, allowed: str) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(field, value, allowed)


class BudgetReading(NamedTuple):
    """A ledger's answer: whether a retry was granted, and the window's counts after the decision.

    A named tuple, not a frozen dataclass: one is made for every retry asked for, and a tuple is made in a
    tenth of the time.
    """

    granted: bool
    calls: float
    """Calls counted in the window (fractional: calls reported late are spread over when they happened)."""
    retries: float
    """Retries spent in the window, including the one just granted."""
    allowance: float
    """Retries the window allows: ``ratio * calls + min_per_second * window``."""

    @property
    def available(self) -> float:
        """Retries that could still be spent now (never negative)."""
        return max(0.0, self.allowance - self.retries)


class BudgetLedger(Protocol):
    """Where a budget's counts live: in memory (:class:`LocalLedger`), or a store shared by processes.

    ``settle`` does everything in one step, so a shared ledger can do it in one transaction or one round
    trip: add ``calls`` calls made during the last ``span`` seconds (spread evenly over them), forget what
    fell out of the window, and when ``spend`` is true take one retry if the rule allows it. ``now`` is the
    caller's monotonic time; a ledger shared between processes should use its own clock (the database's or
    Redis's) instead and rely only on ``span``, which is a duration and so means the same everywhere.
    """

    def settle(
        self, key: str, rule: BudgetRule, now: float, calls: int, span: float, spend: bool
    ) -> BudgetReading:
        """Record ``calls`` and optionally spend one retry; see the class docstring."""
        ...


class _Window:
    """The counts of one key: a ring of ``slices`` time slices covering the last window."""

    __slots__ = ("calls", "calls_total", "head", "retries", "retries_total")

    def __init__(self, slices: int, head: int) -> None:
        self.calls = [0.0] * slices
        self.retries = [0.0] * slices
        self.calls_total = 0.0
        self.retries_total = 0.0
        self.head = head


class LocalLedger:
    """Budget counts in memory, for the budgets of one process; thread-safe.

    The window is a ring of ``slices`` slices, so counts leave it one slice at a time (a tenth of the window
    by default), as in Finagle's windowed adder. Several budgets may share one ledger under different keys.

    >>> ledger = LocalLedger()
    >>> rule = BudgetRule(ratio=0.5, min_per_second=0, window=10)
    >>> ledger.settle("db", rule, now=1.0, calls=4, span=0.0, spend=True).granted
    True
    >>> ledger.settle("db", rule, now=1.0, calls=0, span=0.0, spend=True).retries
    2.0
    >>> ledger.settle("db", rule, now=1.0, calls=0, span=0.0, spend=True).granted
    False
    """

    __slots__ = ("_lock", "_windows", "slices")

    def __init__(self, slices: int = 10) -> None:
        if isinstance(slices, bool) or not isinstance(slices, int) or not 1 <= slices <= 1000:
            raise ConfigError("slices", slices, "a whole number from 1 to 1000")
        self.slices = slices
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}

    def settle(
        self,
        key: str,
        rule: BudgetRule,
        now: float,
        calls: int,
        span: float,
        spend: bool,
        spent: int = 0,
        spent_at: float = 0.0,
    ) -> BudgetReading:
        """Record ``calls`` made over the last ``span`` seconds; spend one retry if ``spend`` and allowed.

        ``spent`` adds retries already granted on credit (see :meth:`RetryBudget.try_spend`) in the slice of
        time ``spent_at``, where they were granted (dropped if that slice has left the window).
        """
        width = rule.window / self.slices
        index = math.floor(now / width)
        with self._lock:
            win = self._windows.get(key)
            if win is None:
                win = self._windows[key] = _Window(self.slices, index)
            else:
                self._advance(win, index)
            if calls:
                self._deposit(win, calls, now, span, width)
            slot = math.floor(spent_at / width)
            if spent and win.head - self.slices < slot <= win.head:
                win.retries[slot % self.slices] += spent
                win.retries_total += spent
            allowance = rule.ratio * win.calls_total + rule.min_per_second * rule.window
            # A small tolerance: spread-out deposits are sums of fractions.
            granted = spend and win.retries_total + 1.0 <= allowance + 1e-9
            if granted:
                win.retries[win.head % self.slices] += 1.0
                win.retries_total += 1.0
            return _reading(BudgetReading, (granted, win.calls_total, win.retries_total, allowance))

    def _advance(self, win: _Window, index: int) -> None:
        """Move the newest slice to ``index``, emptying the slices that fell out of the window."""
        if index <= win.head:
            return  # a clock read on another thread may lag by a hair: count it in the newest slice
        n = self.slices
        if index - win.head >= n:
            win.calls = [0.0] * n
            win.retries = [0.0] * n
            win.calls_total = win.retries_total = 0.0
        else:
            for i in range(win.head + 1, index + 1):
                slot = i % n
                win.calls_total -= win.calls[slot]
                win.retries_total -= win.retries[slot]
                win.calls[slot] = 0.0
                win.retries[slot] = 0.0
            # Repeated subtraction of fractions must not leave a negative crumb behind.
            win.calls_total = max(0.0, win.calls_total)
            win.retries_total = max(0.0, win.retries_total)
        win.head = index

    def _deposit(self, win: _Window, calls: int, now: float, span: float, width: float) -> None:
        """Add ``calls`` made evenly over ``(now - span, now]``; the part older than the window is dropped."""
        n = self.slices
        oldest = (win.head - n + 1) * width
        start = now - span
        if span <= 0 or start >= win.head * width:
            win.calls[win.head % n] += calls
            win.calls_total += calls
            return
        rate = calls / span
        start = max(start, oldest)
        first = max(math.floor(start / width), win.head - n + 1)
        for i in range(first, win.head + 1):
            part = rate * (min(now, (i + 1) * width) - max(start, i * width))
            if part > 0:
                win.calls[i % n] += part
                win.calls_total += part


class RetryBudget:
    """Limit retries to ``ratio`` of recent calls plus ``min_per_second`` over a sliding ``window``.

    Give it to a policy (``Policy(..., budget=budget)``): the policy counts every call it starts and asks
    the budget before each retry; a refused retry ends recovery with reason ``budget``. Retries waiting in
    backoff have already been spent, so they count against the budget. Calls are counted cheaply (an
    C call, see :meth:`record_call`) and handed to the ledger only when a retry is asked for.

    The defaults (20% of calls, 10 retries a second, over 10 s) are those of the ``budget.*`` settings and
    of Finagle. One budget is one pool: share one object among the operations that call the same dependency, or give
    each operation its own. ``name`` is the pool's key in a shared ``ledger``.

    >>> from bounceback.testing import FakeClock
    >>> budget = RetryBudget(ratio=0.2, min_per_second=0, window=10, clock=FakeClock())
    >>> for _ in range(10):
    ...     budget.record_call("fetch")
    >>> [budget.try_spend("fetch") for _ in range(3)]
    [True, True, False]
    """

    __slots__ = (
        "_credit_since",
        "_ledger",
        "_local",
        "_lock",
        "_settled_at",
        "call_tally",
        "clock",
        "count_call",
        "grants",
        "name",
        "rule",
    )

    def __init__(
        self,
        ratio: float = 0.2,
        *,
        min_per_second: float = 10.0,
        window: float | object = 10.0,
        name: str = "retry-budget",
        clock: Clock | None = None,
        ledger: BudgetLedger | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("name", name, "a non-empty name such as 'payments-api'")
        self._start(
            _rule(ratio, min_per_second, to_seconds(window, "window", allow_zero=False)), name, clock, ledger
        )

    @classmethod
    def of_rule(
        cls, rule: BudgetRule, name: str, clock: Clock | None = None, ledger: BudgetLedger | None = None
    ) -> RetryBudget:
        """A budget of an already validated ``rule``, without validating it again (the settings' budget of
        each new operation is made this way, on the Policy's creation path)."""
        budget = cls.__new__(cls)
        cls._start(budget, rule, name, clock, ledger)
        return budget

    def _start(self, rule: BudgetRule, name: str, clock: Clock | None, ledger: BudgetLedger | None) -> None:
        self.rule = rule
        self.name = name
        clock = clock or SYSTEM_CLOCK
        self.clock: Clock = clock
        """The clock the budget's window runs on (read it, do not set it: a retry engine on the same clock
        hands the budget its readings)."""
        # A ledger of its own can grant on credit (see try_spend); a shared one is asked every time. Its own
        # is made at the first settle: most budgets of a healthy program never need one.
        self._local: LocalLedger | None = None
        self._ledger = ledger
        self._credit_since = 0.0
        self.grants: tuple[float, list[None], int] = _NO_GRANTS
        """``(until, tokens, issued)``: while the budget's clock reads below ``until``, each ``tokens.pop()``
        hands out one retry the window already allows (one C call, no lock; when none is left, ask
        :meth:`try_spend`, which settles). Replaced whole at each settling. A retry engine on the budget's
        clock takes from it directly (see ``Engine.decide``)."""
        # Made at the first settling (see _settle): most budgets of a healthy program never settle.
        self._lock: threading.Lock | None = None
        tally = self.call_tally = Tally()
        """The tally of calls (``count_call`` bumps it): a policy may count a call in it together with
        another tally (see :meth:`Tally.paired`)."""
        self.count_call = tally.__next__
        """Count one call: what policies call on the success path (thread-safe, exact, one C call)."""
        self._settled_at = clock.monotonic()

    # ``operation`` belongs to the port (a ledger keyed per operation may want it); one budget is one pool.
    def record_call(self, operation: str = "") -> None:  # noqa: ARG002
        """Count one call (a first attempt, not a retry). Policies do this by themselves."""
        self.count_call()

    def try_spend(self, operation: str, now: float = -1.0) -> bool:  # noqa: ARG002
        """Take one retry from the budget; False (and nothing taken) when it is exhausted.

        ``now`` is a reading of the budget's :attr:`clock` the caller has just taken (a retry engine that
        shares the clock has one): it saves a reading. Negative (the default): the budget reads its clock.

        Cheap when the budget has its own ledger: the last time the ledger was asked, it also said how many
        more retries the window allows for certain until its next slice begins (until then calls only come
        in and retries only go out, so the allowance cannot shrink). Up to 256 of them are laid out as
        tokens in a list; a retry takes one with ``list.pop`` (one atomic C call, no lock), and the next
        asking takes back what is left and hands the rest to the ledger as spent. Exact by construction:
        a token is popped once, so never more grants than the rule allows.
        """
        until, tokens, _ = self.grants
        if tokens and (now if now >= 0 else self.clock.monotonic()) < until:
            try:
                tokens.pop()
            except IndexError:
                pass  # another thread took the last one: ask the ledger
            else:
                return True
        return self._settle(True).granted

    def reading(self) -> BudgetReading:
        """The window's counts now, without spending (for status output and dashboards)."""
        return self._settle(False)

    def _settle(self, spend: bool) -> BudgetReading:
        lock = self._lock
        if lock is None:
            with _FIRST_SETTLING:  # two threads settling a new budget at once must share one lock
                if self._lock is None:
                    self._lock = threading.Lock()
                lock = self._lock
        lock.acquire()  # about every hundred retries of a busy budget: acquire/release cost half a ``with``
        try:
            return self._settle_locked(spend)
        finally:
            lock.release()

    def _settle_locked(self, spend: bool) -> BudgetReading:
        now = self.clock.monotonic()
        fresh = self.call_tally.take()
        span = now - self._settled_at
        self._settled_at = now
        if self._ledger is not None:
            return self._ledger.settle(self.name, self.rule, now, fresh, span, spend)
        local = self._local
        if local is None:
            local = self._local = LocalLedger()
        # Take back the tokens not spent: a retry racing with this takes its token before or gets none.
        _, tokens, issued = self.grants
        self.grants = _NO_GRANTS
        left = 0
        while tokens:  # popped one by one: a retry racing with this takes its token before, or none
            try:
                tokens.pop()
            except IndexError:
                break
            left += 1
        spent = issued - left
        reading = local.settle(self.name, self.rule, now, fresh, span, spend, spent, self._credit_since)
        # Until the next slice starts nothing leaves the window: what is left of the allowance is certain.
        width = self.rule.window / local.slices
        credit = min(_MAX_TOKENS, max(0, math.floor(reading.allowance - reading.retries + 1e-9)))
        self._credit_since = now
        self.grants = ((math.floor(now / width) + 1) * width, [None] * credit, credit)
        return reading

    def __repr__(self) -> str:
        rule = self.rule
        return (
            f"RetryBudget({self.name!r}, ratio={rule.ratio:g}, min_per_second={rule.min_per_second:g}, "
            f"window={rule.window:g})"
        )


def budget_from_settings(settings: Any, operation: str | None, clock: Clock | None) -> RetryBudget | None:
    """The operation's retry budget when ``budget.enabled`` is on (the default), read once at creation.

    Without a settings source, the built-in defaults: one budget per operation in this process, shared by
    every policy of that operation. With one, its ``budget.*`` values; and when the source offers a shared
    ledger (``settings.budget_ledger()``: the home database, or Redis, per ``store.backend``), the budget is
    counted there, so every process of the machine or the fleet spends from one pool per operation.
    """
    name = operation or "anonymous"
    if settings is None:
        # The built-in defaults, read and validated once: a new operation's budget costs the object alone.
        if not _BUILT_IN_ON:
            return None
        # Made from the rule validated at import: a new operation's budget costs little more than the object.
        if clock is None or clock is SYSTEM_CLOCK:
            # The system clock's own table, keyed by the name alone (the rule is the same for all). Making
            # one has no side effect, so no lock: of two threads racing, setdefault keeps the first's.
            found = _BUILT_IN_BUDGETS.get(name)
            if found is None:
                found = _BUILT_IN_BUDGETS.setdefault(name, RetryBudget.of_rule(_BUILT_IN_RULE, name))
            return found
        return _shared(clock, ("budget", name), RetryBudget.of_rule, _BUILT_IN_RULE, name, clock)
    values = {**DEFAULTS, **settings.effective(operation)}
    if not values["budget.enabled"]:
        return None
    ledger_for = getattr(settings, "budget_ledger", None)
    ledger = ledger_for() if callable(ledger_for) else None
    rule = (values["budget.ratio"], values["budget.min_per_second"], values["budget.window"])
    return _shared(
        clock,
        ("budget", name, rule, ledger),
        lambda: RetryBudget(
            rule[0], min_per_second=rule[1], window=rule[2], name=name, clock=clock, ledger=ledger
        ),
    )


_BUILT_IN_ON: bool = DEFAULTS["budget.enabled"]
_BUILT_IN = (DEFAULTS["budget.ratio"], DEFAULTS["budget.min_per_second"], DEFAULTS["budget.window"])


# Validated once: the rule is immutable and every new operation without settings shares it.
_BUILT_IN_RULE = _rule(_BUILT_IN[0], _BUILT_IN[1], to_seconds(_BUILT_IN[2], "window", allow_zero=False))
# The built-in budgets of the operations on the system clock, one per name for the life of the process: a
# policy made per call still spends from its operation's budget (other clocks: ``shared_instance``'s pools).
_BUILT_IN_BUDGETS: dict[str, RetryBudget] = {}
_FIRST_SETTLING = threading.Lock()
"""Taken only to give a budget its lock, at its first settling."""
