"""Composition: the Policy that runs the strategies in order, the retry decorator, attempts and manual recovery after give-up."""

from __future__ import annotations

from bounceback.core.policy._attempts import Attempt, Attempts
from bounceback.core.policy._loop import AttemptLoop, Decided, Outcome
from bounceback.core.policy._manual import MODES, PASS, ManualRecovery, chain, current_person
from bounceback.core.policy._parts import UNSET, FallbackArg, RetryAgain, Unset
from bounceback.core.policy._policy import Policy, RetryOptions, retry
from bounceback.core.policy._wrap import wrap_async, wrap_sync

__all__ = [
    "Attempt",
    "AttemptLoop",
    "Attempts",
    "Decided",
    "FallbackArg",
    "MODES",
    "ManualRecovery",
    "Outcome",
    "PASS",
    "Policy",
    "RetryAgain",
    "RetryOptions",
    "UNSET",
    "Unset",
    "chain",
    "current_person",
    "retry",
    "wrap_async",
    "wrap_sync",
]
