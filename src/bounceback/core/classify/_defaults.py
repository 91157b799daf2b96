"""The standard library's errors and what they mean for recovery: the defaults of every classifier.

Verdicts that depend only on the exception type are cached per type, so classifying a common error
(``ConnectionResetError``, ``TimeoutError``) is a dictionary look-up.
"""

from __future__ import annotations

import errno
import socket

from bounceback.core._kinds import Classification, ErrorKind
from bounceback.core.classify._packs import pack_classify, pack_for, when_packs_change
from bounceback.errors import (
    AttemptTimeout,
    BulkheadFull,
    CircuitOpenError,
    ConcurrencyLimitExceeded,
    ConfigError,
    RateLimitExceeded,
    RecoveryCancelled,
    RecoveryRequired,
    RequestThrottled,
    RetriesExhausted,
)

__all__ = ["SETTLED", "forget_types"]

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
SETTLED: dict[type[BaseException], Classification] = {}
"""The types whose verdict the defaults give from the type alone, and that verdict is not ``throttled``
(which looks for a Retry-After hint on the instance): a classifier of the defaults alone answers an error
of one of them with one look-up, unless the error carries its own mark. Filled as types are met."""


def _stdlib(exc: BaseException) -> Classification | None:
    """The standard library's defaults; verdicts that depend only on the type are cached per type."""
    cls = type(exc)
    verdict = _TYPE_CACHE.get(cls, _INSPECT)
    if verdict is _INSPECT:
        if cls not in _TYPE_CACHE and len(_TYPE_CACHE) < _TYPE_CACHE_MAX:
            by_type = _by_type(cls)
            _TYPE_CACHE[cls] = by_type
            if by_type is not _INSPECT:
                if isinstance(by_type, Classification) and by_type.kind is not ErrorKind.THROTTLED:
                    SETTLED[cls] = by_type
                return by_type  # type: ignore[return-value]
        return _by_instance(exc)
    return verdict  # type: ignore[return-value]


def forget_types() -> None:
    """Drop the verdicts cached per type (an error pack was registered or removed)."""
    _TYPE_CACHE.clear()
    SETTLED.clear()


when_packs_change(forget_types)


def _by_type(cls: type[BaseException]) -> Classification | _Inspect | None:
    """The verdict for every instance of ``cls``, or _INSPECT when instances differ."""
    if pack_for(cls) is not None:
        # A library's pack reads the instance (status code, SQLSTATE, message); asked once per type.
        return _INSPECT
    if issubclass(cls, (CircuitOpenError, RateLimitExceeded, socket.gaierror)) or cls.__module__ == "sqlite3":
        return _INSPECT
    if cls.__name__ == "HTTPError":
        return _INSPECT
    if issubclass(cls, ConcurrencyLimitExceeded):
        return Classification(ErrorKind.THROTTLED, "the concurrency limiter was full")
    if issubclass(cls, BulkheadFull):
        return Classification(ErrorKind.THROTTLED, "too many calls in flight")
    if issubclass(cls, RequestThrottled):
        return Classification(ErrorKind.THROTTLED, "shed locally by adaptive throttling")
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
    if isinstance(exc, RateLimitExceeded):
        # The limiter knows when its next token is free: that is the wait worth honouring.
        return Classification(
            ErrorKind.THROTTLED, f"rate limiter {exc.limiter!r} had no token", exc.retry_after
        )
    pack = pack_for(type(exc))
    if pack is not None:
        known = pack_classify(pack, exc)
        if known is not None:
            return known
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
    from bounceback.core.classify._retry_after import parse_retry_after

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
