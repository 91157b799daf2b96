"""Watching recovery: the events a policy, a breaker and a ticket emit, the bus that carries them, logging
of events, the redaction applied to error text, and the registry of named policies and breakers that the CLI and
the dashboard list.
"""

from __future__ import annotations

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

__all__ = [
    "AttemptFailed",
    "AttemptHedged",
    "BreakerClosed",
    "BreakerHalfOpened",
    "BreakerOpened",
    "BreakerStateChanged",
    "CallRejected",
    "Event",
    "EventBus",
    "FaultInjected",
    "HealthChecked",
    "LimitRejected",
    "RecoveryExhausted",
    "RecoverySucceeded",
    "Registry",
    "RetryScheduled",
    "RunEnded",
    "RunStarted",
    "SettingsChanged",
    "StoreRecovered",
    "StoreUnavailable",
    "TicketOpened",
    "TicketResolved",
    "default_bus",
    "event_fields",
    "log_events",
    "redact",
    "registry",
]
