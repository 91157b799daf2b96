"""The one schema of every user setting: key, type, default, bounds, unit and a one-line help.

Validation, resolution, the CLI table, the dashboard form and the docs table are all generated from
:data:`SCHEMA`, so they cannot disagree. The defaults here are the ones ``Policy`` uses when no settings
source is given.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Any

from bounceback.core.settings._setting import Setting
from bounceback.errors import ConfigError

__all__ = ["SCHEMA", "lookup"]


def _d(key: str, default: float | None, help: str, **kw: Any) -> Setting:
    kw.setdefault("minimum", 0.0)
    return Setting(key, "duration", default, help, unit="duration", **kw)


_SETTINGS = (
    Setting("retry.max_attempts", "int", 5, "Attempts in all, the first included.", "attempts", 1, 1_000_000),
    _d("retry.initial_delay", 0.2, "Wait before the first retry; later waits grow from it."),
    _d("retry.max_delay", 30.0, "Longest single wait between attempts (a cap on backoff growth)."),
    Setting("retry.multiplier", "float", 2.0, "Growth factor of exponential backoff.", "x", 1, 1000),
    Setting(
        "retry.backoff",
        "choice",
        "exponential",
        "How waits grow between attempts.",
        choices=("constant", "linear", "exponential"),
    ),
    Setting(
        "retry.jitter",
        "choice",
        "full",
        "Randomness added to each wait so clients do not retry in step.",
        choices=("none", "full", "equal", "decorrelated"),
    ),
    _d(
        "retry.deadline",
        30.0,
        "Time limit of the whole call, all attempts and waits included (none: no limit).",
        nullable=True,
        min_exclusive=True,
    ),
    _d("retry.attempt_timeout", None, "Time limit of a single attempt.", nullable=True, min_exclusive=True),
    _d("retry.max_retry_after", 300.0, "Longest server-requested wait (Retry-After) to honour."),
    Setting("breaker.enabled", "bool", True, "Whether named operations pass through a circuit breaker."),
    Setting(
        "breaker.failure_rate",
        "percent",
        50.0,
        "Failure rate in the window that opens the breaker.",
        "%",
        1,
        100,
    ),
    Setting(
        "breaker.slow_call_rate",
        "percent",
        100.0,
        "Slow-call rate in the window that opens the breaker.",
        "%",
        1,
        100,
    ),
    _d("breaker.slow_call_duration", 60.0, "Calls slower than this count as slow.", min_exclusive=True),
    Setting(
        "breaker.window_type",
        "choice",
        "count",
        "Window of recent calls: by count or by time.",
        choices=("count", "time"),
    ),
    Setting(
        "breaker.window",
        "int",
        100,
        "Window size: calls (count window) or seconds (time window).",
        "calls or s",
        1,
        1_000_000,
    ),
    Setting(
        "breaker.min_calls", "int", 10, "Calls in the window before rates are judged.", "calls", 1, 1_000_000
    ),
    Setting(
        "breaker.consecutive_failures",
        "int",
        0,
        "Failures in a row that open the breaker at once.",
        "calls",
        0,
        1_000_000,
        zero_is_off=True,
    ),
    _d(
        "breaker.open_seconds",
        5.0,
        "How long an opened breaker refuses calls before probing (doubling per failed probe).",
        min_exclusive=True,
    ),
    _d(
        "breaker.open_seconds_max",
        15.0,
        "Cap on the open time as it grows after failed probes.",
        min_exclusive=True,
    ),
    Setting(
        "breaker.open_jitter",
        "float",
        0.5,
        "Share of each open time drawn at random, so breakers opened together probe apart.",
        "",
        0,
        0.95,
    ),
    Setting(
        "breaker.half_open_calls", "int", 3, "Probe calls let through while half-open.", "calls", 1, 10_000
    ),
    Setting(
        "breaker.max_in_flight",
        "int",
        0,
        "Calls allowed to run at once (a bulkhead).",
        "calls",
        0,
        1_000_000,
        zero_is_off=True,
    ),
    Setting("budget.enabled", "bool", True, "Whether retries are limited by a retry budget."),
    Setting("budget.ratio", "float", 0.2, "Retries allowed per call in the window, as a fraction.", "", 0, 1),
    Setting(
        "budget.min_per_second",
        "float",
        10.0,
        "Retries always allowed per second, whatever the ratio.",
        "retries/s",
        0,
        1_000_000,
    ),
    _d("budget.window", 10.0, "Window over which the retry budget is counted.", min_exclusive=True),
    Setting(
        "throttle.enabled",
        "bool",
        False,
        "Whether calls are shed locally while the service turns requests away (adaptive throttling).",
    ),
    Setting(
        "throttle.k",
        "float",
        2.0,
        "Requests sent per request the service accepts before calls are shed (lower sheds sooner).",
        "x",
        1,
        100,
    ),
    _d("throttle.window", 30.0, "History over which requests and accepts are counted.", min_exclusive=True),
    Setting(
        "concurrency.max_in_flight",
        "int",
        0,
        "Calls of the operation allowed to run at once in this process (a bulkhead).",
        "calls",
        0,
        1_000_000,
        zero_is_off=True,
    ),
    Setting(
        "concurrency.max_waiting",
        "int",
        0,
        "Calls allowed to queue for a slot when every slot is taken (0: refuse at once).",
        "calls",
        0,
        1_000_000,
    ),
    _d("concurrency.queue_timeout", 1.0, "Longest a queued call waits for a slot before it is refused."),
    Setting(
        "concurrency.shared",
        "bool",
        False,
        "Whether the limit holds across every process sharing store.backend (sqlite: the machine; redis: the fleet).",
    ),
    _d(
        "concurrency.lease",
        10.0,
        "How long a shared slot outlives a process that died holding it (renewed while its call runs).",
        minimum=0.1,
    ),
    Setting(
        "rate_limit.rate",
        "float",
        0.0,
        "Calls per second let through on average (a token bucket; 0: no rate limit).",
        "calls/s",
        0,
        1_000_000_000,
    ),
    Setting(
        "rate_limit.burst",
        "int",
        0,
        "Calls let through at once after a quiet spell (0: one second's worth of the rate).",
        "calls",
        0,
        1_000_000_000,
    ),
    _d(
        "rate_limit.max_wait",
        0.0,
        "Longest a call waits for a token before it is refused (0: refuse at once).",
    ),
    Setting(
        "rate_limit.shared",
        "bool",
        False,
        "Whether one token bucket serves every process sharing store.backend (one store call per call).",
    ),
    _d(
        "hedge.delay",
        1.0,
        "Wait for an answer before a hedge starts another attempt (only for calls marked idempotent in code).",
        min_exclusive=True,
    ),
    Setting(
        "hedge.percentile",
        "float",
        0.0,
        "Hedge after this percentile of observed latencies (95: the slowest 5%); 0 uses hedge.delay.",
        "%",
        0,
        99,
    ),
    Setting(
        "hedge.max_hedges",
        "int",
        1,
        "Extra attempts a slow call may get beside the first.",
        "attempts",
        1,
        10,
    ),
    Setting(
        "chaos.enabled",
        "bool",
        False,
        "Whether fault injection acts on the operation (game days only; shown by the status command).",
    ),
    Setting(
        "chaos.error_rate", "float", 0.0, "Fraction of calls that fail with an injected error.", "", 0, 1
    ),
    Setting(
        "chaos.error",
        "choice",
        "connection",
        "What an injected failure raises.",
        choices=("connection", "timeout", "throttled"),
    ),
    Setting("chaos.latency_rate", "float", 0.0, "Fraction of calls delayed before they run.", "", 0, 1),
    _d("chaos.latency", 1.0, "Delay added to a delayed call."),
    Setting(
        "store.backend",
        "choice",
        "sqlite",
        "Where breaker state is shared between processes.",
        choices=("memory", "sqlite", "redis"),
        per_operation=False,
    ),
    Setting(
        "store.redis_url",
        "text",
        "",
        "Redis server for the redis backend.",
        schemes=("redis://", "rediss://", "unix://", "redis+cluster://", "redis+sentinel://"),
        per_operation=False,
    ),
    Setting(
        "store.on_unavailable",
        "choice",
        "fail-open",
        "What shared breakers and limits do when the store cannot be reached.",
        choices=("fail-open", "fail-closed"),
        per_operation=False,
    ),
    _d(
        "store.flush_seconds",
        0.05,
        "Longest wait before a process sends its counted outcomes (0: every call).",
        maximum=60.0,
        zero_is_off=True,
        per_operation=False,
    ),
    Setting(
        "store.flush_count",
        "int",
        1000,
        "Failed or slow outcomes that make a process send them at once.",
        "outcomes",
        1,
        1_000_000,
        per_operation=False,
    ),
    _d(
        "store.staleness",
        1.0,
        "Oldest shared state a process acts on before the store counts as away.",
        min_exclusive=True,
        maximum=3600.0,
        per_operation=False,
    ),
    Setting(
        "manual.mode",
        "choice",
        "auto",
        "What happens when automatic recovery gives up.",
        choices=("auto", "raise", "prompt", "park"),
    ),
    _d(
        "manual.ticket_retention",
        30 * 86400.0,
        "How long resolved recovery tickets are kept.",
        min_exclusive=True,
        per_operation=False,
    ),
    Setting(
        "display.progress",
        "choice",
        "auto",
        "Terminal progress display.",
        choices=("auto", "rich", "plain", "off"),
        per_operation=False,
    ),
    _d(
        "display.refresh",
        0.1,
        "Interval between progress redraws.",
        minimum=0.02,
        maximum=1.0,
        per_operation=False,
    ),
    Setting(
        "journal.enabled", "bool", True, "Whether recoveries are written to the journal.", per_operation=False
    ),
    _d(
        "journal.retention",
        7 * 86400.0,
        "How long journal entries are kept.",
        min_exclusive=True,
        per_operation=False,
    ),
    Setting(
        "run.transient_codes", "codes", (75,), "Exit codes of a command that are worth a retry.", "exit codes"
    ),
    Setting(
        "run.permanent_codes",
        "codes",
        (126, 127),
        "Exit codes of a command that are never retried.",
        "exit codes",
    ),
    Setting(
        "run.unknown_codes",
        "choice",
        "transient",
        "How other non-zero exit codes are treated.",
        choices=("transient", "permanent"),
    ),
    Setting("notify.command", "text", "", "Shell command run when a person is needed (empty: none)."),
    Setting(
        "notify.webhook",
        "text",
        "",
        "URL that receives a POST when a person is needed (empty: none).",
        schemes=("http://", "https://"),
    ),
)

SCHEMA: Mapping[str, Setting] = {s.key: s for s in _SETTINGS}
"""Every setting by key, in display order (grouped by section)."""


def lookup(key: str, field: str | None = None) -> Setting:
    """The :class:`Setting` for ``key``, or ConfigError with a "did you mean" suggestion.

    >>> lookup("retry.max_attempts").default
    5
    >>> try:
    ...     lookup("retry.max_attempt")
    ... except ConfigError as exc:
    ...     print(exc.hint)
    did you mean 'retry.max_attempts'?
    """
    found = SCHEMA.get(key)
    if found is not None:
        return found
    # A bare name ("max_attempts") names its key exactly; otherwise the single closest spelling.
    suggestions = [k for k in SCHEMA if k.partition(".")[2] == key]
    suggestions = suggestions or difflib.get_close_matches(key, SCHEMA, n=1, cutoff=0.6)
    if suggestions:
        hint = "did you mean " + " or ".join(repr(s) for s in suggestions) + "?"
    else:
        hint = "`bounceback settings list` shows every key"
    raise ConfigError(field or "key", key, "a known setting such as retry.max_attempts", hint=hint)
