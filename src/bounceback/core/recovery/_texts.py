"""The built-in guidance: how an error is given a topic, and the steps suggested for each topic.

Each step lists alternatives from the most specific (naming the host, port, status or path read from the
error) to a general one, so a step is worded as precisely as the error allows.
"""

from __future__ import annotations

import errno
import re
from collections.abc import Mapping

from bounceback.core.classify._facts import error_chain
from bounceback.core.classify._rules import ErrorKind
from bounceback.core.classify._step import Step
from bounceback.errors import AttemptTimeout, CircuitOpenError

__all__ = ["BUILTIN_STEPS", "REASON_STEPS", "TOPICS", "builtin_topic"]

TOPICS = (
    "authentication",
    "breaker-open",
    "command-failed",
    "connection-refused",
    "disk-full",
    "dns",
    "network",
    "not-found",
    "other",
    "permission",
    "server-error",
    "throttled",
    "timeout",
    "tls",
)
"""Every built-in topic."""

_AUTH = re.compile(
    r"authenticat|unauthori[sz]ed|\bforbidden\b|invalid (?:api[ _-]?)?(?:key|token|credentials)|"
    r"access denied|login failed|bad credentials|permission denied \(publickey",
    re.IGNORECASE,
)
_DISK = re.compile(
    r"no space left|disk (?:is )?full|database or disk is full|quota exceeded on", re.IGNORECASE
)
_DNS = re.compile(
    r"name or service not known|nodename nor servname|getaddrinfo failed|temporary failure in name "
    r"resolution|could not resolve host|no address associated|name resolution",
    re.IGNORECASE,
)
_TLS = re.compile(r"certificate verify failed|\bssl\b|\btls\b|handshake|wrong version number", re.IGNORECASE)
_REFUSED = re.compile(r"connection refused|actively refused|connect call failed", re.IGNORECASE)
_TIMEOUT = re.compile(r"timed? ?out|timeout", re.IGNORECASE)
_THROTTLE = re.compile(r"too many requests|rate limit|throttl|slow down", re.IGNORECASE)
_NETWORK = re.compile(
    r"connection (?:reset|aborted|closed)|network is unreachable|no route to host|broken pipe", re.IGNORECASE
)

_E = errno


def _errnos(*names: str) -> frozenset[int]:
    return frozenset(getattr(_E, n) for n in names if hasattr(_E, n))


_DISK_ERRNOS = _errnos("ENOSPC", "EDQUOT")
_PERMISSION_ERRNOS = _errnos("EACCES", "EPERM", "EROFS")
_REFUSED_ERRNOS = _errnos("ECONNREFUSED")
_TIMEOUT_ERRNOS = _errnos("ETIMEDOUT")
_NOT_FOUND_ERRNOS = _errnos("ENOENT", "ENOTDIR")
_NETWORK_ERRNOS = _errnos(
    "ECONNRESET", "ECONNABORTED", "ENETUNREACH", "EHOSTUNREACH", "ENETDOWN", "EHOSTDOWN", "EPIPE"
)


def _type_names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def builtin_topic(error: BaseException | None, facts: Mapping[str, str], kind: ErrorKind | None) -> str:
    """The built-in topic of an error, from its type, errno, HTTP status, exit code and message."""
    status = int(facts["status"]) if facts.get("status", "").isdigit() else None
    for exc in error_chain(error):
        names = _type_names(exc)
        # An SSL error's errno is the SSL library's own code, not an OS errno.
        code = exc.errno if isinstance(exc, OSError) and "SSLError" not in names else None
        text = _safe_str(exc)
        if isinstance(exc, CircuitOpenError):
            return "breaker-open"
        if status in (401, 403, 407):
            return "authentication"
        is_tls = bool(names & {"SSLError", "SSLCertVerificationError", "CertificateError"})
        if is_tls:
            return "tls"
        if isinstance(exc, PermissionError) or code in _PERMISSION_ERRNOS:
            return "permission"
        if _AUTH.search(text):
            return "authentication"
        if status == 429 or _THROTTLE.search(text):
            return "throttled"
        if code in _DISK_ERRNOS or _DISK.search(text):
            return "disk-full"
        if "gaierror" in names or _DNS.search(text):
            return "dns"
        if not isinstance(exc, (TimeoutError, AttemptTimeout)) and _TLS.search(text):
            return "tls"
        if isinstance(exc, ConnectionRefusedError) or code in _REFUSED_ERRNOS or _REFUSED.search(text):
            return "connection-refused"
        if isinstance(exc, TimeoutError) or code in _TIMEOUT_ERRNOS or "Timeout" in type(exc).__name__:
            return "timeout"
        if isinstance(exc, (FileNotFoundError, NotADirectoryError)) or code in _NOT_FOUND_ERRNOS:
            return "not-found"
        if status in (404, 410) or facts.get("exit_code") == "127":
            return "not-found"
        if isinstance(exc, ConnectionError) or code in _NETWORK_ERRNOS or _NETWORK.search(text):
            return "network"
        if _TIMEOUT.search(text):
            return "timeout"
    if status == 503 or kind is ErrorKind.THROTTLED:
        return "throttled"
    if status is not None and status >= 500:
        return "server-error"
    if "exit_code" in facts:
        return "command-failed"
    return "other"


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)[:2000]
    except Exception:
        return ""


_CLOCK = Step(
    "clock", "Check that this machine's clock is right: a wrong date breaks time-limited credentials."
)

BUILTIN_STEPS: Mapping[str, tuple[Step, ...]] = {
    "connection-refused": (
        Step(
            "service-up",
            "Check that the service (or device) at {address} is running and accepting connections: is it "
            "powered on, started, and finished booting?",
            "Check that the service (or device) is running and accepting connections: is it powered on, "
            "started, and finished booting?",
        ),
        Step(
            "address",
            "Check the address and port: the program connected to {address}; is that where the service listens?",
            "Check the configured address and port of the service.",
        ),
        Step(
            "firewall",
            "Check that no firewall, VPN or container network rule blocks port {port} on {host}.",
            "Check that no firewall, VPN or container network rule blocks the connection.",
        ),
    ),
    "throttled": (
        Step(
            "wait",
            "The service asked to slow down: it may be tried again at {retry_at} (in {retry_in}).",
            "The service asked to slow down: wait a few minutes before trying again.",
        ),
        Step(
            "rate", "Lower the request rate or concurrency of {operation}, or spread the calls out over time."
        ),
        Step("quota", "Check the account's quota or plan limits with the provider; ask for more if needed."),
    ),
    "authentication": (
        Step(
            "credentials",
            "Check the credentials {operation} uses (API key, token, password): wrong, expired or revoked? "
            "The service answered HTTP {status} ({status_text}).",
            "Check the credentials {operation} uses (API key, token, password): wrong, expired or revoked?",
        ),
        Step(
            "permissions",
            "If the credentials are right, check the account's roles or scopes (HTTP 403: accepted, not allowed).",
        ),
        _CLOCK,
    ),
    "disk-full": (
        Step(
            "free-space",
            "Free space on the disk that holds {path} (see `df -h`).",
            "Free space on the disk the program writes to (see `df -h`).",
        ),
        Step("quota", "Check the disk quota of the user running the program (`quota -s`)."),
        Step("growth", "Look for logs, caches or temporary files that grew unexpectedly (`du -sh`)."),
    ),
    "dns": (
        Step("name", "Check the host name {host} for typos.", "Check the configured host name for typos."),
        Step(
            "resolver",
            "Check that this machine resolves names (network up, VPN, /etc/resolv.conf): try `getent hosts {host}`.",
            "Check that this machine resolves names (network up, VPN, /etc/resolv.conf).",
        ),
    ),
    "timeout": (
        Step(
            "reachable",
            "Check that {address} is reachable from this machine and answering (it may be overloaded).",
            "Check that the service is reachable and answering (it may be overloaded).",
        ),
        Step("longer", "If the work is slow but healthy, retry with a longer timeout or deadline."),
        Step("path", "Check the network path (VPN, proxy, Wi-Fi) between this machine and the service."),
    ),
    "tls": (
        Step(
            "certificate",
            "Check the certificate of {host}: expired, self-signed, or issued for another name?",
            "Check the server's certificate: expired, self-signed, or issued for another name?",
        ),
        Step("trust", "Check that this machine trusts the issuing authority (CA bundle, corporate proxy)."),
        _CLOCK,
    ),
    "permission": (
        Step(
            "access",
            "Check that the user running the program may access {path} (`ls -l`).",
            "Check the permissions of the files or resources the program uses.",
        ),
        Step("user", "Check which user the program runs as (cron, services and containers often differ)."),
    ),
    "not-found": (
        Step(
            "exists",
            "Check that {command} is installed and on PATH.",
            "Check the address {url}: the service answered HTTP {status} ({status_text}).",
            "Check that {path} exists (it may have been moved or deleted).",
            "Check that the resource the program asks for exists.",
        ),
        Step("config", "Check the name or path in the configuration of {operation}."),
    ),
    "network": (
        Step(
            "link",
            "Check this machine's network connection and its route to {address}.",
            "Check this machine's network connection.",
        ),
        Step(
            "peer",
            "Check that the service at {address} is healthy: it reset or dropped the connection.",
            "Check that the service is healthy: it reset or dropped the connection.",
        ),
    ),
    "server-error": (
        Step(
            "their-side",
            "The service answered HTTP {status} ({status_text}), a fault on its side: check its status page or logs.",
        ),
        Step(
            "later",
            "Try again later; if it persists, tell the service's operators the time and the operation {operation}.",
        ),
    ),
    "breaker-open": (
        Step(
            "probe",
            "The circuit {breaker} is open after repeated failures; it lets a probe through at {retry_at} (in {retry_in}).",
            "The circuit {breaker} is {breaker_state} by hand: close or reset it (`bounceback breaker close {breaker}`) "
            "once the cause is fixed.",
        ),
        Step(
            "cause",
            "Look at the earlier failures of {operation} (`bounceback timeline --op {operation}`) for the cause.",
        ),
    ),
    "command-failed": (
        Step(
            "output",
            "Read the command's error output above: it {ended}.",
            "Read the command's error output above.",
        ),
        Step("by-hand", "Run `{command}` by hand to see whether it works outside bounceback."),
    ),
    "other": (Step("logs", "Look in the logs of {operation} for the cause of the {error_type}."),),
}
"""The built-in steps of each topic."""

REASON_STEPS: Mapping[str, tuple[Step, ...]] = {
    "cancelled": (
        Step(
            "cancelled",
            "A person cancelled the automatic recovery: once the cause is dealt with, choose below whether to "
            "run it again (now, or with other limits) or to stop here.",
        ),
    ),
    "deadline": (
        Step(
            "deadline",
            "The deadline ran out: if the service is slow but recovering, retry with a longer deadline.",
        ),
    ),
    "retry-after": (
        Step(
            "retry-after",
            "The service asked for a wait longer than the deadline allows; retry after {retry_at}.",
            "The service asked for a wait longer than the deadline allows.",
        ),
    ),
    "budget": (
        Step(
            "budget",
            "The retry budget of {operation} is spent: many calls are failing at once. Look for a shared "
            "cause, such as a dependency that is down.",
        ),
    ),
    "permanent": (
        Step(
            "permanent",
            "This error was classed as permanent ({kind_reason}): retrying helps only after something changes.",
        ),
    ),
    "result": (Step("result", "The last result was refused by the program's check: {result}."),),
}
"""Steps added for the reason automatic recovery stopped."""
