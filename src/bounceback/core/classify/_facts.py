"""Facts about a failure, read from the error itself: host, port, status, path, when to try again.

Guidance texts name these facts as placeholders (``{host}``, ``{port}``, ``{status}``, ``{path}``,
``{retry_at}`` ...). They come from the exception's attributes first (``OSError.filename``, an HTTP error's
``status``/``code``/``response``, ``CircuitOpenError.retry_at``, ``CalledProcessError.cmd``), then from its
message, following the ``__cause__`` chain. Error text may come from a remote service: every fact is passed
through :func:`clean_text` (control characters removed, length bounded) and is only ever substituted into
a trusted template, never formatted itself.
"""

from __future__ import annotations

import contextlib
import errno
import http
import re
import shlex
import signal
import time
from collections.abc import Iterator
from typing import Any

from bounceback.core._redact import redact
from bounceback.core.classify._packs import pack_facts
from bounceback.core.classify._rules import Classification
from bounceback.errors import CircuitOpenError

__all__ = ["clean_text", "error_chain", "error_facts", "format_clock_time", "format_duration"]

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]")
_MAX_FACT = 200
_MAX_CHAIN = 5

# scheme://host[:port][/path]: the host stops at a slash, a colon, a quote or white space.
_URL = re.compile(
    r"\b([a-zA-Z][a-zA-Z0-9+.-]*)://(\[[0-9A-Fa-f:.]+\]|[^\s/:'\"<>]+)(?::(\d{1,5}))?(/[^\s'\"<>]*)?"
)
# ('127.0.0.1', 8080), as asyncio and socket errors print addresses.
_TUPLE = re.compile(r"\('([^'\s]+)',\s*(\d{1,5})\)")
# host='db.local', port=5432, as urllib3 and many clients print them.
_KEYWORDS = re.compile(r"host=['\"]?([^'\",\s)]+)['\"]?,\s*port=['\"]?(\d{1,5})")
# host:port, where the host looks like a name or an address (a dot, or localhost), so 12:03 is not one.
_HOST_PORT = re.compile(
    r"(?<![\w.:/-])((?:[A-Za-z0-9-]+\.)+[A-Za-z0-9-]+|localhost|\[[0-9A-Fa-f:]+\]):(\d{1,5})\b"
)
_STATUS = re.compile(r"\b(?:HTTP(?:/\d(?:\.\d)?)?|status(?: code)?)[\s:=]*([1-5]\d\d)\b", re.IGNORECASE)


def clean_text(value: object, limit: int = _MAX_FACT) -> str:
    """``str(value)`` with control and bidi characters removed and the length bounded.

    Used for every piece of text that may come from outside (error messages, hosts, paths), so it cannot
    move the cursor, recolour the terminal or reorder what a person reads. New lines become spaces when
    ``limit`` is small (a fact is one line).

    >>> clean_text("boom\\x1b[31m red\\x07")
    'boom[31m red'
    """
    try:
        text = value if isinstance(value, str) else str(value)
    except Exception:
        text = "<unprintable>"
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", "    ")
    if limit <= _MAX_FACT:
        text = text.replace("\n", " ")
    text = _CONTROL.sub("", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_chain(error: BaseException | None) -> Iterator[BaseException]:
    """The error, then its causes (``__cause__``, else an unsuppressed ``__context__``, else ``reason``)."""
    seen: set[int] = set()
    current = error
    while current is not None and len(seen) < _MAX_CHAIN and id(current) not in seen:
        seen.add(id(current))
        yield current
        nxt = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if nxt is None:
            reason = getattr(current, "reason", None)
            nxt = reason if isinstance(reason, BaseException) else None
        current = nxt


def format_duration(seconds: float) -> str:
    """A short human duration: ``850 ms``, ``42 s``, ``3 min 5 s``, ``2 h 10 min``.

    >>> format_duration(0.85), format_duration(42), format_duration(185), format_duration(7800)
    ('850 ms', '42 s', '3 min 5 s', '2 h 10 min')
    """
    if seconds < 1:
        return f"{max(0.0, seconds) * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    whole = round(seconds)
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    return f"{hours} h {rest // 60} min" if rest // 60 else f"{hours} h"


def format_clock_time(wall: float, now: float | None = None) -> str:
    """Local ``HH:MM:SS``, with the date when ``wall`` is not on the same day as ``now``."""
    local = time.localtime(wall)
    if now is not None and time.localtime(now)[:3] != local[:3]:
        return time.strftime("%Y-%m-%d %H:%M:%S", local)
    return time.strftime("%H:%M:%S", local)


def _safe_attr(obj: object, name: str) -> Any:
    # Some client errors raise when a missing attribute is read (httpx's .request), so ask politely.
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _is_ssl(exc: BaseException) -> bool:
    return any(cls.__name__ == "SSLError" for cls in type(exc).__mro__)


def _status_of(exc: BaseException) -> int | None:
    for holder in (exc, _safe_attr(exc, "response")):
        if holder is None:
            continue
        for name in ("status_code", "status", "code"):
            value = _safe_attr(holder, name)
            if isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599:
                return value
    return None


def _url_of(exc: BaseException) -> str | None:
    for holder in (exc, _safe_attr(exc, "request"), _safe_attr(exc, "response")):
        if holder is None:
            continue
        value = _safe_attr(holder, "url")
        if value is not None and "://" in str(value):
            return str(value)
    return None


def _ended(code: int) -> str:
    """How a command ended, in words: ``exited with code 75``, ``was stopped by SIGINT (Ctrl-C)``."""
    if code >= 0:
        return f"exited with code {code}"
    try:
        name = signal.Signals(-code).name
    except ValueError:
        name = f"signal {-code}"
    return f"was stopped by {name}{' (Ctrl-C)' if -code == signal.SIGINT else ''}"


def _put(facts: dict[str, str], key: str, value: object) -> None:
    if key not in facts and value is not None and value != "":
        # Redacted before it is cut, so a credential straddling the cut is never shown in part.
        text = clean_text(redact(clean_text(value, 8000)))
        if text:
            facts[key] = text


def _from_url(facts: dict[str, str], url: str) -> None:
    match = _URL.search(url)
    if match is None:
        return
    _put(facts, "url", match.group(0))
    _put(facts, "host", match.group(2))
    if match.group(3):
        _put(facts, "port", match.group(3))
    elif match.group(1).lower() in ("http", "https", "ws", "wss"):
        _put(facts, "port", "443" if match.group(1).lower() in ("https", "wss") else "80")
    if match.group(4) and match.group(4) != "/":
        _put(facts, "path", match.group(4))


def _from_message(facts: dict[str, str], message: str) -> None:
    url = _URL.search(message)
    if url is not None:
        _from_url(facts, url.group(0))
    for pattern in (_TUPLE, _KEYWORDS, _HOST_PORT):
        match = pattern.search(message)
        if match is not None:
            _put(facts, "host", match.group(1))
            _put(facts, "port", match.group(2))
            break
    status = _STATUS.search(message)
    if status is not None:
        _put(facts, "status", status.group(1))


def _from_error(facts: dict[str, str], exc: BaseException, now: float) -> None:
    # A library's pack knows its own errors best (a node id, a register, an SQLSTATE), so it speaks first.
    for key, value in pack_facts(exc).items():
        if isinstance(key, str) and key.isidentifier():
            _put(facts, key, value)
    for name in ("host", "hostname", "port"):
        value = _safe_attr(exc, name)
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            _put(facts, "port" if name == "port" else "host", value)
    status = _status_of(exc)
    if status is not None:
        _put(facts, "status", status)
    url = _url_of(exc)
    if url is not None:
        _from_url(facts, url)
    if isinstance(exc, OSError):
        if exc.errno is not None and exc.errno > 0 and not _is_ssl(exc):
            _put(facts, "errno", errno.errorcode.get(exc.errno, str(exc.errno)))
        for name in ("filename", "filename2"):
            value = _safe_attr(exc, name)
            if isinstance(value, (str, bytes)) and value:
                _put(facts, "path", value.decode(errors="replace") if isinstance(value, bytes) else value)
    if isinstance(exc, CircuitOpenError):
        _put(facts, "breaker", exc.breaker)
        _put(facts, "breaker_state", exc.state)
        if exc.retry_at is not None:
            _put(facts, "retry_at_epoch", f"{exc.retry_at:.3f}")
    code = _safe_attr(exc, "returncode")
    if isinstance(code, int) and not isinstance(code, bool):
        # subprocess reports death by signal N as -N: name the signal, and give the shell's 128 + N.
        _put(facts, "exit_code", 128 - code if code < 0 else code)
        _put(facts, "ended", _ended(code))
    cmd = _safe_attr(exc, "cmd")
    if isinstance(cmd, (list, tuple)) and cmd:
        _put(facts, "command", shlex.join(str(part) for part in cmd))
    elif isinstance(cmd, str) and cmd:
        _put(facts, "command", cmd)
    retry_after = _safe_attr(exc, "retry_after")
    if isinstance(retry_after, (int, float)) and not isinstance(retry_after, bool) and 0 <= retry_after < 1e9:
        _put(facts, "retry_at_epoch", f"{now + float(retry_after):.3f}")
    try:
        message = str(exc)
    except Exception:
        message = ""
    _from_message(facts, message[:4000])


def error_facts(
    error: BaseException | None,
    classification: Classification | None = None,
    *,
    now: float,
) -> dict[str, str]:
    """The facts guidance may name, read from ``error`` and its causes; ``now`` is the wall time.

    Keys (present only when known): ``error_type``, ``error``, ``host``, ``port``, ``address``, ``url``,
    ``path``, ``status``, ``status_text``, ``errno``, ``exit_code``, ``command``, ``breaker``,
    ``breaker_state``, ``retry_at`` (local clock time), ``retry_in`` and ``retry_at_epoch``.

    >>> facts = error_facts(ConnectionRefusedError(111, "Connect call failed ('10.0.0.7', 8080)"), now=0)
    >>> facts["host"], facts["port"], facts["address"], facts["errno"]
    ('10.0.0.7', '8080', '10.0.0.7:8080', 'ECONNREFUSED')
    """
    facts: dict[str, str] = {}
    if error is not None:
        _put(facts, "error_type", type(error).__name__)
        _put(facts, "error", error)
    for exc in error_chain(error):
        _from_error(facts, exc, now)
    if "host" in facts:
        facts["address"] = f"{facts['host']}:{facts['port']}" if "port" in facts else facts["host"]
    status = facts.get("status")
    if status is not None:
        with contextlib.suppress(ValueError):
            facts["status_text"] = http.HTTPStatus(int(status)).phrase
    if (
        "retry_at_epoch" not in facts
        and classification is not None
        and classification.retry_after is not None
    ):
        facts["retry_at_epoch"] = f"{now + classification.retry_after:.3f}"
    if "retry_at_epoch" in facts:
        at = float(facts["retry_at_epoch"])
        facts["retry_at"] = format_clock_time(at, now)
        facts["retry_in"] = format_duration(max(0.0, at - now))
    return facts
