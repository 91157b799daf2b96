"""Error classification: is this error worth another try, and how soon?

A :class:`Classifier` is an ordered list of rules; the first rule that matches decides. User rules go in
front of the defaults (:meth:`Classifier.with_rules`). An exception can also carry its own answer, as a
``bounceback_kind`` attribute (an :class:`ErrorKind` or its name) and an optional ``retry_after`` in
seconds; :func:`mark` sets both. When nothing matches the exception itself, its ``__cause__`` chain is
tried (a library error wrapping ``ConnectionRefusedError`` is as transient as the refusal), and last the
classifier's ``unknown`` kind applies.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from bounceback.core._kinds import Classification, ErrorKind
from bounceback.core.classify._defaults import SETTLED as _SETTLED
from bounceback.core.classify._defaults import _stdlib
from bounceback.errors import (
    ConfigError,
)

__all__ = [
    "Classification",
    "Classifier",
    "ClassifierLike",
    "DEFAULT_CLASSIFIER",
    "ErrorKind",
    "Rule",
    "Verdict",
    "as_classifier",
    "classify",
    "classify_by_defaults",
    "mark",
    "on_errno",
    "on_message",
    "on_predicate",
    "on_type",
]


Matcher = Callable[[BaseException], "Classification | None"]
E = TypeVar("E", bound=BaseException)


@dataclass(frozen=True, slots=True)
class Rule:
    """One classification rule: ``match(exc)`` returns a Classification or None to pass."""

    name: str
    match: Matcher

    def __call__(self, exc: BaseException) -> Classification | None:
        return self.match(exc)


def _kind(value: ErrorKind | str, field: str = "kind") -> ErrorKind:
    if isinstance(value, ErrorKind):
        return value
    try:
        return ErrorKind(str(value).lower())
    except ValueError:
        allowed = ", ".join(k.value for k in ErrorKind)
        raise ConfigError(field, value, f"one of {allowed}") from None


def on_type(*types: type[BaseException], kind: ErrorKind | str, reason: str | None = None) -> Rule:
    """Classify instances of ``types`` (and subclasses) as ``kind``.

    >>> rule = on_type(LookupError, kind="permanent")
    >>> rule(KeyError("x")).kind
    <ErrorKind.PERMANENT: 'permanent'>
    """
    if not types or not all(isinstance(t, type) and issubclass(t, BaseException) for t in types):
        raise ConfigError("types", types, "one or more exception classes")
    k = _kind(kind)
    text = reason or f"{' or '.join(t.__name__ for t in types)} is {k.value}"
    verdict = Classification(k, text)

    def match(exc: BaseException) -> Classification | None:
        return verdict if isinstance(exc, types) else None

    return Rule(f"type:{','.join(t.__name__ for t in types)}", match)


def on_predicate(
    predicate: Callable[[BaseException], bool], *, kind: ErrorKind | str, reason: str, name: str | None = None
) -> Rule:
    """Classify errors for which ``predicate(exc)`` is true as ``kind``.

    >>> rule = on_predicate(lambda e: getattr(e, "status", 0) == 409, kind="transient", reason="conflict")
    """
    k = _kind(kind)
    verdict = Classification(k, reason)

    def match(exc: BaseException) -> Classification | None:
        return verdict if predicate(exc) else None

    return Rule(name or f"predicate:{getattr(predicate, '__name__', 'fn')}", match)


def on_message(
    pattern: str | re.Pattern[str],
    *,
    kind: ErrorKind | str,
    types: tuple[type[BaseException], ...] = (Exception,),
    reason: str | None = None,
) -> Rule:
    """Classify errors of ``types`` whose message matches ``pattern`` (a regex, case-insensitive).

    >>> rule = on_message("try again later", kind="transient")
    >>> rule(RuntimeError("Device busy, try again later")).kind
    <ErrorKind.TRANSIENT: 'transient'>
    """
    try:
        regex = re.compile(pattern, re.IGNORECASE) if isinstance(pattern, str) else pattern
    except re.error as exc:
        raise ConfigError("pattern", pattern, f"a valid regular expression ({exc})") from None
    k = _kind(kind)
    verdict = Classification(k, reason or f"message matches {regex.pattern!r}")

    def match(exc: BaseException) -> Classification | None:
        if isinstance(exc, types) and regex.search(str(exc)):
            return verdict
        return None

    return Rule(f"message:{regex.pattern}", match)


def on_errno(*codes: int, kind: ErrorKind | str, reason: str | None = None) -> Rule:
    """Classify ``OSError`` with one of the errno ``codes`` as ``kind``."""
    k = _kind(kind)
    wanted = frozenset(codes)

    def match(exc: BaseException) -> Classification | None:
        if isinstance(exc, OSError) and exc.errno in wanted:
            name = errno.errorcode.get(exc.errno or 0, str(exc.errno))
            return Classification(k, reason or f"{name} is {k.value}")
        return None

    return Rule(f"errno:{','.join(str(c) for c in sorted(wanted))}", match)


def mark(exc: E, kind: ErrorKind | str, *, retry_after: float | None = None) -> E:
    """Attach a classification to an exception instance and return it.

    >>> err = mark(RuntimeError("device rebooting"), "transient", retry_after=5)
    >>> classify(err).retry_after
    5.0
    """
    exc.bounceback_kind = _kind(kind)  # type: ignore[attr-defined]
    if retry_after is not None:
        exc.retry_after = float(retry_after)  # type: ignore[attr-defined]
    return exc


def _own(exc: BaseException) -> Classification | None:
    """The classification an exception carries itself, if any."""
    kind = getattr(exc, "bounceback_kind", None)
    if kind is None:
        return None
    try:
        k = _kind(kind)
    except ConfigError:
        return None
    return Classification(k, f"{type(exc).__name__} says it is {k.value}", _retry_after_of(exc))


def _retry_after_of(exc: BaseException) -> float | None:
    value = getattr(exc, "retry_after", None)
    if (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value >= 0
        and value < float("inf")
    ):
        return float(value)
    return None


_MAX_CHAIN = 5
_THROTTLED = ErrorKind.THROTTLED  # read on every failure: an enum member through its class costs a call


class Classifier:
    """An ordered set of rules; the first that matches an error decides.

    ``unknown`` is the kind given to errors no rule recognises (default transient: a program's own
    exception types are retried unless a rule says otherwise, while programming errors such as
    ``TypeError`` are already permanent by the defaults).

    >>> strict = DEFAULT_CLASSIFIER.with_rules(on_message("quota", kind="throttled"), unknown="permanent")
    >>> strict.classify(RuntimeError("quota exceeded")).kind
    <ErrorKind.THROTTLED: 'throttled'>
    >>> strict.classify(RuntimeError("boom")).kind
    <ErrorKind.PERMANENT: 'permanent'>
    """

    __slots__ = ("_rules", "_unknown", "use_defaults")

    def __init__(
        self,
        rules: Iterable[Rule | Matcher] = (),
        *,
        unknown: ErrorKind | str = ErrorKind.TRANSIENT,
        use_defaults: bool = True,
    ) -> None:
        self._rules: tuple[Matcher, ...] = tuple(rules)
        for rule in self._rules:
            if not callable(rule):
                raise ConfigError("rules", rule, "rules made by on_type/on_message/on_predicate or callables")
        self._unknown = Classification(
            _kind(unknown, "unknown"), f"unclassified error (default: {_kind(unknown).value})"
        )
        self.use_defaults = use_defaults

    @property
    def unknown(self) -> ErrorKind:
        """The kind given to errors no rule recognises."""
        return self._unknown.kind

    def with_rules(self, *rules: Rule | Matcher, unknown: ErrorKind | str | None = None) -> Classifier:
        """A new classifier with ``rules`` tried before this one's."""
        return Classifier(
            (*rules, *self._rules),
            unknown=self._unknown.kind if unknown is None else unknown,
            use_defaults=self.use_defaults,
        )

    def classify(self, exc: BaseException) -> Classification:
        """Classify ``exc``: its own mark, then the rules, then the defaults, then its causes, then unknown."""
        if not self._rules and self.use_defaults:
            # The common case, kept short: defaults only, and a type whose verdict is settled.
            verdict = _SETTLED.get(exc.__class__)
            if verdict is not None and not hasattr(exc, "bounceback_kind"):
                return verdict
            if not hasattr(exc, "bounceback_kind"):
                verdict = _stdlib(exc)
                if verdict is not None and verdict.kind is not _THROTTLED:
                    return verdict
        seen = 0
        current: BaseException | None = exc
        while current is not None and seen < _MAX_CHAIN:
            verdict = self._match(current)
            if verdict is not None:
                if verdict.retry_after is None and verdict.kind is ErrorKind.THROTTLED:
                    hint = _retry_after_of(exc)
                    if hint is not None:
                        return Classification(verdict.kind, verdict.reason, hint)
                return verdict
            current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
            seen += 1
        return self._unknown

    def _match(self, exc: BaseException) -> Classification | None:
        own = _own(exc)
        if own is not None:
            return own
        for rule in self._rules:
            verdict = rule(exc)
            if verdict is not None:
                return verdict
        return _stdlib(exc) if self.use_defaults else None

    def __call__(self, exc: BaseException) -> Classification:
        return self.classify(exc)

    def __repr__(self) -> str:
        return f"Classifier({len(self._rules)} rule(s), unknown={self._unknown.kind.value!r})"


DEFAULT_CLASSIFIER = Classifier()
"""The standard library defaults; unknown errors are transient."""


def _settled_first(
    full: Callable[[BaseException], Classification],
) -> Callable[[BaseException], Classification]:
    get = _SETTLED.get  # the dict is cleared in place, never replaced: the bound look-up stays good

    def classify_by_defaults(exc: BaseException) -> Classification:
        verdict = get(exc.__class__)
        if verdict is not None and not hasattr(exc, "bounceback_kind"):
            return verdict
        return full(exc)

    return classify_by_defaults


classify_by_defaults = _settled_first(DEFAULT_CLASSIFIER.classify)
"""``DEFAULT_CLASSIFIER.classify`` with its common case first, as a plain function: an error of a type whose
verdict the defaults settle by type alone costs one look-up (half the cost of the method). What a policy or
breaker without a classifier of its own calls on every failure."""

Verdict = Classification | ErrorKind | str | bool | None
"""What a plain classifying function may return: a Classification, a kind (``ErrorKind`` or its name),
True (worth a retry: transient), False (not: permanent), or None (no opinion: the defaults decide)."""

ClassifierLike = Classifier | Callable[[BaseException], Verdict]
"""What ``classifier=`` accepts: a :class:`Classifier`, or a plain function of the exception."""


def as_classifier(value: ClassifierLike | None, field: str = "classifier") -> Classifier:
    """The :class:`Classifier` for a ``classifier=`` argument: itself, the defaults for None, or a plain
    function wrapped as a rule tried before the defaults.

    >>> def mine(exc):
    ...     return "throttled" if "quota" in str(exc) else None
    >>> as_classifier(mine).classify(RuntimeError("quota exceeded")).kind
    <ErrorKind.THROTTLED: 'throttled'>
    >>> as_classifier(lambda exc: False).classify(ConnectionError()).kind
    <ErrorKind.PERMANENT: 'permanent'>
    >>> as_classifier(42)
    Traceback (most recent call last):
    ...
    bounceback.errors.ConfigError: classifier: got 42; expected a Classifier, or a function of the exception returning a Classification, an ErrorKind, True (retry), False (do not retry) or None (let the defaults decide)
    """
    if value is None:
        return DEFAULT_CLASSIFIER
    if isinstance(value, Classifier):
        return value
    if not callable(value) or isinstance(value, type):
        raise ConfigError(
            field,
            value,
            "a Classifier, or a function of the exception returning a Classification, an ErrorKind, True "
            "(retry), False (do not retry) or None (let the defaults decide)",
        )
    name = getattr(value, "__qualname__", None) or repr(value)
    return Classifier([_adapt(value, name, field)])


def _adapt(fn: Callable[[BaseException], Verdict], name: str, field: str) -> Matcher:
    transient = Classification(ErrorKind.TRANSIENT, f"{name} said retry")
    permanent = Classification(ErrorKind.PERMANENT, f"{name} said do not retry")

    def match(exc: BaseException) -> Classification | None:
        said = fn(exc)
        if said is None or isinstance(said, Classification):
            return said
        if said is True:
            return transient
        if said is False:
            return permanent
        if isinstance(said, (ErrorKind, str)) and not isinstance(said, bool):
            kind = _kind(said, field)
            return Classification(kind, f"{name} said {kind.value}")
        raise ConfigError(
            field, said, f"{name} to return a Classification, an ErrorKind, True, False or None"
        )

    return match


def classify(exc: BaseException, classifier: Classifier | None = None) -> Classification:
    """Classify ``exc`` with ``classifier`` (default: :data:`DEFAULT_CLASSIFIER`).

    >>> classify(ValueError("bad port")).kind
    <ErrorKind.PERMANENT: 'permanent'>
    >>> classify(TimeoutError()).is_retryable
    True
    """
    return (classifier or DEFAULT_CLASSIFIER).classify(exc)
