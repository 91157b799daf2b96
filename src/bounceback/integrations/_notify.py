"""Notification hooks: tell people who are not watching that a breaker opened, a recovery gave up, or a
ticket waits for them.

Two hooks, both configured by the user in settings (never by a web page):

``notify.command``
    A command line, split like a shell would (``shlex``) but run **without** a shell. The event arrives
    as one JSON object on its standard input, and ``BOUNCEBACK_EVENT`` holds its kind. Nothing from the
    event is ever put on the command line, so an error message cannot inject arguments. For pipes or
    redirections, say so explicitly: ``sh -c 'jq .title | notify-send bounceback'``.
``notify.webhook``
    A URL that receives the same JSON object in a ``POST`` (``Content-Type: application/json``).
    Redirects are not followed (a POST body must not wander elsewhere).

Both run with a timeout, and a failing hook is logged (with the URL's credentials redacted), never
raised: a notification must not break what it reports on.
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from bounceback.core._events import BreakerOpened, Event, EventBus, RecoveryExhausted, TicketOpened
from bounceback.integrations._http import redact_url

__all__ = ["HookResult", "NotifyHooks", "event_payload"]

_log = logging.getLogger("bounceback.notify")

KINDS = ("breaker-opened", "recovery-gave-up", "ticket-waiting")
"""The kinds of notification (the ``kind`` field of every payload)."""


def event_payload(
    kind: str, title: str, body: str = "", *, operation: str = "", at: float = 0.0, **extra: Any
) -> dict[str, Any]:
    """The JSON object a hook receives.

    >>> p = event_payload("breaker-opened", "Breaker db opened", "failure rate 60%", operation="db", at=0.0)
    >>> p["kind"], p["source"], sorted(p)[:4]
    ('breaker-opened', 'bounceback', ['at', 'at_iso', 'body', 'host'])
    """
    return {
        "kind": kind,
        "title": title,
        "body": body,
        "operation": operation,
        "at": at,
        "at_iso": datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds"),
        "host": socket.gethostname(),
        "source": "bounceback",
        **extra,
    }


def _payload_of(event: Event) -> dict[str, Any] | None:
    if isinstance(event, BreakerOpened):
        return event_payload(
            "breaker-opened",
            f"Breaker {event.operation} opened",
            event.reason,
            operation=event.operation,
            at=event.at,
            open_until=event.open_until,
        )
    if isinstance(event, RecoveryExhausted):
        return event_payload(
            "recovery-gave-up",
            f"Recovery of {event.operation} gave up after {event.attempts} "
            f"attempt{'' if event.attempts == 1 else 's'} ({event.reason})",
            f"{event.error_type}: {event.error_message}",
            operation=event.operation,
            at=event.at,
            run_id=event.run_id,
        )
    if isinstance(event, TicketOpened):
        return event_payload(
            "ticket-waiting",
            f"Ticket {event.ticket_id} for {event.operation} needs a person",
            event.summary,
            operation=event.operation,
            at=event.at,
            ticket_id=event.ticket_id,
        )
    return None


@dataclass(frozen=True, slots=True)
class HookResult:
    """What one hook did: ``hook`` (``command`` or ``webhook``), whether it worked, and a short detail.

    ``target`` is the program name or the redacted URL, safe to log.

    >>> HookResult("webhook", "https://***@hooks.example/x", True, "HTTP 204").ok
    True
    """

    hook: str
    target: str
    ok: bool
    detail: str


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # Returning None makes urllib raise HTTPError for the 3xx instead of following it.
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # noqa: ARG002
        return None


class NotifyHooks:
    """Run the notification hooks for an event.

    ``settings`` is a settings source (``effective(operation)``) read at each event, so a hook changed
    with ``bounceback settings set notify.webhook ...`` applies at once; ``command`` / ``webhook`` given
    here win over the settings. ``timeout`` bounds each hook (seconds).

    >>> hooks = NotifyHooks(command="", webhook="")
    >>> hooks.send(event_payload("ticket-waiting", "Ticket t1 needs a person"))
    []
    """

    def __init__(
        self,
        settings: Any = None,
        *,
        command: str | None = None,
        webhook: str | None = None,
        timeout: float = 10.0,
        on_result: Callable[[HookResult], None] | None = None,
    ) -> None:
        self.settings = settings
        self.command = command
        self.webhook = webhook
        self.timeout = timeout
        self.on_result = on_result
        self._opener = urllib.request.build_opener(_NoRedirect)

    def targets(self, operation: str | None = None) -> tuple[str, str]:
        """The command and webhook URL in force for ``operation`` (empty strings when unset)."""
        values: Mapping[str, Any] = {}
        if self.settings is not None and (self.command is None or self.webhook is None):
            try:
                values = self.settings.effective(operation or None)
            except Exception:
                _log.warning("cannot read the notify settings", exc_info=True)
        command = self.command if self.command is not None else str(values.get("notify.command") or "")
        webhook = self.webhook if self.webhook is not None else str(values.get("notify.webhook") or "")
        return command.strip(), webhook.strip()

    def send(self, payload: Mapping[str, Any]) -> list[HookResult]:
        """Run every configured hook for ``payload`` (one event), now, in this thread; return what happened."""
        operation = str(payload.get("operation") or "") or None
        command, webhook = self.targets(operation)
        data = json.dumps(payload, ensure_ascii=False, default=str).encode("utf-8")
        results = []
        if command:
            results.append(self.run_command(command, data, str(payload.get("kind", ""))))
        if webhook:
            results.append(self.post_webhook(webhook, data))
        for result in results:
            if not result.ok:
                _log.warning("notification %s %s failed: %s", result.hook, result.target, result.detail)
            if self.on_result is not None:
                self.on_result(result)
        return results

    def send_later(self, payload: Mapping[str, Any]) -> threading.Thread:
        """:meth:`send` in a daemon thread (the caller does not wait for slow hooks)."""
        thread = threading.Thread(
            target=self.send, args=(dict(payload),), name="bounceback-notify", daemon=True
        )
        thread.start()
        return thread

    def run_command(self, command: str, data: bytes, kind: str = "") -> HookResult:
        """Run ``command`` (no shell) with ``data`` on its standard input."""
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            return HookResult("command", command[:80], False, f"cannot split the command line: {exc}")
        if not argv:
            return HookResult("command", "", False, "empty command")
        target = os.path.basename(argv[0])
        env = {**os.environ, "BOUNCEBACK_EVENT": kind}
        try:
            done = subprocess.run(
                argv, input=data, capture_output=True, timeout=self.timeout, env=env, check=False, shell=False
            )
        except subprocess.TimeoutExpired:
            return HookResult("command", target, False, f"still running after {self.timeout:g} s; killed")
        except OSError as exc:
            return HookResult("command", target, False, f"cannot run it: {exc.strerror or exc}")
        if done.returncode != 0:
            tail = done.stderr.decode("utf-8", "replace").strip()[-200:]
            return HookResult("command", target, False, f"exit code {done.returncode}: {tail}")
        return HookResult("command", target, True, "exit code 0")

    def post_webhook(self, url: str, data: bytes) -> HookResult:
        """POST ``data`` (JSON) to ``url``; any 2xx answer counts as delivered."""
        target = redact_url(url)
        request = urllib.request.Request(
            url,
            data=data,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "bounceback-notify"},
        )
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                status = int(response.status)
        except urllib.error.HTTPError as exc:
            return HookResult("webhook", target, False, f"HTTP {exc.code}")
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return HookResult("webhook", target, False, f"cannot deliver: {reason}")
        if not 200 <= status < 300:
            return HookResult("webhook", target, False, f"HTTP {status}")
        return HookResult("webhook", target, True, f"HTTP {status}")

    def subscribe(self, bus: EventBus) -> Callable[[], None]:
        """Send the hooks for every breaker opening, recovery giving up and ticket opening on ``bus``.

        Each is sent from a daemon thread. Returns the function that unsubscribes.
        """

        def on_event(event: Event) -> None:
            payload = _payload_of(event)
            if payload is not None:
                self.send_later(payload)

        return bus.subscribe(on_event)
