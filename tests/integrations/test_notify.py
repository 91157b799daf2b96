"""Notification hooks against a real HTTP server on 127.0.0.1 and real commands."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bounceback.core._events import BreakerOpened, EventBus, RecoveryExhausted, TicketOpened
from bounceback.core.settings._source import StaticSettings
from bounceback.integrations._notify import HookResult, NotifyHooks, event_payload
from tests.http_server import closed_port


class Receiver:
    """A webhook receiver: records each request's method, path, headers and JSON body."""

    def __init__(self, status: int = 204, location: str | None = None) -> None:
        self.status = status
        self.location = location
        self.requests: list[dict[str, Any]] = []
        self.arrived = threading.Event()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            rec.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": json.loads(body or b"null")}
            )
            rec.arrived.set()
            self.send_response(rec.status)
            if rec.location:
                self.send_header("Location", rec.location)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield rec, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


PAYLOAD = event_payload("breaker-opened", "Breaker db opened", "failure rate 60%", operation="db", at=1.8e9)

# A real command: writes what arrives on stdin, and the event kind, to the file named by its argument.
RECORDER = (
    "import os, sys; data = sys.stdin.read(); "
    "open(sys.argv[1], 'w').write(os.environ.get('BOUNCEBACK_EVENT', '') + '\\n' + data)"
)


def test_the_webhook_receives_the_event_as_json(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    results = NotifyHooks(command="", webhook=f"{url}/hooks/bb").send(PAYLOAD)
    assert results == [HookResult("webhook", f"{url}/hooks/bb", True, "HTTP 204")]
    (got,) = rec.requests
    assert got["path"] == "/hooks/bb" and got["headers"]["Content-Type"] == "application/json"
    assert got["body"]["kind"] == "breaker-opened" and got["body"]["operation"] == "db"
    assert got["body"]["source"] == "bounceback" and got["body"]["title"] == "Breaker db opened"


def test_a_failing_webhook_is_reported_not_raised(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    rec.status = 500
    (result,) = NotifyHooks(command="", webhook=url).send(PAYLOAD)
    assert not result.ok and result.detail == "HTTP 500"
    down = f"http://ann:s3cret@127.0.0.1:{closed_port()}/hook?key=k3y"
    (result,) = NotifyHooks(command="", webhook=down, timeout=2).send(PAYLOAD)
    assert not result.ok and "cannot deliver" in result.detail
    assert "s3cret" not in result.target and "k3y" not in result.target


def test_a_redirect_is_not_followed(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    rec.status, rec.location = 307, f"{url}/elsewhere"
    (result,) = NotifyHooks(command="", webhook=f"{url}/first").send(PAYLOAD)
    assert not result.ok and result.detail == "HTTP 307"
    assert [r["path"] for r in rec.requests] == ["/first"]


def test_the_command_gets_the_event_on_stdin_and_no_shell(tmp_path: Path) -> None:
    out = tmp_path / "event.txt"
    marker = tmp_path / "injected"
    command = f'{sys.executable} -c "{RECORDER}" {out}'
    hostile = {**PAYLOAD, "body": f"; touch {marker}; $(touch {marker}) `touch {marker}`"}
    (result,) = NotifyHooks(command=command, webhook="").send(hostile)
    assert result.ok and result.hook == "command"
    kind, data = out.read_text().split("\n", 1)
    assert kind == "breaker-opened" and json.loads(data)["body"] == hostile["body"]
    assert not marker.exists()
    # shell syntax in the command itself is not interpreted either: it is one more argument
    (plain,) = NotifyHooks(command=f"{sys.executable} -c pass ; touch {marker}", webhook="").send(PAYLOAD)
    assert plain.ok and not marker.exists()


def test_failing_commands_are_reported(tmp_path: Path) -> None:
    (missing,) = NotifyHooks(command="/no/such/program --flag", webhook="").send(PAYLOAD)
    assert not missing.ok and "cannot run it" in missing.detail
    (code,) = NotifyHooks(command=f"{sys.executable} -c 'import sys; sys.exit(3)'", webhook="").send(PAYLOAD)
    assert not code.ok and code.detail.startswith("exit code 3")
    slow = NotifyHooks(command=f"{sys.executable} -c 'import time; time.sleep(30)'", webhook="", timeout=0.3)
    (stuck,) = slow.send(PAYLOAD)
    assert not stuck.ok and "killed" in stuck.detail
    (quote,) = NotifyHooks(command="echo 'unclosed", webhook="").send(PAYLOAD)
    assert not quote.ok and "cannot split" in quote.detail


def test_targets_come_from_settings_per_operation(tmp_path: Path, receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    out = tmp_path / "event.txt"
    settings = StaticSettings(
        {"notify": {"webhook": f"{url}/global"}},
        operations={"db": {"notify.command": f'{sys.executable} -c "{RECORDER}" {out}'}},
    )
    hooks = NotifyHooks(settings)
    assert hooks.targets("other") == ("", f"{url}/global")
    results = hooks.send(PAYLOAD)  # operation "db": its own command, the global webhook
    assert [r.hook for r in results] == ["command", "webhook"] and all(r.ok for r in results)
    assert out.exists() and rec.requests[0]["path"] == "/global"
    settings.set("notify.webhook", "")
    assert hooks.send({**PAYLOAD, "operation": "other"}) == []


def test_bus_events_become_notifications(receiver: tuple[Receiver, str]) -> None:
    rec, url = receiver
    bus = EventBus()
    stop = NotifyHooks(command="", webhook=url).subscribe(bus)
    bus.emit(BreakerOpened("db", 1.8e9, "closed", "open", "failure rate 60%", 1.8e9 + 30))
    bus.emit(TicketOpened("sync", 1.8e9, "t1", "sync: OSError after 3 attempts"))
    from bounceback.core.classify._rules import Classification, ErrorKind

    bus.emit(
        RecoveryExhausted(
            "sync", 1.8e9, "r1", 3, 2.0, 1.8e9 - 2, "attempts", "OSError", "boom",
            Classification(ErrorKind.TRANSIENT, "OSError"),
        )
    )  # fmt: skip
    stop()
    for _ in range(100):  # each hook runs in its own thread: wait (bounded) for all three
        if len(rec.requests) == 3:
            break
        rec.arrived.wait(0.05)
        rec.arrived.clear()
    kinds = sorted(r["body"]["kind"] for r in rec.requests)
    assert kinds == ["breaker-opened", "recovery-gave-up", "ticket-waiting"]
    gave_up = next(r["body"] for r in rec.requests if r["body"]["kind"] == "recovery-gave-up")
    assert gave_up["run_id"] == "r1" and gave_up["body"] == "OSError: boom"
