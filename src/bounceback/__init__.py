"""bounceback: recover from transient errors by yourself; hand the rest to a person with clear guidance.

>>> import bounceback
>>> @bounceback.retry(attempts=3)
... def ping():
...     return "pong"
>>> ping()
'pong'
"""

from bounceback.core._events import (
    AttemptFailed,
    AttemptHedged,
    BreakerClosed,
    BreakerHalfOpened,
    BreakerOpened,
    BreakerStateChanged,
    CallRejected,
    Event,
    EventBus,
    FaultInjected,
    HealthChecked,
    LimitRejected,
    RecoveryExhausted,
    RecoverySucceeded,
    RetryScheduled,
    RunEnded,
    RunStarted,
    SettingsChanged,
    StoreRecovered,
    StoreUnavailable,
    TicketOpened,
    TicketResolved,
    default_bus,
)
from bounceback.core._log import event_fields, log_events
from bounceback.core._redact import redact
from bounceback.core._registry import Registry, registry
from bounceback.core._time import SYSTEM_CLOCK, CancelToken, Clock, SystemClock, parse_duration
from bounceback.core.breaker._breaker import BreakerMetrics, BreakerState, CircuitBreaker
from bounceback.core.breaker._config import BreakerConfig
from bounceback.core.breaker._store import BreakerStore, MemoryBreakerStore, SharedState, WindowSpec
from bounceback.core.breaker._window import WindowCounts
from bounceback.core.classify._packs import ErrorPack, register_pack, unregister_pack
from bounceback.core.classify._retry_after import parse_retry_after
from bounceback.core.classify._rules import (
    DEFAULT_CLASSIFIER,
    Classification,
    Classifier,
    ErrorKind,
    Rule,
    classify,
    mark,
    on_errno,
    on_message,
    on_predicate,
    on_type,
)
from bounceback.core.policy._attempts import Attempt, Attempts
from bounceback.core.policy._manual import PASS, ManualRecovery, chain
from bounceback.core.policy._policy import Policy, RetryAgain, retry
from bounceback.core.recovery._guidance import GuidanceCatalog, Step, default_guidance
from bounceback.core.recovery._ports import MemoryTickets, TicketPrompter, TicketStore
from bounceback.core.recovery._tickets import (
    Choice,
    ChoiceKind,
    GuidanceStep,
    Record,
    Resolution,
    Ticket,
    open_ticket,
)
from bounceback.core.retry._backoff import Backoff, BackoffKind, Jitter
from bounceback.core.retry._budget import RetryBudget
from bounceback.core.retry._engine import AttemptRecord, GiveUp, RetryConfig
from bounceback.core.settings._source import SettingsSource, StaticSettings
from bounceback.core.strategies._chaos import FaultInjector, InjectedFault, active_injectors
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
    "AttemptFailed",
    "AttemptHedged",
    "AttemptRecord",
    "AttemptTimeout",
    "Attempts",
    "Backoff",
    "BackoffKind",
    "BouncebackError",
    "BreakerClosed",
    "BreakerConfig",
    "BreakerHalfOpened",
    "BreakerMetrics",
    "BreakerOpened",
    "BreakerState",
    "BreakerStateChanged",
    "BreakerStore",
    "BulkheadFull",
    "CallRejected",
    "CancelToken",
    "Choice",
    "ChoiceKind",
    "CircuitBreaker",
    "CircuitOpenError",
    "Classification",
    "Classifier",
    "Clock",
    "ConcurrencyLimitExceeded",
    "ConcurrencyLimiter",
    "ConfigError",
    "DEFAULT_CLASSIFIER",
    "ErrorKind",
    "ErrorPack",
    "Event",
    "EventBus",
    "FaultInjected",
    "FaultInjector",
    "GiveUp",
    "GuidanceCatalog",
    "GuidanceStep",
    "HealthChecked",
    "Hedge",
    "InjectedFault",
    "Jitter",
    "LimitRejected",
    "ManualRecovery",
    "MemoryBreakerStore",
    "MemoryTickets",
    "PASS",
    "Policy",
    "RateLimitExceeded",
    "RateLimiter",
    "Record",
    "RecoveryCancelled",
    "RecoveryExhausted",
    "RecoveryRequired",
    "RecoverySucceeded",
    "Registry",
    "RequestThrottled",
    "Resolution",
    "RetriesExhausted",
    "RetryAgain",
    "RetryBudget",
    "RetryConfig",
    "RetryScheduled",
    "Rule",
    "RunEnded",
    "RunStarted",
    "SYSTEM_CLOCK",
    "SettingsChanged",
    "SettingsSource",
    "SharedState",
    "StaticSettings",
    "Step",
    "StoreError",
    "StoreRecovered",
    "StoreUnavailable",
    "SystemClock",
    "Ticket",
    "TicketOpened",
    "TicketPrompter",
    "TicketResolved",
    "TicketStore",
    "WindowCounts",
    "WindowSpec",
    "__version__",
    "active_injectors",
    "chain",
    "classify",
    "default_bus",
    "default_guidance",
    "event_fields",
    "log_events",
    "mark",
    "on_errno",
    "on_message",
    "on_predicate",
    "on_type",
    "open_ticket",
    "parse_duration",
    "parse_retry_after",
    "redact",
    "register_pack",
    "registry",
    "retry",
    "unregister_pack",
]
