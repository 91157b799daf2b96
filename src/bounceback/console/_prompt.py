"""The interactive manual-recovery prompt: show a ticket, its ranked guidance and numbered choices, and
read what the person decides.

Everything taken from the error (message, host, path, attempt errors) is untrusted: it is cleaned of
control characters and put in ``rich.text.Text`` objects, never in markup strings, so ``[bold]`` or
``<script>`` in a remote error message is shown exactly as written and cannot restyle the terminal.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import IO, Any

from rich.console import Console, Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from bounceback.core._time import SYSTEM_CLOCK, Clock, parse_duration
from bounceback.core.classify._facts import clean_text, format_clock_time, format_duration
from bounceback.core.policy._manual import current_person
from bounceback.core.recovery._tickets import ChoiceKind, Resolution, Ticket
from bounceback.errors import ConfigError

__all__ = ["TerminalPrompter", "render_ticket"]

_MAX_ATTEMPTS_SHOWN = 10
_MAX_TRIES = 20
_REASONS = {
    "attempts": "no attempts left",
    "deadline": "the deadline would pass before the next try",
    "permanent": "the error is permanent",
    "cancelled": "a person cancelled the automatic recovery",
    "budget": "the retry budget is spent",
    "breaker": "the circuit stays open past the deadline",
    "retry-after": "the server asked to wait past the deadline",
    "result": "the result was rejected",
}


def _line(*parts: tuple[str, str] | str) -> Text:
    """A Text from (text, style) pairs; plain strings are unstyled. Never parses markup."""
    text = Text()
    for part in parts:
        if isinstance(part, tuple):
            text.append(part[0], style=part[1])
        else:
            text.append(part)
    return text


def _record(text: str) -> tuple[str, str]:
    return (f"  ({text})", "green" if text.startswith("worked") else "yellow") if text else ("", "")


def _grid(rows: Iterable[tuple[str, Text]], *, right: bool = False) -> Table:
    """Numbered rows whose wrapped lines stay indented under their text."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(justify="right" if right else "left", no_wrap=True, min_width=4)
    grid.add_column(ratio=1)
    for tag, text in rows:
        grid.add_row(Text("  " + tag), text)
    return grid


def render_ticket(
    ticket: Ticket, *, now: float | None = None, numbered_choices: bool = True
) -> RenderableType:
    """The ticket as a rich renderable: error, attempts, ranked guidance and choices.

    >>> import io
    >>> from bounceback.core.retry._engine import GiveUp
    >>> from bounceback.core.recovery._tickets import open_ticket
    >>> ticket = open_ticket(GiveUp("sync", TimeoutError("[red]no[/] answer"), "attempts", (), None, "r", 1.0, None), now=0)
    >>> console = Console(file=io.StringIO(), width=100)
    >>> console.print(render_ticket(ticket))
    >>> "TimeoutError: [red]no[/] answer" in console.file.getvalue()
    True
    """
    body: list[RenderableType] = []
    message = clean_text(ticket.error_message, 2000)
    body.append(_line((clean_text(ticket.error_type, 120), "bold red"), ": ", message))
    if ticket.kind:
        body.append(
            _line(("classified ", "dim"), (ticket.kind, "bold"), f" ({clean_text(ticket.kind_reason)})")
        )
    n = len(ticket.attempts)
    why = _REASONS.get(ticket.reason, ticket.reason)
    body.append(
        _line(f"gave up after {n} attempt{'s' if n != 1 else ''} in {format_duration(ticket.elapsed)}: {why}")
    )
    extra = [f"opened {format_clock_time(ticket.created_at, now)}"]
    if ticket.breaker_state:
        extra.append(f"breaker {clean_text(ticket.breaker_state)}")
    if ticket.retry_at is not None:
        extra.append(f"may be tried again at {format_clock_time(ticket.retry_at, now)}")
    body.append(_line((" · ".join(extra), "dim")))
    if ticket.attempts:
        body.append(Text(""))
        body.append(_line(("Attempts", "bold")))
        shown = ticket.attempts[-_MAX_ATTEMPTS_SHOWN:]
        if len(ticket.attempts) > len(shown):
            body.append(
                _line((f"  … {len(ticket.attempts) - len(shown)} earlier attempt(s) not shown", "dim"))
            )
        rows = []
        for rec in shown:
            wait = f", then waited {format_duration(rec.delay)}" if rec.delay is not None else ""
            text = _line(
                (clean_text(rec.error_type, 80), "red"),
                f" ({clean_text(rec.kind, 20)}) after {format_duration(rec.duration)}{wait}",
            )
            other = clean_text(rec.error_message, 160)
            if other != clean_text(ticket.error_message, 160):
                # Only a message that differs from the last error is worth the space.
                text.append(": " + other, style="dim")
            rows.append((str(rec.attempt), text))
        body.append(_grid(rows, right=True))
    if ticket.guidance:
        body.append(Text(""))
        body.append(_line(("What to check", "bold")))
        body.append(
            _grid(
                (f"{n}.", _line(clean_text(step.text, 600), _record(step.record.text())))
                for n, step in enumerate(ticket.guidance, 1)
            )
        )
    body.append(Text(""))
    body.append(_line(("What next", "bold")))
    rows = []
    for number, choice in enumerate(ticket.choices, 1):
        tag = f"[{number}]" if numbered_choices else choice.key
        rows.append(
            (tag, _line((choice.label, "bold"), ("  " + choice.detail, "dim"), _record(choice.record.text())))
        )
    body.append(_grid(rows))
    if ticket.resolution is not None:
        res = ticket.resolution
        body.append(Text(""))
        outcome = f"; the follow-up {res.outcome}" if res.outcome else ""
        body.append(
            _line(
                ("Resolved", "bold green"),
                f" by {clean_text(res.by)} at {format_clock_time(res.at, now)} with {res.choice.value}{outcome}",
            )
        )
        if res.note:
            body.append(_line(("  note: ", "dim"), clean_text(res.note, 2000)))
    title = _line(
        ("recovery ticket ", "bold"),
        (ticket.id, "bold cyan"),
        f" · {clean_text(ticket.operation)} · {ticket.status}",
    )
    return Panel(
        Group(*body), title=title, title_align="left", border_style="red" if ticket.is_open else "green"
    )


class TerminalPrompter:
    """Asks a person at the terminal what to do about a ticket (a ``TicketPrompter``).

    The ticket and the questions go to ``console`` (default: stderr, so a program's stdout stays clean);
    answers are read line by line from ``input`` (default: stdin). At the choice question, ``x N`` marks
    guidance step N as not useful and ``?`` shows the ticket again. End of input chooses abort.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        input: IO[str] | None = None,
        who: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.console = console or Console(file=sys.stderr, highlight=False)
        self.input = input if input is not None else sys.stdin
        self.who = who
        self.clock = clock

    def is_attended(self) -> bool:
        """True when both the input and the display are terminals."""
        try:
            return bool(self.input.isatty()) and self.console.is_terminal
        except (ValueError, OSError):
            return False

    def _say(self, *parts: tuple[str, str] | str) -> None:
        self.console.print(_line(*parts))

    def _read(self, question: str) -> str | None:
        self.console.print(_line((question, "bold")), end="")
        self.console.file.flush()
        line = self.input.readline()
        if not line:
            self.console.print()
            return None
        return line.strip()

    def ask(self, ticket: Ticket) -> Resolution:
        """Show ``ticket`` and read the decision; the answer is checked with :meth:`Ticket.decide`."""
        self.console.print(render_ticket(ticket, now=self.clock.wall()))
        not_useful: list[str] = []
        answer: dict[str, Any] = {}
        n = len(ticket.choices)
        for _ in range(_MAX_TRIES):
            reply = self._read(f"Choose 1-{n} (x N: step N was not useful, ?: show again): ")
            if reply is None:
                return self._decide(
                    ticket, ChoiceKind.ABORT, {}, not_useful, note="no answer: the input ended"
                )
            if reply == "?":
                self.console.print(render_ticket(ticket, now=self.clock.wall()))
                continue
            if reply[:1].lower() == "x":
                try:
                    key = ticket.step(reply[1:].strip()).key
                except ConfigError as exc:
                    self._say(("not a step: ", "yellow"), clean_text(exc))
                    continue
                if key not in not_useful:
                    not_useful.append(key)
                self._say(("noted: ", "dim"), f"step {reply[1:].strip()} was not useful")
                continue
            if not reply.isdigit() or not 1 <= int(reply) <= n:
                self._say(("please answer with a number from 1 to ", "yellow"), str(n))
                continue
            choice = ticket.choices[int(reply) - 1].kind
            if choice is ChoiceKind.RETRY_ADJUSTED and not self._limits(ticket, answer):
                return self._decide(
                    ticket, ChoiceKind.ABORT, {}, not_useful, note="no answer: the input ended"
                )
            if choice.runs_again and ticket.guidance:
                answer["did"] = self._steps_taken(ticket)
            return self._decide(ticket, choice, answer, not_useful)
        return self._decide(ticket, ChoiceKind.ABORT, {}, not_useful, note="no valid answer")

    def _limits(self, ticket: Ticket, answer: dict[str, Any]) -> bool:
        offered = ticket.choice(ChoiceKind.RETRY_ADJUSTED)
        while True:
            reply = self._read(f"Attempts [{offered.attempts}]: ")
            if reply is None:
                return False
            if not reply:
                break
            if reply.isdigit() and int(reply) >= 1:
                answer["attempts"] = int(reply)
                break
            self._say(("a whole number >= 1, please", "yellow"))
        default = format_duration(offered.deadline) if offered.deadline else "none"
        while True:
            reply = self._read(f"Deadline [{default}] (such as 90s or 5m): ")
            if reply is None:
                return False
            if not reply:
                return True
            try:
                seconds = parse_duration(reply, "deadline")
            except ConfigError as exc:
                self._say(("", ""), clean_text(exc))
                continue
            if seconds > 0:
                answer["deadline"] = seconds
                return True
            self._say(("a deadline longer than 0 s, please", "yellow"))

    def _steps_taken(self, ticket: Ticket) -> list[str]:
        while True:
            reply = self._read("Which steps did you take? (numbers such as 1,3; Enter: none): ")
            if not reply:
                return []
            try:
                return [ticket.step(part).key for part in reply.replace(" ", ",").split(",") if part]
            except ConfigError as exc:
                self._say(("", ""), clean_text(exc))

    def _decide(
        self,
        ticket: Ticket,
        choice: ChoiceKind,
        answer: dict[str, Any],
        not_useful: list[str],
        note: str = "",
    ) -> Resolution:
        resolution = ticket.decide(
            choice,
            by=self.who or current_person(),
            at=self.clock.wall(),
            note=note,
            not_useful=not_useful,
            **answer,
        )
        self._say(("decision: ", "bold"), resolution.choice.value)
        return resolution

    def __repr__(self) -> str:
        return f"TerminalPrompter(console={self.console!r})"
