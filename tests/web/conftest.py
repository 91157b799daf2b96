"""A real dashboard server on 127.0.0.1 (uvicorn in a thread) over the test's home database."""

from __future__ import annotations

import http.client
import json
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from bounceback.web import DashboardServer

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> Any:
        return json.loads(self.body)


class Client:
    """Raw HTTP to one server, with full control of every header."""

    def __init__(self, server: DashboardServer) -> None:
        self.server = server
        self.host = f"127.0.0.1:{server.port}"
        self.token = server.policy.token
        self.csrf = server.policy.csrf
        self.cookie = f"{server.policy.cookie_name}={self.token}"
        self.origin = f"http://{self.host}"

    def request(
        self, method: str, path: str, body: bytes | str | None = None, headers: dict[str, str] | None = None
    ) -> Reply:
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=10)
        try:
            sent = {"Host": self.host, **(headers or {})}
            data = body.encode() if isinstance(body, str) else body
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()

    def get(self, path: str, **headers: str) -> Reply:
        return self.request("GET", path, headers={"Cookie": self.cookie, **headers})

    def post_form(self, path: str, fields: dict[str, str], *, headers: dict[str, str] | None = None) -> Reply:
        """A POST as the dashboard's own page makes it: cookie, same Origin, CSRF field."""
        sent = {
            "Cookie": self.cookie,
            "Origin": self.origin,
            "Content-Type": "application/x-www-form-urlencoded",
            **(headers or {}),
        }
        return self.request("POST", path, urlencode(fields), sent)

    def post_json(self, path: str, data: Any, *, headers: dict[str, str] | None = None) -> Reply:
        """A POST as a script makes it: Bearer token, JSON body."""
        sent = {
            "Authorization": f"Bearer {self.token}",
            "Content-Type": "application/json",
            **(headers or {}),
        }
        return self.request("POST", path, json.dumps(data), sent)


@pytest.fixture
def database(home: Path) -> Path:
    return home / "bounceback.db"


@pytest.fixture
def server(database: Path) -> Iterator[DashboardServer]:
    with DashboardServer(database, hooks=False) as running:
        yield running


@pytest.fixture
def client(server: DashboardServer) -> Client:
    return Client(server)


def run_scenario(*args: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Run ``tests.web.scenarios`` in another process to completion; its JSON lines."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.web.scenarios", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]


class Scenario:
    """``tests.web.scenarios`` running in another process; its JSON lines arrive on a queue."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.web.scenarios", *args],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.strip():
                self.lines.put(json.loads(line))
        self.lines.put(None)

    def next(self, timeout: float = 15.0) -> dict[str, Any]:
        """The next JSON line (bounded wait)."""
        try:
            item = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output from {self.proc.args} within {timeout} s") from None
        if item is None:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"{self.proc.args} ended without more output: {err}")
        return item

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
