"""The journal tables (component ``journal`` of the home database) and the records read back from them.

Four tables:

``journal_runs``
    One row per recovery run: a call whose first attempt failed. ``outcome`` stays NULL while the run is
    going on, then becomes ``recovered`` or ``gave-up`` (with the ``reason``). A command run by
    ``bounceback run`` has its row from the start of its first attempt (``attempts`` 0 until that attempt
    fails); the row is deleted again when that attempt succeeds.
``journal_attempts``
    One row per attempt of a run: the failed ones, and the one that succeeded.
``journal_breaker_changes`` / ``journal_rejections``
    Breaker state changes, and calls a breaker refused (counted per operation and minute, not one row each).
``journal_limits``
    The latest reading of each process's concurrency and rate limiters (one row per limiter and process,
    replaced about once a second by its journal writer), for the dashboard's occupancy and rate. A limit
    shared through a store (``shared``: the store's name) also carries the fleet's reading from that store
    (``fleet_used``), so the dashboard shows the fleet's limit once instead of a sum over processes.
``journal_cancel_requests``
    A person asked (from the CLI or the dashboard) that a run stop waiting; the process that owns the run
    picks the request up and cancels it.
"""

from __future__ import annotations

from dataclasses import dataclass

from bounceback.stores._home import register_migrations

__all__ = [
    "AttemptEntry",
    "BreakerChange",
    "CancelRequest",
    "LimitReading",
    "OperationCounts",
    "RunEntry",
]

_MIGRATIONS = [
    """
    CREATE TABLE journal_runs (
        run_id          TEXT PRIMARY KEY,
        operation       TEXT    NOT NULL,
        started_at      REAL    NOT NULL,   -- wall time of the first attempt's start
        updated_at      REAL    NOT NULL,   -- wall time of the last event seen
        ended_at        REAL,               -- NULL while the run goes on
        outcome         TEXT,               -- NULL, 'recovered' or 'gave-up'
        reason          TEXT,               -- why it gave up (attempts, deadline, permanent, cancelled, ...)
        attempts        INTEGER NOT NULL,   -- attempts made so far
        max_attempts    INTEGER,            -- NULL: limited by the deadline only
        deadline_at     REAL,
        next_try_at     REAL,               -- wall time of the next attempt while waiting
        last_error_type TEXT,
        last_error      TEXT,
        last_kind       TEXT,
        breaker_state   TEXT,
        pid             INTEGER NOT NULL,
        host            TEXT    NOT NULL
    );
    CREATE INDEX journal_runs_started ON journal_runs (started_at);
    CREATE INDEX journal_runs_operation ON journal_runs (operation, started_at);
    CREATE INDEX journal_runs_open ON journal_runs (run_id) WHERE outcome IS NULL;
    CREATE TABLE journal_attempts (
        run_id        TEXT    NOT NULL REFERENCES journal_runs (run_id) ON DELETE CASCADE,
        attempt       INTEGER NOT NULL,
        operation     TEXT    NOT NULL,
        at            REAL    NOT NULL,     -- wall time the attempt ended
        elapsed       REAL    NOT NULL,     -- seconds since the run started
        outcome       TEXT    NOT NULL,     -- 'failed' or 'succeeded'
        error_type    TEXT,
        error         TEXT,
        kind          TEXT,                 -- transient, throttled, permanent
        kind_reason   TEXT,
        delay         REAL,                 -- the wait that followed (NULL when none)
        retry_at      REAL,
        breaker_state TEXT,
        PRIMARY KEY (run_id, attempt)
    );
    CREATE INDEX journal_attempts_at ON journal_attempts (at);
    CREATE TABLE journal_breaker_changes (
        id         INTEGER PRIMARY KEY,
        name       TEXT NOT NULL,
        at         REAL NOT NULL,
        old_state  TEXT NOT NULL,
        new_state  TEXT NOT NULL,
        reason     TEXT NOT NULL,
        open_until REAL,
        pid        INTEGER NOT NULL,
        host       TEXT NOT NULL
    );
    CREATE INDEX journal_breaker_changes_at ON journal_breaker_changes (at);
    CREATE INDEX journal_breaker_changes_name ON journal_breaker_changes (name, at);
    CREATE TABLE journal_rejections (
        operation TEXT    NOT NULL,
        minute    INTEGER NOT NULL,          -- floor(wall time / 60)
        count     INTEGER NOT NULL,
        PRIMARY KEY (operation, minute)
    );
    CREATE TABLE journal_cancel_requests (
        run_id       TEXT PRIMARY KEY,
        requested_at REAL NOT NULL,
        requested_by TEXT NOT NULL,
        reason       TEXT NOT NULL,
        handled_at   REAL,                   -- set by the process that cancelled the run
        handled_pid  INTEGER
    );
    CREATE INDEX journal_cancel_requests_open ON journal_cancel_requests (run_id) WHERE handled_at IS NULL;
    """,
    """
    CREATE TABLE journal_limits (
        name      TEXT    NOT NULL,
        kind      TEXT    NOT NULL,          -- concurrency | rate
        pid       INTEGER NOT NULL,
        host      TEXT    NOT NULL,
        at        REAL    NOT NULL,          -- wall time of the reading
        used      REAL    NOT NULL,          -- concurrency: calls in flight; rate: tokens in the bucket
        waiting   INTEGER NOT NULL,          -- concurrency: calls queued; rate: 0
        capacity  REAL    NOT NULL,          -- concurrency: max_in_flight; rate: calls per second
        rejected  INTEGER NOT NULL,          -- refusals since the limiter was made
        PRIMARY KEY (name, kind, pid, host)
    );
    """,
    """
    ALTER TABLE journal_limits ADD COLUMN shared TEXT;      -- the store's name when shared by processes
    ALTER TABLE journal_limits ADD COLUMN fleet_used REAL;  -- shared: in flight / tokens read from the store
    """,
]

register_migrations("journal", _MIGRATIONS)


@dataclass(frozen=True, slots=True)
class RunEntry:
    """One recovery run as the journal holds it.

    ``status`` is ``running`` (no outcome yet, its process alive), ``recovered``, ``gave-up``, or
    ``abandoned`` (no outcome, and its process on this host is gone: killed, or the machine restarted).
    Times are wall-clock epoch seconds. ``attempts`` counts the attempts made so far: 0 for a command of
    ``bounceback run`` whose first attempt is running (nothing has failed yet).

    >>> entry = RunEntry("ab12-1", "fetch", 100.0, 103.0, 103.0, "recovered", None, 3, 5, None, None,
    ...                  "ConnectionRefusedError", "refused", "transient", "closed", 4242, "box", "recovered")
    >>> entry.duration
    3.0
    """

    run_id: str
    operation: str
    started_at: float
    updated_at: float
    ended_at: float | None
    outcome: str | None
    reason: str | None
    attempts: int
    max_attempts: int | None
    deadline_at: float | None
    next_try_at: float | None
    last_error_type: str | None
    last_error: str | None
    last_kind: str | None
    breaker_state: str | None
    pid: int
    host: str
    status: str

    @property
    def duration(self) -> float:
        """Seconds from the first attempt to the end (or to the last event while it goes on)."""
        return (self.ended_at if self.ended_at is not None else self.updated_at) - self.started_at


@dataclass(frozen=True, slots=True)
class AttemptEntry:
    """One attempt of a run: ``outcome`` ``failed`` (with the error) or ``succeeded``.

    >>> AttemptEntry("ab12-1", 1, "fetch", 100.5, 0.5, "failed", "TimeoutError", "", "transient",
    ...              "TimeoutError: the connection failed", 0.2, 100.7, None).delay
    0.2
    """

    run_id: str
    attempt: int
    operation: str
    at: float
    elapsed: float
    outcome: str
    error_type: str | None
    error: str | None
    kind: str | None
    kind_reason: str | None
    delay: float | None
    retry_at: float | None
    breaker_state: str | None


@dataclass(frozen=True, slots=True)
class BreakerChange:
    """A breaker moved from ``old_state`` to ``new_state`` at wall time ``at``.

    >>> BreakerChange("db", 100.0, "closed", "open", "failure rate 60% >= 50%", 130.0, 4242, "box").new_state
    'open'
    """

    name: str
    at: float
    old_state: str
    new_state: str
    reason: str
    open_until: float | None
    pid: int
    host: str


@dataclass(frozen=True, slots=True)
class OperationCounts:
    """What the journal holds about one operation since some time.

    ``runs`` counts recoveries (calls whose first attempt failed) and the commands of ``bounceback run``
    still at their first attempt (also counted in ``running``); ``failed_attempts`` every failed
    attempt; ``rejections`` calls a breaker refused; ``last_at`` the wall time of the latest run activity.

    >>> OperationCounts("fetch", 4, 3, 1, 0, 0, 7, 2, 190.0).runs
    4
    """

    operation: str
    runs: int
    recovered: int
    gave_up: int
    running: int
    abandoned: int
    failed_attempts: int
    rejections: int
    last_at: float | None


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """A request that a run stop its automatic recovery; ``handled_at`` is set once its process acted.

    >>> CancelRequest("ab12-1", 100.0, "ann@box/77", "operator pressed Cancel", None, None).handled
    False
    """

    run_id: str
    requested_at: float
    requested_by: str
    reason: str
    handled_at: float | None
    handled_pid: int | None

    @property
    def handled(self) -> bool:
        """True once the owning process cancelled the run."""
        return self.handled_at is not None


@dataclass(frozen=True, slots=True)
class LimitReading:
    """One process's latest reading of one limiter (``kind`` ``concurrency`` or ``rate``).

    For a concurrency limiter ``used`` is the calls in flight, ``waiting`` the calls queued and ``capacity``
    its ``max_in_flight``; for a rate limiter ``used`` is the tokens in the bucket (negative while waiting
    calls hold reservations) and ``capacity`` the calls per second. ``at`` is the wall time of the reading.

    >>> LimitReading("search", "rate", 42, "box", 100.0, 3.5, 0, 10.0, 2).kind
    'rate'
    """

    name: str
    kind: str
    pid: int
    host: str
    at: float
    used: float
    waiting: int
    capacity: float
    rejected: int
    shared: str | None = None
    """The store's name (``redis://host:6379/0``) for a limit shared by processes; None for a local one."""
    fleet_used: float | None = None
    """Shared: the fleet's calls in flight (live leases) or tokens left, read from the store when the
    reading was taken; None while the store could not be reached (and for a local limit)."""
