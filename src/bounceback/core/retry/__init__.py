"""Retry: backoff maths, the retry engine's configuration and state, and the retry budget."""

from __future__ import annotations

from bounceback.core.retry._backoff import Backoff, BackoffKind, Jitter
from bounceback.core.retry._batched_ledger import BatchedLedger, BatchingLedger
from bounceback.core.retry._budget import (
    BudgetLedger,
    BudgetReading,
    BudgetRule,
    LocalLedger,
    RetryBudget,
    budget_from_settings,
)
from bounceback.core.retry._engine import REFUSALS, BreakerPort, BudgetPort, Engine
from bounceback.core.retry._state import (
    RUN_PREFIX,
    AttemptHistory,
    AttemptRecord,
    GiveUp,
    RetryConfig,
    Run,
    attach_history,
    call_with_timeout,
)

__all__ = [
    "AttemptHistory",
    "AttemptRecord",
    "Backoff",
    "BackoffKind",
    "BatchedLedger",
    "BatchingLedger",
    "BreakerPort",
    "BudgetLedger",
    "BudgetPort",
    "BudgetReading",
    "BudgetRule",
    "Engine",
    "GiveUp",
    "Jitter",
    "LocalLedger",
    "REFUSALS",
    "RUN_PREFIX",
    "RetryBudget",
    "RetryConfig",
    "Run",
    "attach_history",
    "budget_from_settings",
    "call_with_timeout",
]
