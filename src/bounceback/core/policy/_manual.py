"""Manual recovery as a policy fallback: open a ticket, then raise it, ask a person, or park it.

``Policy(..., fallback=ManualRecovery(...))`` hands a recovery that gave up to a person:

- ``raise``: raise :class:`~bounceback.errors.RecoveryRequired` carrying the ticket (the library default);
- ``prompt``: ask a person now through a :class:`TicketPrompter` (the terminal), then act on the answer;
- ``park``: keep the ticket in a :class:`TicketStore` for ``bounceback tickets resolve`` or the dashboard,
  and either raise at once or wait up to ``wait`` seconds for someone to resolve it;
- ``auto``: prompt when a person is attending, else park when there is a store, else raise.

Acting on a decision: ``retry`` and ``retry-adjusted`` return :class:`~bounceback.core.policy._policy.RetryAgain`
(whose outcome is recorded, so the ranking learns), ``skip`` returns the program's fallback value (or the
person's), and ``abort`` ends the call as if there were no fallback. :func:`chain` puts programmatic
fallbacks in front: each may answer, or pass with :data:`PASS`.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import socket
from collections.abc import Callable
from typing import Any, NoReturn

from bounceback.core._events import EventBus, TicketOpened, TicketResolved, default_bus
from bounceback.core._time import SYSTEM_CLOCK, Clock, to_seconds
from bounceback.core.policy._policy import RetryAgain
from bounceback.core.recovery._guidance import GuidanceCatalog
from bounceback.core.recovery._ports import TicketPrompter, TicketStore
from bounceback.core.recovery._tickets import ChoiceKind, Resolution, Ticket, open_ticket
from bounceback.core.retry._engine import GiveUp
from bounceback.errors import ConfigError, RecoveryCancelled, RecoveryRequired, RetriesExhausted, StoreError

__all__ = ["MODES", "ManualRecovery", "PASS", "chain", "current_person"]

MODES = ("auto", "raise", "prompt", "park")
"""The values of the ``manual.mode`` setting."""

_log = logging.getLogger("bounceback.manual")


class _Pass:
    __slots__ = ()

    def __repr__(self) -> str:
        return "PASS"


PASS: Any = _Pass()
"""Returned by a fallback in :func:`chain` to let the next one decide."""

_UNSET: Any = object()


def current_person() -> str:
    """``user@host``: who answered, as recorded on a resolution."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def chain(*handlers: Any) -> Callable[[GiveUp], Any]:
    """One fallback made of several, tried in order: a value answers at once; a function answers with
    what it returns, or returns :data:`PASS` to hand over to the next. The last one must answer.

    >>> from bounceback.testing import FakeClock
    >>> from bounceback import Policy
    >>> cache = {}
    >>> fallback = chain(lambda info: cache.get("config", PASS), "defaults")
    >>> def fetch():
    ...     raise TimeoutError("no answer")
    >>> Policy("fetch-config", attempts=2, clock=FakeClock(), fallback=fallback).call(fetch)
    'defaults'
    """
    if not handlers:
        raise ConfigError("handlers", handlers, "at least one fallback value or function")

    def fallback(info: GiveUp) -> Any:
        for handler in handlers:
            answer = handler(info) if callable(handler) else handler
            if answer is not PASS:
                return answer
        raise ConfigError("handlers", handlers, "a last fallback that answers instead of returning PASS")

    return fallback


class ManualRecovery:
    """A policy fallback that opens a recovery ticket and hands it to a person.

    ``mode`` is one of :data:`MODES`; when None it is read, per operation and live, from ``settings``
    (``manual.mode``), else ``auto``. ``skip`` is the program's fallback value (or a function of
    :class:`GiveUp` giving it): with it, the person may choose to skip. ``wait`` is how long a parked
    ticket is waited for before :class:`RecoveryRequired` is raised (0: at once); the store is polled
    every ``poll`` seconds.

    >>> from bounceback import Policy, RecoveryRequired
    >>> from bounceback.testing import FakeClock
    >>> def read_meter():
    ...     raise ConnectionRefusedError(111, "Connection refused: meter.local:502")
    >>> policy = Policy("read-meter", attempts=3, clock=FakeClock(), fallback=ManualRecovery("raise"))
    >>> try:
    ...     policy.call(read_meter)
    ... except RecoveryRequired as exc:
    ...     print(exc.ticket.topic, "|", exc.ticket.guidance[0].text[:53])
    connection-refused | Check that the service (or device) at meter.local:502
    """

    def __init__(
        self,
        mode: str | None = None,
        *,
        store: TicketStore | None = None,
        prompter: TicketPrompter | None = None,
        catalog: GuidanceCatalog | None = None,
        skip: Any = _UNSET,
        wait: Any = 0.0,
        poll: Any = 1.0,
        clock: Clock | None = None,
        bus: EventBus | None = None,
        settings: Any = None,
        who: str | None = None,
    ) -> None:
        if mode is not None and mode not in MODES:
            raise ConfigError("mode", mode, "one of " + ", ".join(MODES))
        if mode == "prompt" and prompter is None:
            raise ConfigError(
                "prompter", None, "a prompter for mode 'prompt' (bounceback.console.TerminalPrompter)"
            )
        if mode == "park" and store is None:
            raise ConfigError(
                "store",
                None,
                "a ticket store for mode 'park' (SqliteTickets from bounceback.stores._tickets)",
            )
        self.mode = mode
        self.store = store
        self.prompter = prompter
        self.catalog = catalog
        self._skip = skip
        self.wait = to_seconds(wait, "wait")
        self.poll = to_seconds(poll, "poll", allow_zero=False)
        self.clock = clock or SYSTEM_CLOCK
        self.bus = bus or default_bus
        self.settings = settings
        self.who = who

    @property
    def can_skip(self) -> bool:
        """True when the program supplied a fallback value, so ``skip`` is offered."""
        return self._skip is not _UNSET

    def mode_for(self, operation: str) -> str:
        """The mode in force for ``operation``: ``raise``, ``prompt`` or ``park`` (``auto`` resolved)."""
        mode = self.mode
        if mode is None and self.settings is not None:
            try:
                mode = str(self.settings.effective(operation).get("manual.mode", "auto"))
            except Exception:  # a settings problem must not hide the ticket
                _log.warning("could not read manual.mode for %r; using auto", operation, exc_info=True)
        if mode in (None, "auto"):
            if self.prompter is not None and self.prompter.is_attended():
                return "prompt"
            return "park" if self.store is not None else "raise"
        if mode == "prompt" and self.prompter is None:
            return "park" if self.store is not None else "raise"
        if mode == "park" and self.store is None:
            return "raise"
        return str(mode)

    def open(self, info: GiveUp) -> Ticket:
        """Open the ticket for ``info``, ranked by the store's records when there is a store."""
        ticket = open_ticket(info, now=self.clock.wall(), catalog=self.catalog, can_skip=self.can_skip)
        if self.store is not None:
            try:
                stats = self.store.stats(ticket.operation, ticket.topic)
            except Exception:
                _log.warning("could not read ticket outcomes; guidance is not ranked", exc_info=True)
            else:
                ticket = open_ticket(
                    info,
                    now=ticket.created_at,
                    catalog=self.catalog,
                    can_skip=self.can_skip,
                    stats=stats,
                    ticket_id=ticket.id,
                    topic=ticket.topic,
                )
        if self.bus.listening:
            self.bus.emit(TicketOpened(ticket.operation, ticket.created_at, ticket.id, ticket.summary))
        return ticket

    def __call__(self, info: GiveUp) -> Any:
        """The fallback: open a ticket and handle it by the mode in force."""
        ticket = self.open(info)
        mode = self.mode_for(info.operation)
        if mode == "prompt":
            return self._prompt(ticket, info)
        if mode == "park":
            return self._park(ticket, info)
        raise _required(ticket, f"a person must decide what to do next (ticket {ticket.id})") from info.error

    def act(self, ticket: Ticket, resolution: Resolution, info: GiveUp) -> Any:
        """Carry out a decision: RetryAgain, the skip value, or the error (abort)."""
        if self.bus.listening:
            self.bus.emit(
                TicketResolved(
                    ticket.operation, self.clock.wall(), ticket.id, resolution.choice.value, resolution.by
                )
            )
        kind = resolution.choice
        if kind.runs_again:
            return RetryAgain(
                attempts=resolution.attempts,
                deadline=resolution.deadline,
                on_outcome=self._recorder(ticket.id),
            )
        if kind is ChoiceKind.SKIP:
            if resolution.has_value:
                return resolution.value
            if self._skip is _UNSET:
                raise ConfigError(
                    "skip", None, "a fallback value supplied by the program (ManualRecovery(skip=...))"
                )
            return self._skip(info) if callable(self._skip) else self._skip
        return _abort(ticket, resolution, info)

    # -- modes ---------------------------------------------------------------------------------------

    def _prompt(self, ticket: Ticket, info: GiveUp) -> Any:
        assert self.prompter is not None
        if self.store is not None:
            ticket = self._try_park(ticket)
        resolution = self.prompter.ask(ticket)
        if self.store is not None:
            try:
                ticket = self.store.resolve(ticket.id, resolution)
            except ConfigError:
                # Someone resolved it elsewhere (the dashboard) while the prompt was open: theirs stands.
                stored = self.store.get(ticket.id)
                if stored.resolution is not None:
                    resolution = stored.resolution
            except Exception:
                _log.warning("could not record the decision on ticket %s", ticket.id, exc_info=True)
        return self.act(ticket, resolution, info)

    def _park(self, ticket: Ticket, info: GiveUp) -> Any:
        assert self.store is not None
        try:
            ticket = self.store.park(ticket)
        except Exception as exc:
            # The person still gets the ticket, in the error; only keeping it failed.
            raise _required(
                ticket, f"the ticket could not be parked ({exc}); a person must decide"
            ) from info.error
        if self.wait > 0:
            resolved = self._wait_for(ticket.id)
            if resolved is not None and resolved.resolution is not None:
                return self.act(resolved, resolved.resolution, info)
        choices = "|".join(c.key for c in ticket.choices)
        raise _required(
            ticket,
            f"parked as ticket {ticket.id}; resolve it with "
            f"`bounceback tickets resolve {ticket.id} --choice {choices}`",
        ) from info.error

    def _try_park(self, ticket: Ticket) -> Ticket:
        assert self.store is not None
        try:
            return self.store.park(ticket)
        except Exception:
            _log.warning("could not park ticket %s; asking without keeping it", ticket.id, exc_info=True)
            return ticket

    def _wait_for(self, ticket_id: str) -> Ticket | None:
        assert self.store is not None
        clock = self.clock
        end = clock.monotonic() + self.wait
        while True:
            try:
                ticket = self.store.get(ticket_id)
            except StoreError:
                # A busy or briefly unreachable database: keep waiting, within the same time limit.
                _log.warning("could not read ticket %s; trying again", ticket_id, exc_info=True)
            else:
                if not ticket.is_open:
                    return ticket
            left = end - clock.monotonic()
            if left <= 0:
                return None
            clock.sleep(min(self.poll, left))

    def _recorder(self, ticket_id: str) -> Callable[[bool], None] | None:
        store = self.store
        if store is None:
            return None

        def record(succeeded: bool) -> None:
            try:
                store.record_outcome(ticket_id, succeeded)
            except Exception:  # learning is a bonus; it must not change the program's result
                _log.warning("could not record the outcome of ticket %s", ticket_id, exc_info=True)

        return record

    def __repr__(self) -> str:
        return f"ManualRecovery(mode={self.mode!r}, store={self.store!r}, prompter={self.prompter!r})"


def _required(ticket: Ticket, what: str) -> RecoveryRequired:
    exc = RecoveryRequired(ticket, f"{ticket.summary}: {what}")
    lines = [f"bounceback: ticket {ticket.id}: what to check"]
    lines += [f"  {n}. {step.text}" for n, step in enumerate(ticket.guidance, 1)]
    lines.append("  choices: " + ", ".join(f"{c.key} ({c.label})" for c in ticket.choices))
    exc.add_note("\n".join(lines))
    return exc


def _abort(ticket: Ticket, resolution: Resolution, info: GiveUp) -> NoReturn:
    """End the call as the policy would without a fallback, noting who aborted."""
    note = f"bounceback: ticket {ticket.id}: {resolution.by} chose abort"
    if resolution.note:
        note += f" ({resolution.note})"
    error = info.error
    n = len(info.attempts)
    if info.reason == "cancelled":
        raise RecoveryCancelled(
            info.operation, n, f"cancelled, then aborted by {resolution.by}", error
        ) from error
    if error is None:
        raise RetriesExhausted(info.operation, n, info.result, info.reason)
    with contextlib.suppress(AttributeError, TypeError):
        error.add_note(note)
    raise error
