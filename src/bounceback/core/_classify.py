"""Error classification: is this error worth another try, and how soon?

A :class:`Classifier` is an ordered list of rules; the first rule that matches decides. User rules go in
front of the defaults (:meth:`Classifier.with_rules`). An exception can also carry its own answer, as a
``bounceback_kind`` attribute (an :class:`ErrorKind` or its name) and an optional ``retry_after`` in
seconds; :func:`mark` sets both. When nothing matches the exception itself, its ``__cause__`` chain is
tried (a library error wrapping ``ConnectionRefusedError`` is as transient as the refusal), and last the
classifier's ``unknown`` kind applies.
"""

from __future__ import annotations

import enum
import errno
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from bounceback.errors import (
    AttemptTimeout,
    BulkheadFull,
    CircuitOpenError,
    ConfigError,
    RecoveryCancelled,
    RecoveryRequired,
    RetriesExhausted,
)

__all__ = [
    "Classification",
    "Classifier",
    "DEFAULT_CLASSIFIER",
    "ErrorKind",
    "Rule",
    "classify",
    "mark",
    "on_errno",
    "on_message",
    "on_predicate",
    "on_type",
]


class ErrorKind(enum.Enum):
    """What an error means for recovery.

    ``TRANSIENT``: likely to pass; retry with backoff. ``THROTTLED``: the other side asked us to slow
    down; retry, no sooner than its ``retry_after``. ``PERMANENT``: retrying will not help; a person or the
    program must act.
    """

    TRANSIENT = "transient"
    THROTTLED = "throttled"
    PERMANENT = "permanent"

    @property
    def is_retryable(self) -> bool:
        """True for TRANSIENT and THROTTLED."""
        return self is not ErrorKind.PERMANENT


@dataclass(frozen=True, slots=True)
class Classification:
    """The verdict on one error: its ``kind``, a human ``reason``, and an optional ``retry_after`` hint.

    >>> classify(ConnectionRefusedError(111, "Connection refused")).kind
    <ErrorKind.TRANSIENT: 'transient'>
    """

    kind: ErrorKind
    reason: str
    retry_after: float | None = None

    @property
    def is_retryable(self) -> bool:
        """True when another attempt may succeed."""
        return self.kind is not ErrorKind.PERMANENT


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


# errno values that describe a passing condition of the network or the machine.
_TRANSIENT_ERRNOS = {
    getattr(errno, name)
    for name in (
        "EAGAIN",
        "EWOULDBLOCK",
        "EBUSY",
        "ETIMEDOUT",
        "ECONNREFUSED",
        "ECONNRESET",
        "ECONNABORTED",
        "EHOSTUNREACH",
        "ENETUNREACH",
        "ENETDOWN",
        "ENETRESET",
        "EHOSTDOWN",
        "EPIPE",
        "EINTR",
        "ENOBUFS",
        "EMFILE",
        "ENFILE",
        "EADDRNOTAVAIL",
        "EINPROGRESS",
        "EALREADY",
        "ENOLCK",
    )
    if hasattr(errno, name)
}
# errno values that need a person: the resource is missing, full, or forbidden.
_PERMANENT_ERRNOS = {
    getattr(errno, name)
    for name in (
        "ENOENT",
        "EACCES",
        "EPERM",
        "ENOSPC",
        "EDQUOT",
        "EROFS",
        "EISDIR",
        "ENOTDIR",
        "EEXIST",
        "EINVAL",
        "ENAMETOOLONG",
        "ENOTEMPTY",
        "EBADF",
    )
    if hasattr(errno, name)
}
_GAI_TRANSIENT = {getattr(socket, n) for n in ("EAI_AGAIN", "EAI_MEMORY", "EAI_SYSTEM") if hasattr(socket, n)}
_HTTP_TRANSIENT = {408, 425, 500, 502, 504}
_HTTP_THROTTLED = {429, 503}


class _Inspect:
    """Marks exception types whose verdict depends on the instance (errno, status, message)."""


_INSPECT = _Inspect()
_TYPE_CACHE: dict[type[BaseException], Classification | _Inspect | None] = {}
_TYPE_CACHE_MAX = 2048


def _stdlib(exc: BaseException) -> Classification | None:
    """The standard library's defaults; verdicts that depend only on the type are cached per type."""
    cls = type(exc)
    verdict = _TYPE_CACHE.get(cls, _INSPECT)
    if verdict is _INSPECT:
        if cls not in _TYPE_CACHE and len(_TYPE_CACHE) < _TYPE_CACHE_MAX:
            by_type = _by_type(cls)
            _TYPE_CACHE[cls] = by_type
            if by_type is not _INSPECT:
                return by_type  # type: ignore[return-value]
        return _by_instance(exc)
    return verdict  # type: ignore[return-value]


def _by_type(cls: type[BaseException]) -> Classification | _Inspect | None:
    """The verdict for every instance of ``cls``, or _INSPECT when instances differ."""
    if issubclass(cls, (CircuitOpenError, socket.gaierror)) or cls.__module__ == "sqlite3":
        return _INSPECT
    if cls.__name__ == "HTTPError":
        return _INSPECT
    if issubclass(cls, BulkheadFull):
        return Classification(ErrorKind.THROTTLED, "too many calls in flight")
    if issubclass(cls, AttemptTimeout):
        return Classification(ErrorKind.TRANSIENT, "the attempt timed out")
    if issubclass(cls, (RecoveryCancelled, RecoveryRequired, RetriesExhausted, ConfigError)):
        return Classification(ErrorKind.PERMANENT, f"{cls.__name__} ends automatic recovery")
    if issubclass(cls, (ConnectionError, TimeoutError)):
        # ConnectionRefused/Reset/Aborted, BrokenPipe, socket.timeout, asyncio.TimeoutError
        return Classification(ErrorKind.TRANSIENT, f"{cls.__name__}: the connection failed")
    if issubclass(cls, OSError):
        return _INSPECT
    if issubclass(cls, _PERMANENT_TYPES):
        return Classification(ErrorKind.PERMANENT, f"{cls.__name__} is a caller or program error")
    return None


def _by_instance(exc: BaseException) -> Classification | None:
    """The defaults that read the instance: breaker state, resolver codes, HTTP status, errno, SQLite text."""
    if isinstance(exc, CircuitOpenError):
        if exc.retry_after is None:
            # Forced open: only a person can close it, so waiting cannot help.
            return Classification(ErrorKind.PERMANENT, f"circuit {exc.breaker!r} is {exc.state} by hand")
        return Classification(ErrorKind.THROTTLED, f"circuit {exc.breaker!r} is {exc.state}", exc.retry_after)
    if isinstance(exc, socket.gaierror):
        if exc.errno in _GAI_TRANSIENT:
            return Classification(ErrorKind.TRANSIENT, "temporary failure in name resolution")
        return Classification(ErrorKind.PERMANENT, "the host name does not resolve")
    verdict = _by_type(type(exc))
    if verdict is not _INSPECT:
        return verdict  # type: ignore[return-value]
    http = _http_status(exc)
    if http is not None:
        return http
    if isinstance(exc, OSError) and exc.errno is not None:
        name = errno.errorcode.get(exc.errno, str(exc.errno))
        if exc.errno in _TRANSIENT_ERRNOS:
            return Classification(ErrorKind.TRANSIENT, f"{name}: a passing condition")
        if exc.errno in _PERMANENT_ERRNOS:
            return Classification(ErrorKind.PERMANENT, f"{name}: needs a change before a retry can help")
    if isinstance(exc, OSError) and isinstance(getattr(exc, "reason", None), BaseException):
        # urllib.error.URLError wraps the socket error that caused it in .reason
        return _stdlib(exc.reason)  # type: ignore[attr-defined]
    sqlite = _sqlite(exc)
    if sqlite is not None:
        return sqlite
    if isinstance(exc, _PERMANENT_TYPES):
        return Classification(ErrorKind.PERMANENT, f"{type(exc).__name__} is a caller or program error")
    return None


def _http_status(exc: BaseException) -> Classification | None:
    """urllib.error.HTTPError (and look-alikes with an int ``code``/``status`` and ``headers``)."""
    if type(exc).__name__ != "HTTPError":
        return None
    status = getattr(exc, "code", None) or getattr(exc, "status", None)
    if not isinstance(status, int):
        return None
    if status in _HTTP_THROTTLED:
        return Classification(ErrorKind.THROTTLED, f"HTTP {status}", _header_retry_after(exc))
    if status in _HTTP_TRANSIENT:
        return Classification(ErrorKind.TRANSIENT, f"HTTP {status}")
    if 400 <= status < 600:
        return Classification(ErrorKind.PERMANENT, f"HTTP {status}")
    return None


def _header_retry_after(exc: BaseException) -> float | None:
    headers = getattr(exc, "headers", None)
    if headers is None:
        return None
    try:
        raw = headers.get("Retry-After")
    except Exception:
        return None
    from bounceback.core._retry_after import parse_retry_after

    return parse_retry_after(raw) if isinstance(raw, str) else None


def _sqlite(exc: BaseException) -> Classification | None:
    # Matched by name so the core does not import sqlite3 for every program.
    cls = type(exc)
    if cls.__module__ != "sqlite3":
        return None
    text = str(exc).lower()
    if cls.__name__ == "OperationalError" and ("locked" in text or "busy" in text):
        return Classification(ErrorKind.TRANSIENT, "the SQLite database is locked by another connection")
    if cls.__name__ == "OperationalError" and "disk i/o error" in text:
        return Classification(ErrorKind.TRANSIENT, "SQLite disk I/O error")
    return Classification(ErrorKind.PERMANENT, f"sqlite3.{cls.__name__}: {text[:80]}")


_PERMANENT_TYPES: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    LookupError,
    AttributeError,
    NameError,
    AssertionError,
    NotImplementedError,
    ArithmeticError,
    ImportError,
    RecursionError,
    MemoryError,
    SyntaxError,
    PermissionError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    FileExistsError,
)

_MAX_CHAIN = 5


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
        if not self._rules and self.use_defaults and not hasattr(exc, "bounceback_kind"):
            # The common case, kept short: defaults only, usually a cached verdict for the type.
            verdict = _stdlib(exc)
            if verdict is not None and verdict.kind is not ErrorKind.THROTTLED:
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


def classify(exc: BaseException, classifier: Classifier | None = None) -> Classification:
    """Classify ``exc`` with ``classifier`` (default: :data:`DEFAULT_CLASSIFIER`).

    >>> classify(ValueError("bad port")).kind
    <ErrorKind.PERMANENT: 'permanent'>
    >>> classify(TimeoutError()).is_retryable
    True
    """
    return (classifier or DEFAULT_CLASSIFIER).classify(exc)
