"""A fleet of flaky plant devices behind one real HTTP server on 127.0.0.1.

Each device answers ``GET /devices/<name>/config`` with its configuration as JSON, after its own kind of
trouble. The faults are real network behaviour, not flags: slow answers, 500s, 429 with ``Retry-After``,
an outage window (503, then connections cut) that ends on schedule, connections reset mid-response, and a
device whose credentials were revoked (401). One device lives on a port where nothing listens.

Time is scaled by ``speed`` (the demo's ``--fast`` uses a larger one) so the whole story fits in seconds.
"""

from __future__ import annotations

import json
import math
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["DEVICES", "Device", "Fleet", "free_port"]


@dataclass(frozen=True, slots=True)
class Device:
    """One device: its ``name``, what it is, and how it misbehaves (``fault``)."""

    name: str
    kind: str
    fault: str
    """healthy, slow, flapping, throttling, outage, cut, refusing or auth."""
    story: str


DEVICES: tuple[Device, ...] = (
    Device("press-01", "hydraulic press", "healthy", "answers at once"),
    Device("oven-02", "curing oven", "slow", "answers, but takes its time"),
    Device("mixer-03", "batch mixer", "flapping", "fails the first two tries with HTTP 500, then answers"),
    Device(
        "conveyor-04", "conveyor PLC", "throttling", "answers 429 with Retry-After until the wait has passed"
    ),
    Device("boiler-05", "steam boiler", "outage", "down for a while (503, then cut connections), then back"),
    Device("pump-08", "coolant pump", "cut", "drops the connection mid-answer once, then answers"),
    Device("valve-06", "valve controller", "refusing", "refuses every connection: it is switched off"),
    Device("sensor-07", "vibration sensor", "auth", "rejects our credentials (HTTP 401)"),
)
"""The demo fleet, in display order."""


def free_port() -> int:
    """A port on 127.0.0.1 where nothing listens right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class _State:
    calls: int = 0
    first_call: float | None = None
    throttled_until: float | None = None
    log: list[tuple[float, int]] = field(default_factory=list)


class Fleet:
    """The device server. ``with Fleet(speed=10) as fleet: fleet.url("press-01")``.

    ``outage_seconds`` is how long boiler-05 stays down after its first call (divided by ``speed``), and
    ``retry_after`` the seconds conveyor-04 asks for.
    """

    def __init__(
        self,
        *,
        speed: float = 1.0,
        outage_seconds: float = 6.0,
        retry_after: int = 2,
        slow_seconds: float = 1.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed <= 0:
            raise ValueError(
                f"speed: got {speed!r}; expected a number > 0 (1 is real time, 10 is ten times faster)"
            )
        self.speed = speed
        self.outage_seconds = outage_seconds / speed
        self.retry_after = retry_after
        self.slow_seconds = slow_seconds / speed
        self.clock = clock
        self.devices = {d.name: d for d in DEVICES}
        self._states = {d.name: _State() for d in DEVICES}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.refusing_port = free_port()

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> Fleet:
        """Start serving on a free port of 127.0.0.1."""
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="demo-fleet", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port."""
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The server's port."""
        assert self._server is not None, "the fleet is not started"
        return int(self._server.server_address[1])

    def url(self, name: str) -> str:
        """The configuration URL of device ``name``."""
        device = self.devices[name]
        port = self.refusing_port if device.fault == "refusing" else self.port
        return f"http://127.0.0.1:{port}/devices/{name}/config"

    def calls(self, name: str) -> int:
        """How many requests device ``name`` has received."""
        return self._states[name].calls

    # -- behaviour -----------------------------------------------------------------------------------

    def reply(self, name: str) -> tuple[str, int, dict[str, str], bytes]:
        """Decide the answer to one request: (action, status, headers, body); action is send, cut or reset."""
        device = self.devices.get(name)
        if device is None:
            return "send", 404, {}, _json({"error": f"no device named {name!r}"})
        now = self.clock()
        with self._lock:
            state = self._states[name]
            state.calls += 1
            if state.first_call is None:
                state.first_call = now
            n = state.calls
            since_first = now - state.first_call
        config = _json(
            {"device": name, "kind": device.kind, "sample_rate_hz": 10 + n % 5, "firmware": "4.2.1"}
        )
        fault = device.fault
        if fault == "slow":
            self._stop.wait(self.slow_seconds)
        elif fault == "flapping" and n <= 2:
            return "send", 500, {}, _json({"error": "controller busy, internal error"})
        elif fault == "throttling":
            with self._lock:
                if state.throttled_until is None:
                    state.throttled_until = now + self.retry_after / self.speed
                waiting = state.throttled_until - now
            if waiting > 0:
                # Retry-After speaks whole seconds of real time.
                seconds = max(1, math.ceil(waiting))
                return "send", 429, {"Retry-After": str(seconds)}, _json({"error": "too many requests"})
        elif fault == "outage" and since_first < self.outage_seconds:
            # The first part of the outage answers 503; after that the device drops connections.
            if since_first < self.outage_seconds / 3:
                return "send", 503, {}, _json({"error": "service unavailable: restarting"})
            return "reset", 0, {}, b""
        elif fault == "cut" and n == 1:
            return "cut", 200, {}, config
        elif fault == "auth":
            return (
                "send",
                401,
                {"WWW-Authenticate": 'Basic realm="sensor"'},
                _json({"error": "invalid credentials for user 'plant-reader'"}),
            )
        return "send", 200, {"Content-Type": "application/json"}, config


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


def _handler(fleet: Fleet) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            parts = self.path.strip("/").split("/")
            name = parts[1] if len(parts) == 3 and parts[0] == "devices" and parts[2] == "config" else ""
            action, status, headers, body = fleet.reply(name)
            if action == "reset":
                # SO_LINGER with a zero timeout: close() sends RST, as a crashing device does.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if action == "cut":
                # Promise the whole body, send half, and hang up.
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: ARG002 - silence the access log
            return

    return Handler
