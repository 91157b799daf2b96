"""The dashboard's gate: access token, session cookie, Host and Origin checks, CSRF, security headers.

One ASGI middleware in front of every route (pages, API, events, static files), so no route can forget
a check:

1. **Host**: in loopback mode only ``127.0.0.1:PORT``, ``localhost:PORT`` and ``[::1]:PORT`` are served, so
   a DNS-rebinding page (``evil.example`` resolving to 127.0.0.1) gets ``421`` and no data.
2. **Access token** (random, printed at start-up): ``?token=`` on the first visit (answered with a cookie and
   a redirect to the same URL without the token, so it stays out of history and logs), then the cookie
   (HttpOnly, SameSite=Strict, named after the port so two dashboards do not overwrite each other), or
   ``Authorization: Bearer`` for scripts. No token: ``401``; a wrong one: ``403``.
3. **Changes** are POST only (other methods: ``405``). With the cookie they also need the CSRF token
   (form field ``csrf`` or header ``X-CSRF-Token``), an ``Origin`` (or ``Referer``) naming this very
   host, and no ``Sec-Fetch-Site: cross-site``. A Bearer request needs neither: a browser never adds
   that header on its own, so a cross-site page cannot forge one. Bodies over 256 KiB get ``413``.
4. **Headers** on every response: a strict Content-Security-Policy (scripts and styles from files of this
   origin only, no inline code, no framing), ``nosniff``, ``Referrer-Policy: same-origin``, ``no-store``.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import ipaddress
import json
import secrets
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

__all__ = [
    "AccessPolicy",
    "CSP",
    "MAX_BODY",
    "SecurityMiddleware",
    "loopback_hosts",
    "new_token",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 256 * 1024
"""The largest request body accepted (forms and JSON are a few hundred bytes)."""

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
"""The Content-Security-Policy of every response: nothing inline, nothing from elsewhere, no framing."""

_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    # Not "no-referrer": with it, browsers send "Origin: null" on form posts, and the origin check needs
    # the real one. Same-origin only, and the token never stays in a URL anyway.
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
)
_SAFE_METHODS = frozenset({"GET", "HEAD"})


def new_token() -> str:
    """A fresh random access token (32 bytes, URL-safe).

    >>> len(new_token()) >= 40
    True
    """
    return secrets.token_urlsafe(32)


def loopback_hosts(port: int, bound: str | None = None) -> frozenset[str]:
    """The Host header values a loopback dashboard on ``port`` answers to.

    ``bound`` is the loopback address it listens on: any of 127.0.0.0/8 may be chosen, and the URL printed
    for it names it, so it is accepted too (a loopback literal cannot be a DNS-rebinding name).

    >>> sorted(loopback_hosts(8080))
    ['127.0.0.1:8080', '[::1]:8080', 'localhost:8080']
    >>> sorted(loopback_hosts(8080, "127.0.0.2"))
    ['127.0.0.1:8080', '127.0.0.2:8080', '[::1]:8080', 'localhost:8080']
    """
    hosts = {f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"}
    if bound is not None and bound.lower() != "localhost":
        address = ipaddress.ip_address(bound.strip("[]"))
        if address.is_loopback:
            # The canonical spelling, as a browser sends it (IPv6 in brackets, compressed and lower case).
            text = f"[{address.compressed}]" if address.version == 6 else address.compressed
            hosts.add(f"{text}:{port}")
    return frozenset(hosts)


@dataclass(frozen=True)
class AccessPolicy:
    """The secrets and rules of one dashboard run.

    ``hosts`` lists the accepted Host headers (None: any, for ``--allow-remote``).

    >>> policy = AccessPolicy("tok", port=8080)
    >>> policy.check_token("tok"), policy.check_token("nope"), policy.csrf == AccessPolicy("tok", port=8080).csrf
    (True, False, False)
    """

    token: str
    port: int
    hosts: frozenset[str] | None = None
    csrf_key: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    @property
    def cookie_name(self) -> str:
        """The session cookie's name, per port (cookies are shared by every port of a host)."""
        return f"bounceback_{self.port}"

    @property
    def csrf(self) -> str:
        """The CSRF token pages embed and changes must send back (derived; it does not reveal the token)."""
        return hmac.new(self.csrf_key, self.token.encode(), hashlib.sha256).hexdigest()

    def check_token(self, candidate: str | None) -> bool:
        """True if ``candidate`` is the access token (compared in constant time)."""
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.token.encode())

    def check_csrf(self, candidate: str | None) -> bool:
        """True if ``candidate`` is this run's CSRF token."""
        return candidate is not None and hmac.compare_digest(candidate.encode(), self.csrf.encode())

    def url(self, host: str, path: str = "/") -> str:
        """The ready-to-click URL with the token: ``http://127.0.0.1:PORT/?token=...``."""
        shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return f"http://{shown}:{self.port}{path}?{urlencode({'token': self.token})}"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if not raw:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(raw)
    except Exception:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None else None


async def _respond(
    send: Send, status: int, text: str, *, extra: Iterable[tuple[bytes, bytes]] = (), json_body: bool = False
) -> None:
    if json_body:
        body = json.dumps({"error": text, "status": status}).encode()
        kind = b"application/json"
    else:
        body = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>bounceback</title>"
            f"<h1>{status}</h1><p>{html.escape(text)}</p></html>"
        ).encode()
        kind = b"text/html; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode()), *_HEADERS, *extra]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class SecurityMiddleware:
    """ASGI middleware enforcing an :class:`AccessPolicy` on every HTTP request (see the module docstring)."""

    def __init__(self, app: ASGIApp, policy: AccessPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        policy = self.policy
        path = str(scope.get("path", ""))
        wants_json = path.startswith("/api/")
        host = (_header(scope, b"host") or "").lower()
        if policy.hosts is not None and host not in policy.hosts:
            await _respond(
                send, 421, "This dashboard answers only on its loopback address.", json_body=wants_json
            )
            return
        method = str(scope.get("method", "GET")).upper()
        if method not in _SAFE_METHODS and method != "POST":
            await _respond(send, 405, "Only GET and POST are served.", extra=[(b"allow", b"GET, HEAD, POST")])
            return
        query = [(k, v) for k, v in parse_qsl(bytes(scope.get("query_string", b"")).decode("latin-1"))]
        from_query = next((v for k, v in query if k == "token"), None)
        bearer = _header(scope, b"authorization")
        via_bearer = bearer is not None and bearer[:7].lower() == "bearer "
        cookie = _cookie(scope, policy.cookie_name)
        candidate = bearer[7:].strip() if via_bearer and bearer else from_query or cookie
        if candidate is None:
            await _respond(
                send,
                401,
                "An access token is needed: open the link that `bounceback dashboard` printed when it started.",
                json_body=wants_json,
            )
            return
        if not policy.check_token(candidate):
            await _respond(send, 403, "The access token is wrong or out of date.", json_body=wants_json)
            return
        if from_query is not None and method in _SAFE_METHODS:
            # Trade the token in the URL for a cookie, and drop it from the address bar.
            rest = urlencode([(k, v) for k, v in query if k != "token"])
            location = path + (f"?{rest}" if rest else "")
            cookie_header = (
                f"{policy.cookie_name}={policy.token}; Path=/; HttpOnly; SameSite=Strict; Max-Age=604800"
            )
            await _respond(
                send,
                303,
                "Signed in; continue.",
                extra=[(b"location", location.encode()), (b"set-cookie", cookie_header.encode())],
            )
            return
        if method == "POST":
            replay = await self._check_change(scope, receive, send, via_bearer, host, wants_json)
            if replay is None:
                return
            receive = replay
        await self.app(scope, receive, self._with_headers(send))

    async def _check_change(
        self, scope: Scope, receive: Receive, send: Send, via_bearer: bool, host: str, wants_json: bool
    ) -> Receive | None:
        """Read the body (bounded) and check CSRF and origin; return a receive that replays the body."""
        length = _header(scope, b"content-length")
        if length is not None and (not length.isdigit() or int(length) > MAX_BODY):
            await _respond(send, 413, "The request body is too large.", json_body=wants_json)
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = bytes(message.get("body", b""))
            size += len(chunk)
            if size > MAX_BODY:
                await _respond(send, 413, "The request body is too large.", json_body=wants_json)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not via_bearer:
            problem = self._cross_site_problem(scope, host) or self._csrf_problem(scope, body)
            if problem:
                await _respond(send, 403, problem, json_body=wants_json)
                return None
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay

    @staticmethod
    def _cross_site_problem(scope: Scope, host: str) -> str:
        if (_header(scope, b"sec-fetch-site") or "").lower() == "cross-site":
            return "Refused: the request came from another site."
        origin = _header(scope, b"origin")
        if origin is None:
            referer = _header(scope, b"referer")
            if referer is None:
                return "Refused: a change must come from a dashboard page (no Origin or Referer header)."
            parts = urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
        if origin.lower() != f"http://{host}":
            return "Refused: the request came from another origin."
        return ""

    def _csrf_problem(self, scope: Scope, body: bytes) -> str:
        candidate = _header(scope, b"x-csrf-token")
        kind = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
        if candidate is None and kind == "application/x-www-form-urlencoded":
            try:
                fields = parse_qsl(body.decode("utf-8"), keep_blank_values=True)
            except UnicodeDecodeError:
                fields = []
            candidate = next((v for k, v in fields if k == "csrf"), None)
        if not self.policy.check_csrf(candidate):
            return "Refused: the CSRF token is missing or wrong; reload the page and try again."
        return ""

    @staticmethod
    def _with_headers(send: Send) -> Send:
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {bytes(k).lower() for k, _ in message.get("headers", ())}
                message["headers"] = [
                    *message.get("headers", ()),
                    *((k, v) for k, v in _HEADERS if k not in present),
                ]
            await send(message)

        return wrapped
