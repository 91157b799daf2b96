"""Recovery tickets: what a person needs when automatic recovery gives up, and what they decided.

A :class:`Ticket` is opened from a :class:`~bounceback.core.retry._engine.GiveUp` by :func:`open_ticket`: the
operation, the error and its classification, every attempt with its error and the wait after it, the
breaker state, the reason recovery stopped, **guidance** (concrete steps from the guidance catalog, filled
in with facts read from the error) and **choices** (retry now, retry with adjusted limits, skip with the
program's fallback value, abort). Steps and choices carry a :class:`Record` of past outcomes for the same
operation and topic and are ranked by it, so what worked before is offered first ("worked 4 of 5 times").

A person's answer is a :class:`Resolution`, made and checked by :meth:`Ticket.decide`. Tickets are
immutable; stores hand out new ones as their status changes.
"""

from __future__ import annotations

import math
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bounceback.core._redact import redact
from bounceback.core.classify._facts import clean_text, error_facts, format_clock_time, format_duration
from bounceback.core.classify._rules import classify
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
from bounceback.core.retry._engine import AttemptRecord, GiveUp
from bounceback.errors import BulkheadFull, CircuitOpenError, ConfigError

__all__ = [
    "Choice",
    "ChoiceKind",
    "GuidanceStep",
    "Record",
    "Resolution",
    "Ticket",
    "choice_item",
    "new_ticket_id",
    "open_ticket",
    "rank",
    "step_item",
]


def new_ticket_id() -> str:
    """A short random ticket id people can type: 8 hexadecimal digits."""
    return secrets.token_hex(4)


@dataclass(frozen=True, slots=True)
class Ticket:
    """A recovery ticket: everything a person needs to decide what to do after recovery gave up.

    ``topic`` is the guidance topic (``connection-refused``, ``throttled`` ...), which together with the
    operation keys the recorded outcomes. ``facts`` are what was read from the error (host, port, status,
    path, retry time ...). Text that came from the error is untrusted: displays must show it as plain text.

    >>> from bounceback.core.retry._engine import GiveUp
    >>> info = GiveUp("fetch", ConnectionRefusedError(111, "refused 10.0.0.7:8080"), "attempts", (), None, "r1", 3.0, None)
    >>> ticket = open_ticket(info, now=1_800_000_000.0, ticket_id="t1")
    >>> ticket.topic, ticket.guidance[0].text[:46]
    ('connection-refused', 'Check that the service (or device) at 10.0.0.7')
    >>> [c.key for c in ticket.choices]
    ['retry', 'retry-adjusted', 'abort']
    """

    id: str
    operation: str
    reason: str
    error_type: str
    error_message: str
    kind: str | None
    kind_reason: str
    topic: str
    attempts: tuple[AttemptRecord, ...]
    breaker_state: str | None
    run_id: str
    elapsed: float
    created_at: float
    guidance: tuple[GuidanceStep, ...]
    choices: tuple[Choice, ...]
    facts: Mapping[str, str] = field(default_factory=dict, compare=False)
    status: str = "open"
    resolution: Resolution | None = None

    @property
    def is_open(self) -> bool:
        """True until the ticket is resolved."""
        return self.status == "open"

    @property
    def retry_at(self) -> float | None:
        """Wall time from which the other side said it may be tried again (throttling, an open breaker)."""
        value = self.facts.get("retry_at_epoch")
        return float(value) if value else None

    @property
    def summary(self) -> str:
        """One line: operation, error type, attempts and reason."""
        n = len(self.attempts)
        return (
            f"{self.operation}: {self.error_type} after {n} attempt{'s' if n != 1 else ''} "
            f"in {format_duration(self.elapsed)} ({self.reason})"
        )

    def step(self, ref: str | int) -> GuidanceStep:
        """A guidance step by its number as shown (1 = first) or its key."""
        text = str(ref).strip()
        if text.isdigit() and 1 <= int(text) <= len(self.guidance):
            return self.guidance[int(text) - 1]
        for step in self.guidance:
            if step.key == text:
                return step
        allowed = f"a step number 1-{len(self.guidance)} or a key ({', '.join(s.key for s in self.guidance)})"
        raise ConfigError("step", ref, allowed if self.guidance else "no step: this ticket has no guidance")

    def choice(self, kind: ChoiceKind | str) -> Choice:
        """The offered choice of ``kind``; ConfigError when this ticket does not offer it."""
        wanted = ChoiceKind.parse(kind)
        for choice in self.choices:
            if choice.kind is wanted:
                return choice
        offered = ", ".join(c.key for c in self.choices)
        hint = "skip needs a fallback value supplied by the program" if wanted is ChoiceKind.SKIP else None
        raise ConfigError("choice", wanted.value, f"a choice this ticket offers: {offered}", hint=hint)

    def decide(
        self,
        choice: ChoiceKind | str,
        *,
        by: str,
        at: float,
        note: str = "",
        attempts: int | None = None,
        deadline: float | None = None,
        value: Any = None,
        has_value: bool = False,
        did: Iterable[str | int] = (),
        not_useful: Iterable[str | int] = (),
    ) -> Resolution:
        """Check a person's answer against this ticket and make it a :class:`Resolution`.

        ``attempts``/``deadline`` are allowed with ``retry-adjusted`` only (default: the suggested
        limits), a value with ``skip`` only; steps are named by number or key.
        """
        offered = self.choice(choice)
        kind = offered.kind
        if (attempts is not None or deadline is not None) and kind is not ChoiceKind.RETRY_ADJUSTED:
            raise ConfigError(
                "attempts",
                attempts if attempts is not None else deadline,
                "no limits unless the choice is retry-adjusted",
            )
        if has_value and kind is not ChoiceKind.SKIP:
            raise ConfigError("value", value, "no value unless the choice is skip")
        if kind is ChoiceKind.RETRY_ADJUSTED:
            attempts = offered.attempts if attempts is None else attempts
            deadline = offered.deadline if deadline is None else deadline
            if attempts is not None and (
                isinstance(attempts, bool) or not isinstance(attempts, int) or attempts < 1
            ):
                raise ConfigError("attempts", attempts, "a whole number >= 1")
            if deadline is not None and (
                not isinstance(deadline, (int, float)) or not 0 < deadline < math.inf
            ):
                raise ConfigError("deadline", deadline, "a finite number of seconds > 0")
            if attempts is None and deadline is None:
                raise ConfigError("attempts", None, "more attempts or a deadline for retry-adjusted")
        return Resolution(
            kind,
            clean_text(by, 120),
            at,
            clean_text(note, 2000),
            attempts,
            None if deadline is None else float(deadline),
            value,
            has_value,
            tuple(dict.fromkeys(self.step(d).key for d in did)),
            tuple(dict.fromkeys(self.step(n).key for n in not_useful)),
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the whole ticket (used by stores, ``--json`` and the dashboard)."""
        return {
            "id": self.id,
            "operation": self.operation,
            "status": self.status,
            "summary": self.summary,
            "reason": self.reason,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "kind": self.kind,
            "kind_reason": self.kind_reason,
            "topic": self.topic,
            "attempts": [rec._asdict() for rec in self.attempts],
            "breaker_state": self.breaker_state,
            "run_id": self.run_id,
            "elapsed": self.elapsed,
            "created_at": self.created_at,
            "retry_at": self.retry_at,
            "guidance": [{"key": s.key, "text": s.text, **record_dict(s.record)} for s in self.guidance],
            "choices": [
                {
                    "key": c.key,
                    "label": c.label,
                    "detail": c.detail,
                    "attempts": c.attempts,
                    "deadline": c.deadline,
                    **record_dict(c.record),
                }
                for c in self.choices
            ],
            "facts": dict(self.facts),
            "resolution": self.resolution.to_dict() if self.resolution is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Ticket:
        """The inverse of :meth:`to_dict`."""
        resolution = data.get("resolution")
        return cls(
            id=str(data["id"]),
            operation=str(data["operation"]),
            reason=str(data["reason"]),
            error_type=str(data["error_type"]),
            error_message=str(data["error_message"]),
            kind=data.get("kind"),
            kind_reason=str(data.get("kind_reason", "")),
            topic=str(data["topic"]),
            attempts=tuple(AttemptRecord(**rec) for rec in data.get("attempts", ())),
            breaker_state=data.get("breaker_state"),
            run_id=str(data.get("run_id", "")),
            elapsed=float(data.get("elapsed", 0.0)),
            created_at=float(data["created_at"]),
            guidance=tuple(GuidanceStep(s["key"], s["text"], record_of(s)) for s in data.get("guidance", ())),
            choices=tuple(
                Choice(
                    ChoiceKind.parse(c["key"]),
                    c["label"],
                    c.get("detail", ""),
                    c.get("attempts"),
                    c.get("deadline"),
                    record_of(c),
                )
                for c in data.get("choices", ())
            ),
            facts={str(k): str(v) for k, v in dict(data.get("facts", {})).items()},
            status=str(data.get("status", "open")),
            resolution=Resolution.from_dict(resolution) if resolution else None,
        )


def rank(ticket: Ticket, stats: Mapping[str, Record]) -> Ticket:
    """``ticket`` with the records of ``stats`` attached and its steps and choices ranked by them.

    Steps sort by :attr:`Record.score`, ties keep the catalog's order. Retry choices sort by their score;
    ``skip`` keeps a neutral score (it never "fails"), and ``abort`` always comes last.
    """
    steps = [replace(s, record=stats.get(step_item(s.key), Record())) for s in ticket.guidance]
    steps.sort(key=lambda s: -s.record.score)
    choices = [replace(c, record=stats.get(choice_item(c.kind), Record())) for c in ticket.choices]

    def order(choice: Choice) -> tuple[int, float]:
        if choice.kind is ChoiceKind.ABORT:
            return (1, 0.0)
        return (0, -(choice.record.score if choice.kind.runs_again else 0.5))

    choices.sort(key=order)
    return replace(ticket, guidance=tuple(steps), choices=tuple(choices))


def _suggest(info: GiveUp, facts: Mapping[str, str], now: float) -> tuple[int | None, float | None]:
    """Suggested limits for retry-adjusted: twice the attempts made or allowed, whichever is more (a run
    cancelled early must not be offered fewer than it had); a deadline that covers the wait asked for."""
    made = max(1, len(info.attempts), info.allowed_attempts or 0)
    attempts = max(3, made * 2)
    deadline: float | None = None
    retry_at = facts.get("retry_at_epoch")
    if info.reason in ("deadline", "retry-after", "breaker") or retry_at:
        wait = max(0.0, float(retry_at) - now) if retry_at else 0.0
        deadline = _round_up(max(info.elapsed * 2, wait * 1.5 + 10, 30.0))
    return attempts, deadline


def _round_up(seconds: float) -> float:
    """A suggestion people read easily: whole 5 s under a minute, 30 s under ten minutes, else minutes."""
    step = 5 if seconds < 60 else 30 if seconds < 600 else 60
    return float(math.ceil(seconds / step) * step)


def _choices(info: GiveUp, facts: Mapping[str, str], now: float, can_skip: bool) -> tuple[Choice, ...]:
    attempts, deadline = _suggest(info, facts, now)
    parts = [f"{attempts} attempts"] if attempts else []
    if deadline is not None:
        parts.append(f"a deadline of {format_duration(deadline)}")
    choices = [
        Choice(
            ChoiceKind.RETRY,
            "Retry now",
            "Run the operation again with the same limits (once the cause is fixed).",
        ),
        Choice(
            ChoiceKind.RETRY_ADJUSTED,
            f"Retry with {' and '.join(parts)}",
            "Run the operation again with more room to recover (you may change the limits).",
            attempts,
            deadline,
        ),
    ]
    if can_skip:
        choices.append(
            Choice(
                ChoiceKind.SKIP,
                "Skip: use the fallback value",
                "Carry on without this result, using the program's fallback value.",
            )
        )
    choices.append(Choice(ChoiceKind.ABORT, "Abort", "Stop here and report the error."))
    return tuple(choices)


def open_ticket(
    info: GiveUp,
    *,
    now: float,
    catalog: GuidanceCatalog | None = None,
    stats: Mapping[str, Record] | None = None,
    can_skip: bool = False,
    ticket_id: str | None = None,
    topic: str | None = None,
    context: Mapping[str, str] | None = None,
) -> Ticket:
    """Open a ticket for a recovery that gave up (``now`` is the wall time).

    ``stats`` are the recorded outcomes for this operation and topic (see :func:`rank`); ``can_skip``
    offers the skip choice (the program has a fallback value). ``context`` adds facts the error does not
    carry (such as the ``command`` a wrapper ran); facts read from the error take precedence.
    """
    cat = catalog or default_guidance
    verdict = info.classification
    error = info.error
    if (
        isinstance(error, (CircuitOpenError, BulkheadFull))
        and info.cause is not None
        and info.cause is not error
    ):
        # The last attempts were refused by the breaker: the person must fix what opened it. Guidance and
        # facts come from that failure; the refusal still adds its own facts (which breaker, when it probes).
        error = info.cause
        verdict = classify(error)
        facts = error_facts(error, verdict, now=now)
        for key, value in error_facts(info.error, info.classification, now=now).items():
            facts.setdefault(key, value)
    else:
        facts = error_facts(error, verdict, now=now)
    if info.error is None:
        facts["error_type"] = "rejected result"
        facts["result"] = clean_text(repr(info.result))
    for key, value in (context or {}).items():
        facts.setdefault(key, clean_text(redact(clean_text(value, 8000))))
    n = len(info.attempts)
    facts.update(
        reason=info.reason,
        attempts=str(n),
        elapsed=format_duration(info.elapsed),
        time=format_clock_time(now),
    )
    if verdict is not None:
        facts.update(kind=verdict.kind.value, kind_reason=clean_text(verdict.reason))
    name = topic or cat.topic_of(error, facts, verdict.kind if verdict else None)
    steps = cat.guidance(info.operation, error, facts, topic=name, reason=info.reason)
    message = facts.get("error", "") if error is not None else f"rejected result {facts['result']}"
    ticket = Ticket(
        id=ticket_id or new_ticket_id(),
        operation=info.operation,
        reason=info.reason,
        error_type=facts["error_type"] if error is not None else "result",
        error_message=clean_text(redact(clean_text(error, 8000)), 4000) if error is not None else message,
        kind=verdict.kind.value if verdict else None,
        kind_reason=verdict.reason if verdict else "",
        topic=name,
        attempts=tuple(info.attempts),
        breaker_state=info.breaker_state,
        run_id=info.run_id,
        elapsed=info.elapsed,
        created_at=now,
        guidance=tuple(GuidanceStep(s.key, s.text) for s in steps),
        choices=_choices(info, facts, now, can_skip),
        facts=facts,
    )
    return rank(ticket, stats or {})
