"""Manual recovery: tickets, the choices a person has, guidance drawn from the error and ranked by what worked."""

from __future__ import annotations

from bounceback.core.recovery._guidance import GuidanceCatalog, default_guidance
from bounceback.core.recovery._parts import (
    Choice,
    ChoiceKind,
    GuidanceStep,
    Record,
    Resolution,
    choice_item,
    record_dict,
    record_of,
    step_item,
)
from bounceback.core.recovery._ports import (
    MemoryTickets,
    TicketPrompter,
    TicketStore,
    already_resolved,
    outcome_items,
    unknown_ticket,
)
from bounceback.core.recovery._texts import BUILTIN_STEPS, REASON_STEPS, TOPICS, builtin_topic
from bounceback.core.recovery._tickets import Ticket, new_ticket_id, open_ticket, rank

__all__ = [
    "BUILTIN_STEPS",
    "Choice",
    "ChoiceKind",
    "GuidanceCatalog",
    "GuidanceStep",
    "MemoryTickets",
    "REASON_STEPS",
    "Record",
    "Resolution",
    "TOPICS",
    "Ticket",
    "TicketPrompter",
    "TicketStore",
    "already_resolved",
    "builtin_topic",
    "choice_item",
    "default_guidance",
    "new_ticket_id",
    "open_ticket",
    "outcome_items",
    "rank",
    "record_dict",
    "record_of",
    "step_item",
    "unknown_ticket",
]
