"""The dashboard's gate, against a real server on 127.0.0.1 over real HTTP: token, cookie, Host, Origin,
CSRF, methods, body size, headers; escaping and redaction in served pages; the JSON API and its schema."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bounceback.cli import cli
from bounceback.errors import ConfigError
from bounceback.stores import SqliteSettings
from bounceback.web import DashboardServer, check_bind
from bounceback.web._security import CSP
from tests.web.conftest import Client, run_scenario
from tests.web.scenarios import SCRIPT_ERROR

PAGES = ["/", "/recoveries", "/timeline", "/settings", "/tickets", "/api/snapshot", "/events?view=overview"]


def _history(database: Path) -> list[object]:
    with SqliteSettings(database) as settings:
        return list(settings.history())


# -- the token -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*PAGES, "/static/app.js", "/api/openapi.json", "/nowhere"])
def test_no_token_is_401_and_a_wrong_token_is_403(client: Client, path: str) -> None:
    assert client.request("GET", path).status == 401
    wrong = f"{client.server.policy.cookie_name}=not-the-token"
    assert client.request("GET", path, headers={"Cookie": wrong}).status == 403
    assert client.request("GET", path, headers={"Authorization": "Bearer nope"}).status == 403
    sep = "&" if "?" in path else "?"
    assert client.request("GET", f"{path}{sep}token=nope").status == 403


def test_the_token_in_the_url_becomes_an_httponly_strict_cookie(client: Client) -> None:
    reply = client.request("GET", f"/timeline?op=fetch&token={client.token}")
    assert reply.status == 303
    assert reply.headers["Location"] == "/timeline?op=fetch"  # the token leaves the address bar
    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith(f"{client.server.policy.cookie_name}={client.token};")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    page = client.get("/timeline?op=fetch")
    assert page.status == 200 and "<h1>Timeline</h1>" in page.text


def test_a_foreign_host_header_is_refused_even_with_the_token(client: Client) -> None:
    # A DNS-rebinding page reaches 127.0.0.1 under its own name: it gets nothing.
    reply = client.request(
        "GET", "/", headers={"Host": f"evil.example:{client.server.port}", "Cookie": client.cookie}
    )
    assert reply.status == 421
    assert (
        client.request(
            "GET", "/", headers={"Host": f"localhost:{client.server.port}", "Cookie": client.cookie}
        ).status
        == 200
    )


def test_a_non_loopback_bind_needs_allow_remote(database: Path) -> None:
    with pytest.raises(ConfigError, match="--allow-remote"):
        check_bind("0.0.0.0", allow_remote=False)
    with pytest.raises(ConfigError, match="--allow-remote"):
        DashboardServer(database, host="192.0.2.10")
    check_bind("0.0.0.0", allow_remote=True)
    check_bind("::1", allow_remote=False)
    result = CliRunner().invoke(
        cli, ["--home", str(database.parent), "dashboard", "--host", "0.0.0.0", "--no-open"]
    )
    assert result.exit_code == 2 and "--allow-remote" in result.output


# -- changes: POST, CSRF, origin ----------------------------------------------------------------------


def _save_attempts(client: Client, **headers: str) -> dict[str, str]:
    return {
        "csrf": client.csrf,
        "op": "",
        "o:retry.max_attempts": "5",
        "v:retry.max_attempts": "9",
        **headers,
    }


def test_a_same_origin_post_with_the_csrf_token_changes_settings(client: Client, database: Path) -> None:
    reply = client.post_form("/settings", _save_attempts(client))
    assert reply.status == 303 and reply.headers["Location"] == "/settings?done=saved"
    with SqliteSettings(database) as settings:
        assert settings.effective(None)["retry.max_attempts"] == 9


@pytest.mark.parametrize(
    ("fields", "headers", "why"),
    [
        ({"csrf": ""}, {}, "CSRF token is missing"),
        ({"csrf": "forged"}, {}, "CSRF token is missing or wrong"),
        ({}, {"Origin": "http://evil.example"}, "another origin"),
        ({}, {"Origin": "null"}, "another origin"),
        ({}, {"Sec-Fetch-Site": "cross-site"}, "another site"),
        ({}, {"Origin": "", "Referer": "http://evil.example/page"}, "another origin"),
    ],
)
def test_cross_site_and_forged_posts_are_refused_and_change_nothing(
    client: Client, database: Path, fields: dict[str, str], headers: dict[str, str], why: str
) -> None:
    sent = {k: v for k, v in headers.items() if v}
    body = {**_save_attempts(client), **fields}
    if headers.get("Origin") == "":
        # no Origin at all: only the Referer speaks for the request
        reply = client.request(
            "POST",
            "/settings",
            "&".join(f"{k}={v}" for k, v in body.items()),
            {"Cookie": client.cookie, "Content-Type": "application/x-www-form-urlencoded", **sent},
        )
    else:
        reply = client.post_form("/settings", body, headers=sent)
    assert reply.status == 403 and why in reply.text
    assert _history(database) == []


def test_a_post_without_origin_or_referer_is_refused(client: Client, database: Path) -> None:
    body = "&".join(f"{k}={v}" for k, v in _save_attempts(client).items())
    reply = client.request(
        "POST",
        "/settings",
        body,
        {"Cookie": client.cookie, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert reply.status == 403 and "Origin" in reply.text
    assert _history(database) == []


def test_only_get_and_post_are_served_and_bodies_are_bounded(client: Client, database: Path) -> None:
    for method in ("PUT", "DELETE", "PATCH"):
        reply = client.request(method, "/settings", headers={"Cookie": client.cookie})
        assert reply.status == 405
    huge = "a=" + "x" * 300_000
    reply = client.post_form("/settings", {"csrf": client.csrf, "pad": huge})
    assert reply.status == 413
    assert _history(database) == []


def test_a_get_never_changes_anything(client: Client, database: Path) -> None:
    reply = client.get("/settings?v:retry.max_attempts=9&o:retry.max_attempts=5&csrf=" + client.csrf)
    assert reply.status == 200 and _history(database) == []


# -- headers on every response -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["/", "/settings", "/static/app.js", "/static/style.css", "/api/snapshot", "/nope"]
)
def test_security_headers_on_every_response(client: Client, path: str) -> None:
    for reply in (client.get(path), client.request("GET", path)):
        assert reply.headers["Content-Security-Policy"] == CSP
        assert "frame-ancestors 'none'" in CSP and "script-src 'self'" in CSP and "unsafe-inline" not in CSP
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["Referrer-Policy"] == "same-origin"
        assert reply.headers["X-Frame-Options"] == "DENY"


def test_pages_have_no_inline_script_or_style(client: Client) -> None:
    for path in ("/", "/recoveries", "/timeline", "/settings", "/tickets"):
        text = client.get(path).text
        assert re.findall(r"<script[^>]*>", text) == ['<script src="/static/app.js" defer>']
        assert "<style" not in text and " style=" not in text and not re.search(r"\son[a-z]+=", text)


# -- untrusted text in served pages -----------------------------------------------------------------


def test_script_in_an_error_message_is_served_escaped(client: Client, database: Path) -> None:
    run_scenario("seed", str(database))
    for path in ("/recoveries", "/timeline"):
        text = client.get(path).text
        assert "<script>alert(" not in text and "<b>no</b>" not in text
        assert "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt;" in text
    api = client.get("/api/snapshot").json()
    errors = [r["last_error"] for r in api["runs"] if r["last_error"]]
    assert SCRIPT_ERROR in errors  # the API carries the text itself; rendering it is the reader's job


def test_credentials_in_error_urls_are_redacted_in_pages_and_api(client: Client, database: Path) -> None:
    from bounceback import Policy
    from bounceback.events import EventBus
    from bounceback.stores.journal._writer import JournalWriter
    from bounceback.testing import FakeClock

    bus = EventBus()

    def leak() -> None:
        raise OSError("GET https://ann:hunter2@api.example/v1?token=abc123 refused")

    with JournalWriter(database, bus=bus, clock=FakeClock(wall_start=time.time() - 60)) as writer:
        with pytest.raises(OSError):
            Policy("leaky", attempts=2, bus=bus, clock=FakeClock(wall_start=time.time() - 60)).call(leak)
        writer.flush()
    for path in ("/recoveries", "/timeline", "/api/snapshot"):
        text = client.get(path).text
        assert "leaky" in text and "hunter2" not in text and "abc123" not in text, path
        assert "***@api.example" in text


# -- the JSON API -------------------------------------------------------------------------------------


def test_the_api_with_a_bearer_token_needs_no_csrf(client: Client, database: Path) -> None:
    reply = client.post_json(
        "/api/settings", {"key": "retry.initial_delay", "value": "250ms", "operation": "fetch"}
    )
    assert reply.status == 200 and reply.json()["change"]["new"] == 0.25
    got = client.request("GET", "/api/settings?op=fetch", headers={"Authorization": f"Bearer {client.token}"})
    assert got.json()["values"]["retry.initial_delay"] == {
        "value": 0.25,
        "text": "250ms",
        "source": "operation",
    }


def test_the_api_refuses_bad_values_with_a_structured_error_and_changes_nothing(
    client: Client, database: Path
) -> None:
    cases = [
        ({"key": "retry.max_attempts", "value": 0}, "retry.max_attempts"),
        ({"key": "retry.max_attempt", "value": 3}, "key"),
        ({"key": "notify.command", "value": "touch /tmp/pwned"}, "key"),
        ({"key": "retry.max_attempts"}, "value"),
        ({"key": "retry.max_attempts", "value": 3, "operation": " spaced "}, "operation"),
    ]
    for body, field in cases:
        reply = client.post_json("/api/settings", body)
        assert reply.status == 422, body
        assert reply.json()["error"]["field"] == field, (body, reply.json())
    assert client.post_json("/api/settings", [1, 2]).status == 422
    raw = client.request(
        "POST",
        "/api/settings",
        "{not json",
        {"Authorization": f"Bearer {client.token}", "Content-Type": "application/json"},
    )
    assert raw.status == 422
    assert _history(database) == []


def test_a_cookie_api_call_needs_the_csrf_header_and_same_origin(client: Client, database: Path) -> None:
    body = json.dumps({"key": "retry.max_attempts", "value": 4})
    base = {"Cookie": client.cookie, "Content-Type": "application/json", "Origin": client.origin}
    assert client.request("POST", "/api/settings", body, base).status == 403
    ok = client.request("POST", "/api/settings", body, {**base, "X-CSRF-Token": client.csrf})
    assert ok.status == 200
    assert len(_history(database)) == 1


def test_breaker_control_and_cancel_refuse_unknown_names(client: Client) -> None:
    assert client.post_json("/api/breakers/control", {"name": "nope", "action": "open"}).status == 422
    assert client.post_json("/api/breakers/control", {"name": "nope", "action": "explode"}).status == 422
    reply = client.post_json("/api/runs/cancel", {"run_id": "no-such-run"})
    assert reply.status == 422 and reply.json()["error"]["field"] == "run_id"
    assert client.post_json("/api/tickets/resolve", {"ticket_id": "nope", "choice": "retry"}).status == 422


def test_the_openapi_schema_describes_every_api_route(client: Client) -> None:
    doc = client.get("/api/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    routes = {
        (route.path, method.lower())
        for route in client.server.app.routes
        if getattr(route, "path", "").startswith("/api/") and route.path != "/api/openapi.json"
        for method in (route.methods or ()) - {"HEAD"}
    }
    described = {(path, method) for path, ops in doc["paths"].items() for method in ops}
    assert described == routes
    for path, ops in doc["paths"].items():
        if "post" in ops:
            assert client.request("POST", path, "{}", {"Content-Type": "application/json"}).status == 401


# -- the event stream ----------------------------------------------------------------------------------


def test_the_event_stream_pushes_a_change_soon_after_it_is_written(client: Client, database: Path) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", client.server.port, timeout=5)
    conn.request("GET", "/events?view=settings", headers={"Host": client.host, "Cookie": client.cookie})
    response = conn.getresponse()
    assert response.status == 200 and response.headers["Content-Type"].startswith("text/event-stream")

    def next_event() -> dict[str, object]:
        name, data = "", ""
        while True:
            line = response.readline().decode().rstrip("\n")
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = line[6:]
            elif line == "" and name:
                return {"event": name, **json.loads(data)}

    first = next_event()
    assert first["event"] == "regions" and "settings-history" in first["regions"]  # type: ignore[operator]
    with SqliteSettings(database) as settings:
        settings.set("retry.max_attempts", 8)
        written = time.time()
    pushed = next_event()
    received = time.time()
    assert "retry.max_attempts" in pushed["regions"]["settings-history"]  # type: ignore[index]
    assert received - written < 1.0
    conn.close()
