"""Security under hostile input: credentials never leave the program; the dashboard refuses every request
it should (no token, a wrong one, cross-site, no CSRF token) and shows hostile error text inertly.

A real dashboard server (uvicorn on 127.0.0.1) over a home database written by the library itself.
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bounceback import Backoff, CircuitBreaker, Policy, RecoveryRequired
from bounceback.core.policy._manual import ManualRecovery
from bounceback.events import EventBus, log_events
from bounceback.stores._tickets import SqliteTickets
from bounceback.stores.journal._writer import JournalWriter
from bounceback.testing import FakeClock, RecordingSink
from bounceback.web import DashboardServer
from tests.reliability.conftest import Figures
from tests.reliability.dbcheck import stored_data
from tests.web.conftest import Client

SECRETS = ("hunter2", "tok-abc123", "k3y-999", "eyJhbGciOiJIUzI1NiJ9.sig", "s3cr3tpw")
LEAKY_ERRORS = [
    "GET https://ann:hunter2@api.example/v1/items?token=tok-abc123&page=2 failed: 503",
    "POST https://api.example/upload?api_key=k3y-999 timed out",
    "401 Unauthorized; request had Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.sig",
    "connect to redis://:s3cr3tpw@cache.internal:6379/0 refused",
    "login failed for password=s3cr3tpw on db.local:5432",
]
PAGES = ("/", "/recoveries", "/timeline", "/settings", "/tickets")


class Leak(ConnectionError):
    """An error whose message carries a credential, as client libraries' often do."""


def _all_text(db: Path) -> str:
    """Every value stored in the database, as one string."""
    conn = sqlite3.connect(db)
    try:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return "\n".join(repr(conn.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)
    finally:
        conn.close()


@pytest.fixture
def database(home: Path) -> Path:
    return home / "bounceback.db"


@pytest.fixture
def client(database: Path) -> Iterator[Client]:
    with DashboardServer(database, hooks=False) as server:
        yield Client(server)


def _seed_leaks(database: Path, bus: EventBus) -> list[str]:
    """Recoveries, give-ups, a ticket and a health check whose errors carry credentials."""
    clock = FakeClock(wall_start=time.time() - 30)
    tickets = SqliteTickets(database, clock=clock)
    parked = []
    with JournalWriter(database, bus=bus, clock=clock) as writer:
        for i, message in enumerate(LEAKY_ERRORS):
            left = [1 if i % 2 else 5]

            def call(left: list[int] = left, message: str = message) -> str:
                if left[0]:
                    left[0] -= 1
                    raise Leak(message)
                return "ok"

            manual = ManualRecovery("park", store=tickets, bus=bus, clock=clock)
            policy = Policy(
                f"leaky-{i}", attempts=3, backoff=Backoff(initial=0.1), clock=clock, bus=bus, fallback=manual
            )
            try:
                policy.call(call)
            except RecoveryRequired as exc:
                parked.append(exc.ticket.id)
        breaker = CircuitBreaker(
            "leaky-dep", window=2, min_calls=2, open_seconds=1, clock=clock, bus=bus, timers=False,
            health_check=lambda: (_ for _ in ()).throw(Leak(LEAKY_ERRORS[0])),
        )  # fmt: skip
        for _ in range(2):
            with pytest.raises(Leak):
                breaker.call(lambda: (_ for _ in ()).throw(Leak(LEAKY_ERRORS[3])))
        clock.advance(6)  # past health_check_seconds: the check runs, fails, and says why
        breaker.tick()
        writer.flush()
    tickets.close()
    return parked


def test_credentials_never_leave_the_program(
    database: Path, client: Client, figures: Callable[[str], Figures]
) -> None:
    fig = figures("secret-redaction")
    bus = EventBus()
    sink = RecordingSink(bus)
    stream = io.StringIO()
    logger = logging.getLogger("reliability.redaction")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s %(bounceback)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    stop = log_events(logger, bus=bus)
    try:
        parked = _seed_leaks(database, bus)
    finally:
        stop()
        logger.removeHandler(handler)
    assert len(parked) >= 2
    places = {
        "events": "\n".join(repr(e) for e in sink.events),
        "logs": stream.getvalue(),
        "journal, tickets and every other table": _all_text(database),
    }
    for path in (*PAGES, "/api/snapshot"):
        places[f"page {path}"] = client.get(path).text
    for ticket_id in parked:
        places[f"ticket {ticket_id}"] = json.dumps(SqliteTickets(database).get(ticket_id).to_dict())
    for where, text in places.items():
        for secret in SECRETS:
            assert secret not in text, f"{secret!r} leaked into {where}"
    assert "***@api.example" in places["events"] and "token=***" in places["logs"]
    checked = [e for e in sink.events if type(e).__name__ == "HealthChecked"]
    assert checked and all(e.error and "***@api.example" in e.error for e in checked)  # type: ignore[attr-defined]
    assert "leaky-0" in places["page /recoveries"]
    fig.tries = len(LEAKY_ERRORS) * len(places)
    fig.result = (
        f"{len(SECRETS)} credentials (URL user-info, token and api_key parameters, Bearer header, password=) "
        f"absent from events, logs, journal, tickets, {len(PAGES)} pages and the API"
    )


# -- the gate: every route x every way of asking wrongly -----------------------------------------------------

POSTS = {
    "/api/settings": {"key": "retry.max_attempts", "value": 9},
    "/api/settings/reset": {"key": "retry.max_attempts"},
    "/api/breakers/control": {"name": "gate-db", "action": "open"},
    "/api/runs/cancel": {"run_id": "x"},
    "/api/tickets/resolve": {"ticket_id": "x", "choice": "abort"},
    "/settings": {"key": "retry.max_attempts", "value": "9"},
    "/breakers/control": {"name": "gate-db", "action": "open"},
}


def _credentials(client: Client) -> dict[str, dict[str, str]]:
    other = f"bounceback_{client.server.port + 1}={client.token}"
    return {
        "none": {},
        "wrong cookie": {"Cookie": f"{client.server.policy.cookie_name}=nope"},
        "token of another port's cookie": {"Cookie": other},
        "wrong bearer": {"Authorization": "Bearer nope"},
        "empty bearer": {"Authorization": "Bearer "},
        "basic auth": {"Authorization": f"Basic {client.token}"},
        "token upper-cased": {"Authorization": f"Bearer {client.token.upper()}"},
    }


def _cross_site(client: Client) -> dict[str, dict[str, str]]:
    base = {"Cookie": client.cookie, "X-CSRF-Token": client.csrf}
    return {
        "no origin": base,
        "evil origin": {**base, "Origin": "http://evil.example"},
        "null origin": {**base, "Origin": "null"},
        "other port": {**base, "Origin": f"http://127.0.0.1:{client.server.port + 1}"},
        "sec-fetch cross-site": {**base, "Origin": client.origin, "Sec-Fetch-Site": "cross-site"},
        "no csrf token": {"Cookie": client.cookie, "Origin": client.origin},
        "wrong csrf token": {"Cookie": client.cookie, "Origin": client.origin, "X-CSRF-Token": "0" * 64},
        "evil referer": {
            "Cookie": client.cookie,
            "X-CSRF-Token": client.csrf,
            "Referer": "http://evil.example/x",
        },
        "foreign host": {"Cookie": client.cookie, "Host": "evil.example", "Origin": "http://evil.example"},
    }


def test_the_dashboard_refuses_every_unauthorised_request(
    database: Path, client: Client, figures: Callable[[str], Figures]
) -> None:
    fig = figures("dashboard-token-csrf")
    _seed_leaks(database, EventBus())
    before = stored_data(database)
    tries = 0
    for (name, headers), path in itertools.product(
        _credentials(client).items(), [*PAGES, "/api/snapshot", "/events"]
    ):
        reply = client.request("GET", path, headers=headers)
        tries += 1
        assert reply.status in (401, 403), (name, path, reply.status)
        assert b"leaky" not in reply.body
    for (name, headers), (path, body) in itertools.product(
        {**_credentials(client), **_cross_site(client)}.items(), POSTS.items()
    ):
        form = not path.startswith("/api/")
        sent = {
            "Content-Type": "application/x-www-form-urlencoded" if form else "application/json",
            **headers,
        }
        data = "&".join(f"{k}={v}" for k, v in body.items()) if form else json.dumps(body)
        reply = client.request("POST", path, data, sent)
        tries += 1
        assert reply.status in (401, 403, 421), (name, path, reply.status, reply.body[:200])
        for method in ("PUT", "DELETE", "PATCH"):
            tries += 1
            assert client.request(method, path, data, sent).status in (401, 403, 405, 421)
    assert stored_data(database) == before
    fig.tries = tries
    fig.result = f"{tries} unauthorised or cross-site requests over every page, API route and method: all refused, nothing changed"


# -- hostile error text on the page ------------------------------------------------------------------------

HOSTILE = [
    "<script>alert('x')</script><img src=x onerror=alert(1)>",
    "\"'><svg/onload=alert(1)>",
    "\x1b[2J\x1b[31mterminal escape\x07 and \u202egnp.exe bidi",
    "A" * 1_000_000,
    "</textarea></title><iframe src=javascript:alert(1)>",
]


class Hostile(ConnectionError):
    pass


def test_hostile_error_text_is_shown_inert_and_bounded(
    database: Path, client: Client, figures: Callable[[str], Figures]
) -> None:
    fig = figures("dashboard-hostile-text")
    bus = EventBus()
    clock = FakeClock(wall_start=time.time() - 30)
    tickets = SqliteTickets(database, clock=clock)
    errors: list[Any] = [*HOSTILE, bytes(range(256)) * 40]
    with JournalWriter(database, bus=bus, clock=clock) as writer:
        for i, text in enumerate(errors):

            def fail(text: Any = text) -> None:
                raise Hostile(text)

            manual = ManualRecovery("park", store=tickets, bus=bus, clock=clock)
            with pytest.raises(RecoveryRequired):
                Policy(f"hostile-{i}", attempts=2, clock=clock, bus=bus, fallback=manual).call(fail)
        writer.flush()
    tickets.close()
    tries = 0
    for path in (*PAGES, "/api/snapshot"):
        reply = client.get(path)
        tries += 1
        assert reply.status == 200, path
        text = reply.text
        assert len(reply.body) < 2_000_000, (path, len(reply.body))  # a megabyte error is cut, not served
        if path != "/api/snapshot":
            assert not re.search(
                r"<(script|svg|iframe|img)\b[^>]*(onload|onerror|alert|javascript)", text, re.I
            ), path
            assert (
                "<script>alert" not in text
                and "onerror=alert" not in text.replace("&#x27;", "'").split("&lt;")[0]
            )
            assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
        else:
            data = json.loads(text)
            assert all(len(r.get("last_error") or "") <= 2100 for r in data["runs"])
            assert "\x1b" not in text and "\\u001b" not in text
    fig.tries = tries * len(errors)
    fig.result = (
        f"{len(errors)} hostile errors (script, attribute breakout, terminal and bidi escapes, 1 MB, binary) "
        f"on {len(PAGES)} pages and the API: escaped, control characters removed, cut to a bounded size"
    )


def test_hostile_error_text_runs_no_script_in_a_real_browser(
    database: Path, client: Client, figures: Callable[[str], Figures]
) -> None:
    """The same hostile errors, opened in headless Chromium: no dialog, no injected element, no CSP breach."""
    from playwright.sync_api import sync_playwright

    fig = figures("dashboard-hostile-text")
    bus = EventBus()
    clock = FakeClock(wall_start=time.time() - 30)
    tickets = SqliteTickets(database, clock=clock)
    with JournalWriter(database, bus=bus, clock=clock) as writer:
        for i, text in enumerate(HOSTILE[:3] + HOSTILE[4:]):

            def fail(text: str = text) -> None:
                raise Hostile(text)

            with pytest.raises(RecoveryRequired):
                manual = ManualRecovery("park", store=tickets, bus=bus, clock=clock)
                Policy(f"hostile-{i}", attempts=2, clock=clock, bus=bus, fallback=manual).call(fail)
        writer.flush()
    tickets.close()
    server = client.server
    dialogs: list[str] = []
    violations: list[str] = []
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path="/usr/bin/chromium", args=["--headless", "--no-sandbox"]
        )
        try:
            page = chromium.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on(
                "console",
                lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None,
            )
            page.goto(server.policy.url("127.0.0.1"))  # the token link: becomes a cookie
            for path in PAGES:
                page.goto(f"http://127.0.0.1:{server.port}{path}")
                page.wait_for_load_state("load")
                injected = page.evaluate(
                    "() => document.querySelectorAll('iframe, svg[onload], img[onerror], script:not([src])').length"
                )
                assert injected == 0, path
                if path == "/recoveries":  # the hostile text is there, as text a person can read
                    assert "<script>alert('x')</script>" in page.inner_text("body")
        finally:
            chromium.close()
    assert dialogs == []
    assert violations == []  # nothing even tried to run inline
    fig.tries = len(PAGES)
    fig.result = (
        "in headless Chromium: the hostile text reads as text; no dialog, no injected element, no CSP report"
    )
