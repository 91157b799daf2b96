"""The discrete-event loop: clients, their policy, and a service, on virtual time.

Events sit in a heap ordered by (time, sequence number), so equal times run in the order they were
scheduled and a run is a pure function of the model, the policy and the seed. Nothing sleeps: a backoff
wait is an event in the future. The retry decision follows the engine's order (attempt limit, backoff
delay, a breaker's "come back at" hint, deadline, budget), so what the simulation shows is what a
:class:`bounceback.Policy` with the same settings would do.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import deque
from typing import Any

from bounceback.core._events import EventBus
from bounceback.core.breaker._breaker import CircuitBreaker
from bounceback.core.classify._rules import Classification, ErrorKind
from bounceback.core.retry._budget import LocalLedger, RetryBudget
from bounceback.core.strategies._limiter import ConcurrencyLimiter
from bounceback.core.strategies._throttle import AdaptiveThrottle
from bounceback.errors import BulkheadFull, CircuitOpenError, RateLimitExceeded
from bounceback.sim._clock import VirtualClock
from bounceback.sim._models import OK, Model
from bounceback.sim._report import PolicyResult, percentile, recovery_seconds
from bounceback.sim._spec import BreakerSpec, BudgetSpec, PolicySpec

__all__ = ["simulate"]

_ARRIVE = 0
_ATTEMPT = 1
_DONE = 2
_HEDGE = 3  # a hedge's delay is over: send another copy if the attempt is still unanswered
_COPY_DONE = 4  # a hedged copy's answer
_HEDGE_SAMPLES = 200  # latencies kept for a percentile delay, as bounceback.Hedge keeps
_HEDGE_MIN_SAMPLES = 20

_FAILED = Classification(ErrorKind.TRANSIENT, "simulated failure")
_OPERATION = "simulated"


class _Request:
    __slots__ = (
        "attempt",
        "client",
        "hedges",
        "live",
        "paid",
        "permit",
        "previous",
        "sent",
        "slot",
        "started",
        "timer",
        "token",
        "won",
    )

    def __init__(self, client: int, started: float) -> None:
        self.client = client
        self.started = started
        self.attempt = 1
        self.previous = 0.0
        self.token = 0
        self.permit: Any = None
        self.paid = False  # this attempt has its rate-limit token (it waited for it)
        self.slot = False  # this attempt holds a concurrency slot
        # Hedging, for the current attempt: when its first copy was sent, copies still out, hedges sent,
        # and whether one of them has answered with a success (later answers are discarded).
        self.sent = 0.0
        self.live = 0
        self.hedges = 0
        self.won = False
        self.timer: _Copy | None = None


class _Copy:
    """A hedged copy in flight: its request, its service token, when it was sent, and for which attempt."""

    __slots__ = ("attempt", "req", "sent", "token")

    def __init__(self, req: _Request, token: int, sent: float) -> None:
        self.req = req
        self.token = token
        self.sent = sent
        self.attempt = req.attempt


def _make_breakers(
    spec: BreakerSpec, n: int, clock: VirtualClock, rng: random.Random
) -> list[CircuitBreaker]:
    # Unnamed, so a thousand simulated breakers stay out of the process-wide registry; a private bus,
    # so a simulation does not flood the subscribers of the real program; a seeded generator for the
    # open-time jitter, so a run stays a pure function of its seed.
    bus = EventBus()
    return [CircuitBreaker(clock=clock, bus=bus, timers=False, rng=rng, **spec.options) for _ in range(n)]


def _make_budgets(spec: BudgetSpec, n: int, clock: VirtualClock) -> list[RetryBudget]:
    def one(name: str) -> RetryBudget:
        return RetryBudget(
            spec.ratio,
            min_per_second=spec.min_per_second,
            window=spec.window,
            name=name,
            clock=clock,
            ledger=LocalLedger(),
        )

    if spec.shared:
        return [one("fleet")] * n
    return [one(f"client-{i}") for i in range(n)]


def simulate(model: Model, spec: PolicySpec, *, seed: int = 0) -> PolicyResult:
    """Run ``model``'s clients through ``spec`` once and measure it.

    The same ``seed`` gives the same figures. Requests arrive from a random stream of their own, so every
    policy run with one seed sees exactly the same requests (a fair comparison).

    >>> from bounceback import Backoff
    >>> from bounceback.sim import Contention, PolicySpec
    >>> spec = PolicySpec("full", Backoff(initial=0.005, max_delay=2), attempts=None)
    >>> result = simulate(Contention(clients=20), spec, seed=1)
    >>> result.succeeded, result.calls > 20
    (20, True)
    """
    clock = VirtualClock()
    arrivals = random.Random(f"{seed}/arrivals")
    rng = random.Random(f"{seed}/jitter")
    service = model.build(spec.attempt_timeout)
    begin = service.begin
    finish = service.finish
    n = model.clients
    breakers = (
        _make_breakers(spec.breaker, n, clock, random.Random(f"{seed}/breakers"))
        if spec.breaker is not None
        else None
    )
    budgets = _make_budgets(spec.budget, n, clock) if spec.budget is not None else None
    throttles = None
    if spec.throttle is not None:
        shed_rng = random.Random(f"{seed}/throttle")
        throttles = [
            AdaptiveThrottle(spec.throttle.k, window=spec.throttle.window, clock=clock, rng=shed_rng)
            for _ in range(n)
        ]

    # Limits per client (as per process), on a private bus: a simulation must not reach the program's events.
    quiet = EventBus()
    limiters = None
    if spec.concurrency is not None:
        size = spec.concurrency.max_in_flight
        limiters = [ConcurrencyLimiter(size, clock=clock, bus=quiet) for _ in range(n)]
    buckets = [spec.rate_limit.build(clock, quiet) for _ in range(n)] if spec.rate_limit is not None else None
    rate_wait = spec.rate_limit.max_wait if spec.rate_limit is not None else 0.0

    backoff_delay = spec.backoff.delay
    attempts = spec.attempts if spec.attempts is not None else math.inf
    deadline = spec.deadline
    max_hint = spec.max_retry_after
    width = model.bucket_seconds
    incident = model.incident
    inc_start, inc_end = incident if incident is not None else (math.inf, math.inf)
    horizon = model.horizon

    calls_series: list[int] = []
    probes_series: list[int] = []
    started_series: list[int] = []
    first_ok_series: list[int] = []
    latencies: list[float] = []
    requests = succeeded = calls = rejected = refusals = openings = in_incident = requests_in_incident = 0
    shed = 0
    completion = 0.0

    hedge = spec.hedge
    hedges = 0
    seen: deque[float] = deque(maxlen=_HEDGE_SAMPLES)  # latencies of successful copies, for a percentile

    heap: list[tuple[float, int, int, Any]] = []
    push = heapq.heappush
    pop = heapq.heappop
    seq = 0

    def bucket(series: list[int], t: float) -> int:
        b = int(t / width)
        if b >= len(series):
            series.extend([0] * (b + 1 - len(series)))
        return b

    def retry_delay(req: _Request, t: float, hint: float | None, refused: bool = False) -> float | None:
        """The engine's decision after a failed attempt: the wait, or None to give up.

        ``refused``: the attempt met an open breaker (never reached the service), ``hint`` its open time left;
        the wait for its probe is a retry like any other, and spends from the budget.
        """
        nonlocal refusals
        if req.attempt >= attempts:
            return None
        delay = backoff_delay(req.attempt - 1, req.previous, rng)
        if hint is not None:
            if refused and hint > max_hint:
                return None
            delay = max(delay, min(hint, max_hint))
        if deadline != math.inf and (t - req.started) + delay >= deadline:
            return None
        if budgets is not None and not budgets[req.client].try_spend(_OPERATION):
            refusals += 1
            return None
        req.previous = delay
        return delay

    def _free(req: _Request) -> None:
        """Give back the attempt's concurrency slot, if it holds one."""
        if req.slot and limiters is not None:
            limiters[req.client].release()
            req.slot = False

    def end(req: _Request, t: float, ok: bool) -> None:
        nonlocal succeeded, completion
        if ok:
            succeeded += 1
        latencies.append(t - req.started)
        completion = max(completion, t)

    def retry_or_end(req: _Request, t: float) -> None:
        """The attempt failed (every copy of it, when hedged): schedule the next one or give up."""
        nonlocal seq
        delay = retry_delay(req, t, None)
        if delay is None:
            end(req, t, False)
        else:
            req.attempt += 1
            push(heap, (t + delay, seq, _ATTEMPT, req))
            seq += 1

    def hedge_delay() -> float:
        assert hedge is not None
        if hedge.percentile and len(seen) >= _HEDGE_MIN_SAMPLES:
            ordered = sorted(seen)
            return ordered[min(len(ordered) - 1, max(0, math.ceil(hedge.percentile * len(ordered)) - 1))]
        return hedge.delay

    def send_hedge(req: _Request, t: float) -> bool:
        """Send another copy of the request's attempt, if the budget allows; True when sent."""
        nonlocal seq, calls, hedges, in_incident, refusals
        assert hedge is not None
        if budgets is not None and not budgets[req.client].try_spend(_OPERATION):
            refusals += 1  # counted with the retries the budget refused: hedges spend from it too
            return False
        req.hedges += 1
        req.live += 1
        hedges += 1
        calls += 1
        calls_series[bucket(calls_series, t)] += 1
        if inc_start <= t < inc_end:
            in_incident += 1
        done_at, token = begin(t)
        push(heap, (done_at, seq, _COPY_DONE, _Copy(req, token, t)))
        seq += 1
        req.timer = None
        if req.hedges < hedge.max_hedges:
            schedule_hedge(req, t)
        return True

    def schedule_hedge(req: _Request, t: float) -> None:
        nonlocal seq
        timer = req.timer = _Copy(req, 0, t)
        push(heap, (t + hedge_delay(), seq, _HEDGE, timer))
        seq += 1

    def copy_failed(req: _Request, t: float) -> None:
        """A copy failed: wait for the others; with none out, hedge at once if any is left, else retry."""
        assert hedge is not None
        if req.live > 0:
            return
        if req.hedges < hedge.max_hedges and send_hedge(req, t):
            return
        retry_or_end(req, t)

    if horizon <= 0:
        # One burst: every client makes one request at time zero.
        for client in range(n):
            push(heap, (0.0, seq, _ATTEMPT, _Request(client, 0.0)))
            seq += 1
            requests += 1
            if budgets is not None:
                budgets[client].record_call(_OPERATION)
        started_series.append(n)
        first_ok_series.append(0)
        peak = 0.0
    else:
        peak = max(model.request_rate(t) for t in _probe_times(model))
        push(heap, (arrivals.expovariate(peak), seq, _ARRIVE, None))
        seq += 1

    while heap:
        t, _, kind, req = pop(heap)
        clock.now = t
        if kind == _ARRIVE:
            # Thinning: draw at the peak rate, keep a request with probability rate(t) / peak.
            nxt = t + arrivals.expovariate(peak)
            if nxt < horizon:
                push(heap, (nxt, seq, _ARRIVE, None))
                seq += 1
            rate = model.request_rate(t)
            if rate < peak and arrivals.random() * peak >= rate:
                continue
            req = _Request(arrivals.randrange(n), t)
            requests += 1
            b = bucket(started_series, t)
            started_series[b] += 1
            if inc_start <= t < inc_end:
                requests_in_incident += 1
            if budgets is not None:
                budgets[req.client].record_call(_OPERATION)
            kind = _ATTEMPT
        if kind == _HEDGE:
            timer: _Copy = req
            owner = timer.req
            # Only the latest timer of the attempt counts (a hedge sent at once after a failure replaced it).
            if owner.timer is timer and not owner.won and owner.live > 0:
                send_hedge(owner, t)
            continue
        if kind == _COPY_DONE:
            copy: _Copy = req
            owner = copy.req
            outcome = finish(t, copy.token)
            if owner.attempt != copy.attempt or owner.won:
                continue  # an answer nobody waits for any more: discarded
            owner.live -= 1
            if outcome == OK:
                seen.append(t - copy.sent)
                owner.won = True
                if owner.attempt == 1:
                    first_ok_series[bucket(first_ok_series, owner.started)] += 1
                end(owner, t, True)
            else:
                copy_failed(owner, t)
            continue
        assert req is not None
        if kind == _ATTEMPT:
            # The gates in a Policy's order: rate limit, concurrency limit, throttle, breaker.
            if buckets is not None and not req.paid:
                try:
                    wait = buckets[req.client].reserve(rate_wait)
                except RateLimitExceeded:
                    wait = None
                if wait is None:
                    # Refused for want of a token: a Policy does not retry it; never sent.
                    shed += 1
                    if req.attempt == 1:
                        bucket(first_ok_series, req.started)
                    end(req, t, False)
                    continue
                if wait > 0:
                    req.paid = True  # the token is reserved: come back when it is due
                    push(heap, (t + wait, seq, _ATTEMPT, req))
                    seq += 1
                    continue
            req.paid = False
            if limiters is not None:
                try:
                    limiters[req.client].acquire()
                except BulkheadFull:
                    # Refused, never sent: retried after a backoff like any throttled error.
                    rejected += 1
                    delay = retry_delay(req, t, None)
                    if req.attempt == 1:
                        bucket(first_ok_series, req.started)
                    if delay is None:
                        end(req, t, False)
                    else:
                        req.attempt += 1
                        push(heap, (t + delay, seq, _ATTEMPT, req))
                        seq += 1
                    continue
                req.slot = True
            if throttles is not None and not throttles[req.client].admit():
                # Shed here, never sent: the engine gives up at once (reason "throttled").
                shed += 1
                _free(req)
                if req.attempt == 1:
                    bucket(first_ok_series, req.started)
                end(req, t, False)
                continue
            brk = breakers[req.client] if breakers is not None else None
            if brk is not None:
                probing = brk.state_name != "closed"
                try:
                    req.permit = brk.acquire()
                except (CircuitOpenError, BulkheadFull) as exc:
                    rejected += 1
                    _free(req)
                    hint = exc.retry_after if isinstance(exc, CircuitOpenError) else None
                    first = req.attempt == 1
                    if isinstance(exc, CircuitOpenError) and hint is None:
                        delay = None  # forced open: only a person can close it; the engine gives up
                    else:
                        delay = retry_delay(req, t, hint, refused=isinstance(exc, CircuitOpenError))
                    if first:
                        bucket(first_ok_series, req.started)
                    if delay is None:
                        end(req, t, False)
                    else:
                        req.attempt += 1
                        push(heap, (t + delay, seq, _ATTEMPT, req))
                        seq += 1
                    continue
                if probing:
                    probes_series[bucket(probes_series, t)] += 1
            calls += 1
            calls_series[bucket(calls_series, t)] += 1
            if inc_start <= t < inc_end:
                in_incident += 1
            done_at, req.token = begin(t)
            push(heap, (done_at, seq, _DONE, req))
            seq += 1
            if hedge is not None:
                req.sent, req.live, req.hedges, req.won = t, 1, 0, False
                schedule_hedge(req, t)
            continue
        # _DONE
        _free(req)
        outcome = finish(t, req.token)
        ok = outcome == OK
        if throttles is not None:
            throttles[req.client].record(True, ok)  # every simulated failure is an overload or outage
        if breakers is not None:
            brk = breakers[req.client]
            was_open = brk.state_name == "open"
            brk.release(req.permit, None if ok else _FAILED)
            if not was_open and brk.state_name == "open":
                openings += 1
            req.permit = None
        if hedge is not None:
            if req.won:
                continue  # a hedged copy answered first: this answer is discarded
            req.live -= 1
            if ok:
                req.won = True
                seen.append(t - req.sent)
            elif req.live > 0 or req.hedges < hedge.max_hedges:
                copy_failed(req, t)
                continue
        if req.attempt == 1 and ok:
            first_ok_series[bucket(first_ok_series, req.started)] += 1
        if ok:
            end(req, t, True)
            continue
        retry_or_end(req, t)

    latencies.sort()
    size = max(len(started_series), len(first_ok_series))
    started_series.extend([0] * (size - len(started_series)))
    first_ok_series.extend([0] * (size - len(first_ok_series)))
    return PolicyResult(
        label=spec.label,
        description=spec.describe(),
        requests=requests,
        succeeded=succeeded,
        calls=calls,
        rejected=rejected,
        budget_refusals=refusals,
        shed=shed,
        completion=completion,
        calls_during_incident=in_incident,
        requests_during_incident=requests_in_incident,
        recovery_seconds=recovery_seconds(started_series, first_ok_series, width, incident),
        latency_p50=percentile(latencies, 0.5),
        latency_p99=percentile(latencies, 0.99),
        breaker_openings=openings,
        bucket_seconds=width,
        calls_series=tuple(calls_series),
        peak_probes=max(probes_series, default=0),
        probes=sum(probes_series),
        probe_span_buckets=_span(probes_series),
        hedges=hedges,
    )


def _span(series: list[int]) -> int:
    """Buckets from the first non-empty one to the last, inclusive (0 when all are empty)."""
    busy = [i for i, n in enumerate(series) if n]
    return busy[-1] - busy[0] + 1 if busy else 0


def _probe_times(model: Model) -> list[float]:
    """Times at which to sample the request rate for its peak: the model's rates are piecewise constant."""
    times = [0.0]
    if model.incident is not None:
        times += list(model.incident)
    return [t for t in times if t < model.horizon] or [0.0]
