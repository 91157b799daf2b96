"""The parts of a recovery ticket: the choices a person has, the guidance steps, their records of past
outcomes, and the resolution a person gives."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bounceback.errors import ConfigError

__all__ = [
    "Choice",
    "ChoiceKind",
    "GuidanceStep",
    "Record",
    "Resolution",
    "choice_item",
    "record_dict",
    "record_of",
    "step_item",
]


class ChoiceKind(enum.Enum):
    """What a person may decide: ``retry``, ``retry-adjusted``, ``skip`` or ``abort``."""

    RETRY = "retry"
    RETRY_ADJUSTED = "retry-adjusted"
    SKIP = "skip"
    ABORT = "abort"

    @classmethod
    def parse(cls, value: ChoiceKind | str) -> ChoiceKind:
        """A ChoiceKind from itself or its value; ConfigError listing the allowed values otherwise."""
        if isinstance(value, ChoiceKind):
            return value
        try:
            return cls(str(value).strip().lower())
        except ValueError:
            raise ConfigError("choice", value, "one of " + ", ".join(k.value for k in cls)) from None

    @property
    def runs_again(self) -> bool:
        """True for the choices whose outcome is a follow-up attempt (and so can succeed or fail)."""
        return self in (ChoiceKind.RETRY, ChoiceKind.RETRY_ADJUSTED)


@dataclass(frozen=True, slots=True)
class Record:
    """Past outcomes of one step or choice: how often it was ``tried``, how often it ``worked``, and
    how often a person marked it ``not_useful``.

    >>> Record(5, 4).text(), Record().text(), Record(0, 0, 2).text()
    ('worked 4 of 5 times', '', 'marked not useful 2 times')
    """

    tried: int = 0
    worked: int = 0
    not_useful: int = 0

    @property
    def score(self) -> float:
        """Smoothed success rate: (worked + 1) / (tried + not_useful + 2); 0.5 with no history.

        The +1/+2 keeps one lucky success from outranking a long record, and a "not useful" mark counts
        as a failed try.
        """
        return (self.worked + 1) / (self.tried + self.not_useful + 2)

    def text(self) -> str:
        """``worked 4 of 5 times`` (and ``marked not useful n times``); empty with no history."""
        parts = []
        if self.tried:
            parts.append(f"worked {self.worked} of {self.tried} time{'s' if self.tried != 1 else ''}")
        if self.not_useful:
            parts.append(f"marked not useful {self.not_useful} time{'s' if self.not_useful != 1 else ''}")
        return "; ".join(parts)


@dataclass(frozen=True, slots=True)
class GuidanceStep:
    """One suggested step on a ticket: its catalog ``key``, the filled-in ``text`` and its ``record``."""

    key: str
    text: str
    record: Record = Record()


@dataclass(frozen=True, slots=True)
class Choice:
    """One thing a person may choose. ``attempts``/``deadline`` are the suggested limits of a
    ``retry-adjusted`` choice (the person may change them)."""

    kind: ChoiceKind
    label: str
    detail: str = ""
    attempts: int | None = None
    deadline: float | None = None
    record: Record = Record()

    @property
    def key(self) -> str:
        """The choice's value (``retry``, ``retry-adjusted``, ``skip``, ``abort``)."""
        return self.kind.value


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a person decided for a ticket, and (later) how the follow-up went.

    ``did`` names the guidance steps the person says they took, ``not_useful`` the steps they marked as
    not useful. ``value`` (when ``has_value``) replaces the program's fallback value for ``skip``.
    ``outcome`` is None until the follow-up attempt ran, then ``succeeded`` or ``failed``.
    """

    choice: ChoiceKind
    by: str
    at: float
    note: str = ""
    attempts: int | None = None
    deadline: float | None = None
    value: Any = None
    has_value: bool = False
    did: tuple[str, ...] = ()
    not_useful: tuple[str, ...] = ()
    outcome: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the value as given; stores encode it as JSON)."""
        return {
            "choice": self.choice.value,
            "by": self.by,
            "at": self.at,
            "note": self.note,
            "attempts": self.attempts,
            "deadline": self.deadline,
            "value": self.value,
            "has_value": self.has_value,
            "did": list(self.did),
            "not_useful": list(self.not_useful),
            "outcome": self.outcome,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Resolution:
        """The inverse of :meth:`to_dict`."""
        return cls(
            ChoiceKind.parse(data["choice"]),
            str(data.get("by", "")),
            float(data.get("at", 0.0)),
            str(data.get("note", "")),
            data.get("attempts"),
            data.get("deadline"),
            data.get("value"),
            bool(data.get("has_value", False)),
            tuple(data.get("did", ())),
            tuple(data.get("not_useful", ())),
            data.get("outcome"),
        )


def record_dict(record: Record) -> dict[str, Any]:
    """A record as JSON-ready fields (with its text)."""
    return {
        "tried": record.tried,
        "worked": record.worked,
        "not_useful": record.not_useful,
        "record": record.text(),
    }


def record_of(data: Mapping[str, Any]) -> Record:
    """The record in JSON fields made by :func:`record_dict`."""
    return Record(int(data.get("tried", 0)), int(data.get("worked", 0)), int(data.get("not_useful", 0)))


def step_item(key: str) -> str:
    """The name of a guidance step in the outcome statistics."""
    return f"step:{key}"


def choice_item(kind: ChoiceKind) -> str:
    """The name of a choice in the outcome statistics."""
    return f"choice:{kind.value}"
