"""Manual recovery: when automatic recovery gives up, a ticket with guidance drawn from the error, the
choices a person has (retry now, skip, abort, use a fallback), the record of what worked, and the ports through
which tickets are stored and people are asked.
"""

from __future__ import annotations

from bounceback.core.policy._manual import PASS, ManualRecovery, chain
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

__all__ = [
    "Choice",
    "ChoiceKind",
    "GuidanceCatalog",
    "GuidanceStep",
    "ManualRecovery",
    "MemoryTickets",
    "PASS",
    "Record",
    "Resolution",
    "Step",
    "Ticket",
    "TicketPrompter",
    "TicketStore",
    "chain",
    "default_guidance",
    "open_ticket",
]
