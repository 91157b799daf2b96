"""bounceback: recover from transient errors by yourself; hand the rest to a person with clear guidance.

>>> import bounceback
>>> @bounceback.retry(attempts=3)
... def ping():
...     return "pong"
>>> ping()
'pong'

The names here are the ones a program writes every day. The rest live in namespaces, one per capability:
:mod:`bounceback.events` (events, the bus, logging, the registry), :mod:`bounceback.classify` (rules, packs,
Retry-After), :mod:`bounceback.breakers` (stores, metrics, windows), :mod:`bounceback.strategies` (budget,
throttle, limits, hedging, fault injection), :mod:`bounceback.recovery` (tickets, guidance, choices),
:mod:`bounceback.settings`, :mod:`bounceback.timing` (clocks, cancellation, durations), :mod:`bounceback.errors`,
:mod:`bounceback.stores` (SQLite and Redis) and :mod:`bounceback.testing` (a fake clock and recorders).
"""

from bounceback.core._kinds import Classification, ErrorKind
from bounceback.core._time import CancelToken
from bounceback.core.breaker._breaker import BreakerState, CircuitBreaker
from bounceback.core.breaker._config import BreakerConfig
from bounceback.core.classify._rules import Classifier, on_errno, on_message, on_predicate, on_type
from bounceback.core.policy._attempts import Attempt, Attempts
from bounceback.core.policy._manual import ManualRecovery
from bounceback.core.policy._policy import Policy, RetryAgain, retry
from bounceback.core.retry._backoff import Backoff, BackoffKind, Jitter
from bounceback.core.retry._budget import RetryBudget
from bounceback.core.retry._engine import AttemptRecord, GiveUp, RetryConfig
from bounceback.core.strategies._chaos import FaultInjector
from bounceback.core.strategies._hedge import Hedge
from bounceback.core.strategies._limiter import ConcurrencyLimiter
from bounceback.core.strategies._rate import RateLimiter
from bounceback.core.strategies._throttle import AdaptiveThrottle
from bounceback.errors import (
    AttemptTimeout,
    BouncebackError,
    BulkheadFull,
    CircuitOpenError,
    ConcurrencyLimitExceeded,
    ConfigError,
    RateLimitExceeded,
    RecoveryCancelled,
    RecoveryRequired,
    RequestThrottled,
    RetriesExhausted,
    StoreError,
)

# Registers the error packs of client libraries (Redis, gRPC, Modbus, OPC UA, aiohttp, PostgreSQL); each is
# imported only when an error of its library is first classified.
from bounceback.integrations import _packs as _client_error_packs  # noqa: F401

__version__ = "0.1.0"

__all__ = [
    "AdaptiveThrottle",
    "Attempt",
    "AttemptRecord",
    "AttemptTimeout",
    "Attempts",
    "Backoff",
    "BackoffKind",
    "BouncebackError",
    "BreakerConfig",
    "BreakerState",
    "BulkheadFull",
    "CancelToken",
    "CircuitBreaker",
    "CircuitOpenError",
    "Classification",
    "Classifier",
    "ConcurrencyLimitExceeded",
    "ConcurrencyLimiter",
    "ConfigError",
    "ErrorKind",
    "FaultInjector",
    "GiveUp",
    "Hedge",
    "Jitter",
    "ManualRecovery",
    "Policy",
    "RateLimitExceeded",
    "RateLimiter",
    "RecoveryCancelled",
    "RecoveryRequired",
    "RequestThrottled",
    "RetriesExhausted",
    "RetryAgain",
    "RetryBudget",
    "RetryConfig",
    "StoreError",
    "__version__",
    "on_errno",
    "on_message",
    "on_predicate",
    "on_type",
    "retry",
]
