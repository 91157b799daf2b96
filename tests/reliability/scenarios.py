"""Every scenario the reliability suite proves, by id, with the line RELIABILITY.md shows for it.

A test names its scenario through the ``figures`` fixture (``figures("redis-sigkill-under-load")``); an id
that is not listed here is refused, and ``test_report.py`` checks that every id listed here is used by a
test and appears in RELIABILITY.md, so the published table cannot silently fall behind the suite.
"""

from __future__ import annotations

__all__ = ["GROUPS", "SCENARIOS"]

GROUPS = ("fault", "input", "security", "load", "reference")
"""The sections of RELIABILITY.md, in order."""

SCENARIOS: dict[str, tuple[str, str]] = {
    # -- faults -------------------------------------------------------------------------------------
    "proxy-faults": (
        "fault",
        "The fault proxy itself: refuse, reset, stall, latency, bandwidth, cut, recover",
    ),
    "http-reset-then-recover": (
        "fault",
        "HTTP (httpx transport): connections reset, then the proxy recovers",
    ),
    "http-refused-breaker": ("fault", "HTTP: upstream refuses; the breaker opens, fails fast, closes again"),
    "http-stall-timeout": ("fault", "HTTP: upstream stalls; per-request timeouts end each attempt"),
    "http-cut-mid-response": ("fault", "HTTP: response cut mid-body; the truncated answer is retried"),
    "http-slow-calls-breaker": ("fault", "HTTP: latency and a bandwidth cap; slow calls trip the breaker"),
    "http-demo-fleet": ("fault", "Demo fleet through the proxy: every device ends as its story says"),
    "redis-proxy-faults": ("fault", "Redis breaker store behind the proxy: stall, reset, refuse, recover"),
    "redis-sigkill-under-load": ("fault", "Redis killed (SIGKILL) and restarted while threads call"),
    "sqlite-long-write-lock": ("fault", "SQLite held by another process in a long write transaction"),
    "home-read-only": ("fault", "The home database made read-only (a process without write access)"),
    "home-read-only-mount": (
        "fault",
        "The home on a read-only mount (bind mount remounted ro): SQLite cannot create -shm",
    ),
    "sqlite-write-lock-fleet": (
        "fault",
        "BEGIN EXCLUSIVE held by another process: fail-closed breakers in several processes",
    ),
    "sqlite-lock-holder-sigstop": (
        "fault",
        "The process holding the SQLite write lock frozen (SIGSTOP), then resumed",
    ),
    "disk-full-run": (
        "fault",
        "The disk fills during a run that then exits normally (tmpfs holding the home)",
    ),
    "disk-full-closed-home": (
        "fault",
        "The disk filled to the last byte while the home is closed (tmpfs)",
    ),
    "disk-full-mid-write": (
        "fault",
        "ENOSPC in the middle of journal writes and WAL checkpoints (tmpfs)",
    ),
    "sigkill-mid-recovery": ("fault", "A process SIGKILLed mid-recovery, mid-ticket and mid-settings write"),
    "wall-clock-jump": ("fault", "Wall clock jumps (FakeClock and real stores): waits and open times hold"),
    # -- bad input ----------------------------------------------------------------------------------
    "input-settings-values": ("input", "Settings values (hypothesis): refused cleanly, nothing stored"),
    "input-settings-import": ("input", "Settings documents to import (hypothesis): all or nothing"),
    "input-retry-after": ("input", "Retry-After headers (hypothesis): never raises, never negative"),
    "input-cli-argv": ("input", "CLI arguments (hypothesis, CliRunner and real processes)"),
    "input-ticket-resolution": (
        "input",
        "Ticket resolution requests (hypothesis): refused, ticket unchanged",
    ),
    "input-format-characters": (
        "input",
        "Bidi overrides and other invisible format characters in operation names (CLI, import, screen)",
    ),
    "input-dashboard-api": ("input", "Dashboard JSON API (schemathesis and hypothesis): no 5xx, no change"),
    # -- security -----------------------------------------------------------------------------------
    "dashboard-token-csrf": ("security", "Dashboard without/with a wrong token, cross-site, no CSRF token"),
    "dashboard-hostile-text": ("security", "Error text with HTML/script, very long and binary, on the page"),
    "dashboard-loopback-hosts": (
        "security",
        "dashboard --host on every loopback spelling, other addresses, foreign Host headers",
    ),
    "settings-import-commands": (
        "security",
        "An imported settings file that sets notify.command (a program the machine will run)",
    ),
    "secret-redaction": ("security", "Credentials in URLs redacted in events, logs, journal, tickets, page"),
    # -- load ---------------------------------------------------------------------------------------
    "soak-policy-breaker-journal": ("load", "Soak: calls through policy + breaker + journal, memory flat"),
    "concurrency-asyncio": ("load", "10,000 concurrent asyncio calls through one policy: counts add up"),
    "settings-import-at-scale": (
        "load",
        "Settings import of thousands of operations; status over them; files past the size limits",
    ),
    "concurrency-threads": ("load", "16 threads through one policy: counts add up"),
    # -- against the references --------------------------------------------------------------------
    "reference-backoff-jitter": (
        "reference",
        "Full, equal and decorrelated jitter against Brooker's formulas, draw for draw",
    ),
}
"""id -> (group, what RELIABILITY.md says the scenario is)."""
