"""The strategies beside retry and the breaker: concurrency limit, rate limit, adaptive throttle, the gate chain, fault injection and hedging."""

from __future__ import annotations

from bounceback.core.strategies._chaos import FaultInjector, InjectedFault, active_injectors
from bounceback.core.strategies._gates import Gates
from bounceback.core.strategies._hedge import Hedge
from bounceback.core.strategies._limiter import ConcurrencyLimiter
from bounceback.core.strategies._rate import RateLimiter
from bounceback.core.strategies._shared import (
    LeaseKeeper,
    MemorySharedLimits,
    SharedBucket,
    SharedSlots,
    StoreGuard,
    bucket_reserve,
    bucket_tokens,
    unavailable_choice,
)
from bounceback.core.strategies._throttle import AdaptiveThrottle, is_accepted

__all__ = [
    "AdaptiveThrottle",
    "ConcurrencyLimiter",
    "FaultInjector",
    "Gates",
    "Hedge",
    "InjectedFault",
    "LeaseKeeper",
    "MemorySharedLimits",
    "RateLimiter",
    "SharedBucket",
    "SharedSlots",
    "StoreGuard",
    "active_injectors",
    "bucket_reserve",
    "bucket_tokens",
    "is_accepted",
    "unavailable_choice",
]
