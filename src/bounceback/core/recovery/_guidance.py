"""The guidance catalog: concrete next steps for a person, chosen by what went wrong.

An error is first given a **topic** (``connection-refused``, ``throttled``, ``authentication``,
``disk-full``, ``dns``, ``timeout``, ``tls``, ``permission``, ``not-found``, ``network``, ``server-error``,
``breaker-open``, ``command-failed`` or ``other``); the topic's steps are then rendered with the facts read
from the error (:func:`bounceback.core.classify._facts.error_facts`). A step lists alternative texts: the first
whose placeholders are all known is shown, and a step with none left out (so a person never reads
"check {host}"). The reason recovery stopped (cancelled, deadline, budget, result) adds its own step.

Error packs (:mod:`bounceback.core.classify._packs`) add topics and steps for their library's errors (Modbus, OPC UA,
gRPC, Redis, PostgreSQL, aiohttp), tried after a program's own topics and before the built-in ones.

Programs extend the catalog: new topics matched by exception type or predicate (tried before the
built-in ones), and extra steps per topic, per exception type and per operation. The built-in texts live
in :mod:`bounceback.core.recovery._texts`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from bounceback.core.classify._facts import error_chain
from bounceback.core.classify._packs import pack_steps, pack_topic
from bounceback.core.classify._rules import ErrorKind
from bounceback.core.classify._step import KEY, RenderedStep, Step
from bounceback.core.recovery._texts import BUILTIN_STEPS, REASON_STEPS, builtin_topic
from bounceback.errors import ConfigError

__all__ = ["GuidanceCatalog", "RenderedStep", "Step", "default_guidance"]

TopicMatcher = Callable[[BaseException, Mapping[str, str]], bool]


@dataclass(frozen=True, slots=True)
class _Topic:
    name: str
    match: TopicMatcher


def _matcher(match: type[BaseException] | tuple[type[BaseException], ...] | TopicMatcher) -> TopicMatcher:
    if isinstance(match, type) and issubclass(match, BaseException):
        cls: type[BaseException] | tuple[type[BaseException], ...] = match
    elif isinstance(match, tuple) and match and all(isinstance(t, type) for t in match):
        cls = match
    elif callable(match):
        return match  # type: ignore[return-value]
    else:
        raise ConfigError("match", match, "an exception class, a tuple of them, or a function(error, facts)")
    return lambda exc, _facts: isinstance(exc, cls)


class GuidanceCatalog:
    """Which steps to suggest for an error, and how to word them.

    Built-in topics and steps are included unless ``builtins=False``. Extensions are added in place and
    take precedence: a program's own topics are tried before the built-in ones, and its steps are listed
    before the built-in steps of the same topic (per operation first, then per exception type).

    >>> catalog = GuidanceCatalog()
    >>> catalog.add_steps("connection-refused", "Is the VPN connected?", operation="fetch-config")
    >>> [s.key for s in catalog.guidance("fetch-config", ConnectionRefusedError(111, "refused"), {})][:2]
    ['is-the-vpn-connected', 'service-up']
    """

    def __init__(self, *, builtins: bool = True) -> None:
        self._lock = threading.Lock()
        self._builtins = builtins
        self._topics: list[_Topic] = []
        self._steps: dict[tuple[str | None, str], list[Step]] = {}
        self._type_steps: list[tuple[str | None, type[BaseException], Step]] = []

    def add_topic(
        self,
        topic: str,
        match: type[BaseException] | tuple[type[BaseException], ...] | TopicMatcher,
        *steps: Step | str,
    ) -> None:
        """Add a topic for errors that ``match`` (an exception class, or ``function(error, facts)``).

        Each error of the cause chain is offered to the matcher, newest first. The topic names the
        recorded outcomes, so steps and choices are ranked separately for it.
        """
        if not isinstance(topic, str) or not KEY.match(topic):
            raise ConfigError("topic", topic, "a short lower-case name such as 'device-offline'")
        entry = _Topic(topic, _matcher(match))
        with self._lock:
            self._topics.insert(0, entry)
        if steps:
            self.add_steps(topic, *steps)

    def add_steps(
        self,
        topic: str | type[BaseException],
        *steps: Step | str,
        operation: str | None = None,
    ) -> None:
        """Add steps for a topic (``"*"``: every topic), or for errors of an exception class.

        With ``operation`` the steps apply to that operation only, and come first.
        """
        made = [Step.of(s) for s in steps]
        if not made:
            raise ConfigError("steps", steps, "one or more steps (texts or Step objects)")
        with self._lock:
            if isinstance(topic, type) and issubclass(topic, BaseException):
                self._type_steps.extend((operation, topic, s) for s in made)
            elif isinstance(topic, str) and (topic == "*" or KEY.match(topic)):
                self._steps.setdefault((operation, topic), []).extend(made)
            else:
                raise ConfigError("topic", topic, "a topic name, '*' or an exception class")

    def topic_of(self, error: BaseException | None, facts: Mapping[str, str], kind: ErrorKind | None) -> str:
        """The topic of ``error``: the first matching program topic, else the built-in one."""
        with self._lock:
            topics = list(self._topics)
        for exc in error_chain(error):
            for entry in topics:
                try:
                    if entry.match(exc, facts):
                        return entry.name
                except Exception:  # a program's matcher must not hide the ticket
                    continue
        for exc in error_chain(error):
            # Then the error pack of the library that raised it (Modbus, OPC UA, gRPC ...), if it has one.
            known = pack_topic(exc, facts)
            if known is not None:
                return known
        return builtin_topic(error, facts, kind)

    def steps(self, operation: str, topic: str, error: BaseException | None, reason: str = "") -> list[Step]:
        """The steps for one failure, most specific first, without duplicate keys."""
        chain = list(error_chain(error))
        with self._lock:
            groups: list[Iterable[Step]] = [
                self._steps.get((operation, topic), ()),
                [
                    s
                    for op, cls, s in self._type_steps
                    if op == operation and any(isinstance(e, cls) for e in chain)
                ],
                [
                    s
                    for op, cls, s in self._type_steps
                    if op is None and any(isinstance(e, cls) for e in chain)
                ],
                self._steps.get((operation, "*"), ()),
                self._steps.get((None, topic), ()),
            ]
            tail = list(self._steps.get((None, "*"), ()))
        if self._builtins:
            groups.append(pack_steps(topic))
            groups.append(BUILTIN_STEPS.get(topic, ()))
            groups.append(REASON_STEPS.get(reason, ()))
        groups.append(tail)
        out: list[Step] = []
        seen: set[str] = set()
        for group in groups:
            for step in group:
                if step.key not in seen:
                    seen.add(step.key)
                    out.append(step)
        return out

    def guidance(
        self,
        operation: str,
        error: BaseException | None,
        facts: Mapping[str, str],
        *,
        topic: str | None = None,
        reason: str = "",
        kind: ErrorKind | None = None,
    ) -> tuple[RenderedStep, ...]:
        """The rendered steps for ``error`` (steps whose facts are unknown are left out)."""
        name = topic or self.topic_of(error, facts, kind)
        merged = {"operation": operation, **facts}
        rendered = []
        for step in self.steps(operation, name, error, reason):
            text = step.render(merged)
            if text is not None:
                rendered.append(RenderedStep(step.key, text))
        return tuple(rendered)

    def __repr__(self) -> str:
        return f"GuidanceCatalog({len(self._topics)} topic(s), builtins={self._builtins})"


default_guidance = GuidanceCatalog()
"""The process-wide catalog every manual fallback uses unless given another; programs may extend it."""
