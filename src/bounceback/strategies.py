"""The strategies beside retry and the breaker, composed by a Policy: the retry budget, adaptive
client-side throttling, the concurrency limit, the rate limit, hedging and fault injection for game days.
"""

from __future__ import annotations

from bounceback.core.retry._budget import RetryBudget
from bounceback.core.strategies._chaos import FaultInjector, InjectedFault, active_injectors
from bounceback.core.strategies._hedge import Hedge
from bounceback.core.strategies._limiter import ConcurrencyLimiter
from bounceback.core.strategies._rate import RateLimiter
from bounceback.core.strategies._throttle import AdaptiveThrottle

__all__ = [
    "AdaptiveThrottle",
    "ConcurrencyLimiter",
    "FaultInjector",
    "Hedge",
    "InjectedFault",
    "RateLimiter",
    "RetryBudget",
    "active_injectors",
]
