"""Run the dashboard under uvicorn: bind checks, the access token, and a server that can run in a thread.

>>> check_bind("127.0.0.1", allow_remote=False)
>>> check_bind("0.0.0.0", allow_remote=False)
Traceback (most recent call last):
...
bounceback.errors.ConfigError: host: got '0.0.0.0'; expected a loopback address such as 127.0.0.1 ...
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
import time
from pathlib import Path
from typing import Any

import uvicorn

from bounceback.errors import ConfigError
from bounceback.web._app import create_app
from bounceback.web._security import AccessPolicy, loopback_hosts, new_token

__all__ = ["DashboardServer", "check_bind", "is_loopback"]


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1).

    >>> is_loopback("127.0.0.1"), is_loopback("::1"), is_loopback("localhost"), is_loopback("10.0.0.5")
    (True, True, True, False)
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, allow_remote: bool) -> None:
    """Refuse a non-loopback ``host`` unless ``allow_remote`` (the ``--allow-remote`` flag) is given."""
    if not is_loopback(host) and not allow_remote:
        raise ConfigError(
            "host",
            host,
            "a loopback address such as 127.0.0.1",
            hint="the dashboard can change breakers and settings; to serve other machines anyway, add "
            "--allow-remote (the access token is still required; put TLS in front of it)",
        )


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]") if host != "localhost" else "127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise ConfigError(
            "port", port, "a free port", hint=f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class DashboardServer:
    """One dashboard server: binds at construction (so the URL and port are known), serves on
    :meth:`run` (blocking) or :meth:`start` (a background thread, for tests and embedding).

    ``port`` 0 picks a free port. ``token`` defaults to a fresh random one.
    """

    def __init__(
        self,
        database: str | Path,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_remote: bool = False,
        token: str | None = None,
        hooks: bool = True,
        poll: float = 0.05,
        refresh: float = 2.0,
    ) -> None:
        check_bind(host, allow_remote=allow_remote)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigError("port", port, "a port number from 0 (any free port) to 65535")
        self.host = host
        self.database = Path(database)
        self._socket = _bind(host, port)
        self.port = int(self._socket.getsockname()[1])
        hosts = loopback_hosts(self.port, host) if is_loopback(host) else None
        self.policy = AccessPolicy(token or new_token(), self.port, hosts)
        self._server: uvicorn.Server | None = None
        app = create_app(
            self.database, self.policy, poll=poll, refresh=refresh, hooks=hooks, stopping=self._stopping
        )
        self.app = app
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="on",
            timeout_graceful_shutdown=2,
            ws="none",
            server_header=False,
        )
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    def _stopping(self) -> bool:
        return bool(self._server is not None and self._server.should_exit)

    @property
    def _shown_host(self) -> str:
        # The address as a browser will send it back in the Host header (canonical, IPv6 unbracketed here).
        if self.host in ("0.0.0.0", "localhost"):
            return "127.0.0.1"
        try:
            return ipaddress.ip_address(self.host.strip("[]")).compressed
        except ValueError:
            return self.host  # a name, with --allow-remote

    @property
    def url(self) -> str:
        """The ready-to-click URL with the access token."""
        return self.policy.url(self._shown_host)

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT`` without the token."""
        shown = self._shown_host
        shown = f"[{shown}]" if ":" in shown else shown
        return f"http://{shown}:{self.port}"

    def run(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Serve until interrupted (Ctrl-C) or :meth:`stop`, on ``loop`` (closed at the end) or a new one.

        A command line makes its loop before it prints the URL: a Ctrl-C pressed on seeing the URL must not
        land inside the loop's constructor, which leaves a half-made loop that fails noisily when freed.
        """
        assert self._server is not None
        loop = loop or asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._server.serve(sockets=[self._socket]))
        finally:
            loop.close()

    def start(self, timeout: float = 10.0) -> DashboardServer:
        """Serve from a daemon thread; returns once the server accepts requests."""
        assert self._server is not None
        self._thread = threading.Thread(target=self.run, name="bounceback-dashboard", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the dashboard did not start on {self.base_url}")
            time.sleep(0.01)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Ask the server to stop and wait for it (event streams end within about a second)."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._socket.close()

    def __enter__(self) -> DashboardServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
