"""A small fault-injecting TCP proxy for tests: put it between a client and a real server on 127.0.0.1.

The proxy runs an asyncio loop in its own daemon thread and forwards bytes both ways. Its *fault* decides
what happens to new connections and to the bytes of open ones, and can be changed at any time from the
test's thread (:meth:`FaultProxy.set`) or on a schedule (:meth:`FaultProxy.plan`)::

    with FaultProxy(("127.0.0.1", server_port)) as proxy:
        proxy.set(Fault.reset())                       # every connection is reset at once
        proxy.plan(Fault.refuse(), Fault.passing(), after_connections=3)   # ... or on a schedule
        client_url = f"http://127.0.0.1:{proxy.port}/"

Faults (see :class:`Fault`): ``passing`` (forward untouched), ``refuse`` (the port stops listening: clients
get ECONNREFUSED, open connections are reset), ``reset`` (accept, then reset with a TCP RST), ``stall``
(accept and hold every byte until the fault changes; the held bytes are delivered then, as a congested
network does), ``latency`` (each chunk delayed), ``bandwidth`` (bytes per second per direction, chunks
sliced), and ``cut`` (the answer is cut after ``after_bytes`` bytes and the connection reset).

A schedule moves from one fault to the next after a number of accepted connections or after real seconds
(the common case: a fault for a while, then ``passing``). A connection keeps the fault it met when it was
accepted, except that :meth:`FaultProxy.set` and a timed step reach open connections too (so a stall that
ends delivers what it held). :attr:`FaultProxy.stats` counts
connections accepted, refused, reset, cut and bytes in each direction.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Fault", "FaultProxy", "ProxyStats"]

_CHUNK = 16384
_LINGER_RST = struct.pack("ii", 1, 0)  # SO_LINGER on, 0 s: close() sends RST instead of FIN


@dataclass(frozen=True)
class Fault:
    """One kind of trouble. Build them with the class methods (``Fault.stall()``, ``Fault.cut(100)``)."""

    kind: str
    seconds: float = 0.0
    rate: float = 0.0
    after_bytes: int = 0

    @classmethod
    def passing(cls) -> Fault:
        """Forward everything untouched (no fault)."""
        return cls("pass")

    @classmethod
    def refuse(cls) -> Fault:
        """Stop listening: connects fail with ECONNREFUSED; open connections are reset."""
        return cls("refuse")

    @classmethod
    def reset(cls) -> Fault:
        """Accept, then reset (RST); open connections are reset on their next chunk."""
        return cls("reset")

    @classmethod
    def stall(cls) -> Fault:
        """Accept and hold every byte (both ways) until the fault changes."""
        return cls("stall")

    @classmethod
    def latency(cls, seconds: float) -> Fault:
        """Delay each chunk, both ways, by ``seconds``."""
        return cls("latency", seconds=seconds)

    @classmethod
    def bandwidth(cls, bytes_per_second: float) -> Fault:
        """Limit each direction of each connection to ``bytes_per_second``."""
        return cls("bandwidth", rate=bytes_per_second)

    @classmethod
    def cut(cls, after_bytes: int) -> Fault:
        """Forward the first ``after_bytes`` bytes of the answer, then reset the connection."""
        return cls("cut", after_bytes=after_bytes)


@dataclass
class ProxyStats:
    """What the proxy saw (read it from the test; the numbers only grow)."""

    accepted: int = 0
    refused_windows: int = 0
    reset: int = 0
    cut: int = 0
    stalled: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    faults: list[str] = field(default_factory=list)


class _Conn:
    """One client connection and its upstream twin."""

    def __init__(self, client: asyncio.StreamWriter, fault: Fault) -> None:
        self.client = client
        self.fault = fault
        self.upstream: asyncio.StreamWriter | None = None
        self.down_bytes = 0
        self.closed = False

    def abort(self) -> None:
        """Reset both sides (RST), at once."""
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            if writer is None:
                continue
            sock = writer.get_extra_info("socket")
            with contextlib.suppress(OSError):
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            writer.transport.abort()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.close()


class FaultProxy:
    """A TCP proxy from ``127.0.0.1:<port>`` to ``upstream`` that injects :class:`Fault`\\ s.

    ``port`` 0 picks a free port (kept across ``refuse`` windows, so clients can reconnect).
    """

    def __init__(self, upstream: tuple[str, int], *, port: int = 0, fault: Fault | None = None) -> None:
        self.upstream = upstream
        self.stats = ProxyStats()
        self._fault = fault or Fault.passing()
        self._changed: asyncio.Event | None = None
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.AbstractServer | None = None
        self._conns: set[_Conn] = set()
        self._plan: list[Fault] = []
        self._plan_timer: asyncio.TimerHandle | None = None
        self._plan_base = 0
        self._plan_connections: int | None = None
        self._plan_seconds: float | None = None
        self._step_connections: int | None = None
        self._lock = threading.Lock()

    # -- lifecycle (test thread) ----------------------------------------------------------------------

    def start(self) -> FaultProxy:
        """Start the loop thread and listen; returns once the port is open."""
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                loop.run_until_complete(self._begin())
            except BaseException as exc:  # handed to start()
                failure.append(exc)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._end())
            loop.close()

        self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("the fault proxy did not start within 10 s")
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Close every connection and the listener, and end the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The port clients connect to."""
        return self._port

    @property
    def address(self) -> tuple[str, int]:
        """``("127.0.0.1", port)``."""
        return ("127.0.0.1", self._port)

    @property
    def fault(self) -> Fault:
        """The fault in force now."""
        return self._fault

    def set(self, fault: Fault) -> None:
        """Change the fault now (and drop any schedule); returns once it is in force."""
        self._call(self._set(fault, drop_plan=True))

    def plan(
        self, *faults: Fault, after_connections: int | None = None, after_seconds: float | None = None
    ) -> None:
        """Apply ``faults[0]`` now, then move to the next one after every ``after_connections`` accepted
        connections (or ``after_seconds`` real seconds). The last fault stays.

        A ``refuse`` step accepts nothing, so it can only end after seconds.
        """
        if not faults:
            raise ValueError("plan: give at least one fault")
        if (after_connections is None) == (after_seconds is None):
            raise ValueError("plan: give exactly one of after_connections and after_seconds")
        if after_connections is not None and any(f.kind == "refuse" for f in faults[:-1]):
            raise ValueError("plan: a refuse step accepts no connection; end it with after_seconds")
        self._call(self._start_plan(list(faults), after_connections, after_seconds))

    def reset_open(self) -> int:
        """Reset every open connection now; returns how many."""
        return int(self._call(self._reset_open()))

    def wait_for(self, predicate: Any, timeout: float = 5.0) -> bool:
        """Poll ``predicate(stats)`` (bounded, for a real network) until true; False on timeout."""
        deadline = _now() + timeout
        while not predicate(self.stats):
            if _now() > deadline:
                return False
            threading.Event().wait(0.005)
        return True

    def _call(self, coro: Any) -> Any:
        loop = self._loop
        if loop is None:
            raise RuntimeError("the fault proxy is not running")
        return asyncio.run_coroutine_threadsafe(coro, loop).result(10)

    # -- the loop ---------------------------------------------------------------------------------------

    async def _begin(self) -> None:
        self._changed = asyncio.Event()
        await self._listen()
        self.stats.faults.append(self._fault.kind)

    async def _end(self) -> None:
        for conn in list(self._conns):
            conn.abort()
        if self._server is not None:
            self._server.close()
        # Connection handlers still waiting (a stall, a pump) end here, not as "destroyed pending" tasks.
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _listen(self) -> None:
        server = await asyncio.start_server(self._accept, "127.0.0.1", self._port, reuse_address=True)
        self._server = server
        self._port = server.sockets[0].getsockname()[1]

    async def _set(self, fault: Fault, drop_plan: bool = False) -> None:
        if drop_plan:
            self._drop_plan()
        self._apply(fault, everyone=True)
        if fault.kind != "refuse" and self._server is None:
            await self._listen()

    def _apply(self, fault: Fault, *, everyone: bool) -> None:
        """Put ``fault`` in force (synchronously, so no connection slips in between).

        ``everyone``: open connections take it too (a set, or a timed step: a stall that ends releases
        what it held); otherwise only new connections do (a step counted in connections).
        """
        before = self._fault
        self._fault = fault
        if everyone:
            for conn in self._conns:
                conn.fault = fault
        self.stats.faults.append(fault.kind)
        if fault.kind == "refuse" and self._server is not None:
            self._server.close()
            self._server = None
            self.stats.refused_windows += 1
            self._reset_all()
        if fault.kind == "reset" and before.kind != "reset" and everyone:
            self._reset_all()
        assert self._changed is not None
        # Wake every pump waiting on a stall; a fresh event for the next wait.
        self._changed.set()
        self._changed = asyncio.Event()

    def _drop_plan(self) -> None:
        self._plan = []
        self._step_connections = None
        if self._plan_timer is not None:
            self._plan_timer.cancel()
            self._plan_timer = None

    async def _start_plan(self, faults: list[Fault], connections: int | None, seconds: float | None) -> None:
        self._drop_plan()
        first, *rest = faults
        await self._set(first)
        self._plan = rest
        self._plan_connections = connections
        self._plan_seconds = seconds
        self._arm()

    def _arm(self) -> None:
        """Start counting (or timing) the step now in force, if another step follows."""
        self._plan_base = self.stats.accepted
        self._step_connections = self._plan_connections if self._plan else None
        if self._plan and self._plan_seconds is not None:
            assert self._loop is not None
            self._plan_timer = self._loop.call_later(self._plan_seconds, self._advance)

    def _advance(self) -> None:
        """Move to the next step of the plan."""
        self._plan_timer = None
        if not self._plan:
            return
        fault = self._plan.pop(0)
        self._apply(fault, everyone=self._plan_seconds is not None)
        self._arm()
        if fault.kind != "refuse" and self._server is None:
            assert self._loop is not None
            self._loop.create_task(self._listen())

    async def _reset_open(self) -> int:
        return self._reset_all()

    def _reset_all(self) -> int:
        conns = [c for c in self._conns if not c.closed]
        for conn in conns:
            conn.abort()
            self.stats.reset += 1
        return len(conns)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.stats.accepted += 1
        fault = self._fault
        conn = _Conn(writer, fault)
        self._conns.add(conn)
        # A connection-count schedule moves on once enough connections have met the current fault.
        if (
            self._step_connections is not None
            and self.stats.accepted - self._plan_base >= self._step_connections
        ):
            self._advance()
        try:
            if fault.kind in ("reset", "refuse"):
                self.stats.reset += 1
                conn.abort()
                return
            if fault.kind == "stall":
                self.stats.stalled += 1
                while conn.fault.kind == "stall" and not conn.closed:
                    await self._wait_change()
                if conn.fault.kind in ("reset", "refuse") or conn.closed:
                    conn.abort()
                    return
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                conn.abort()
                return
            conn.upstream = up_writer
            await asyncio.gather(
                self._pump(reader, up_writer, conn, up=True),
                self._pump(up_reader, writer, conn, up=False),
            )
        finally:
            self._conns.discard(conn)
            conn.close()

    async def _wait_change(self) -> None:
        assert self._changed is not None
        await self._changed.wait()

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: _Conn, *, up: bool
    ) -> None:
        try:
            while not conn.closed:
                data = await reader.read(_CHUNK)
                if not data:
                    with contextlib.suppress(OSError, RuntimeError):
                        if writer.can_write_eof():
                            writer.write_eof()
                    return
                while conn.fault.kind == "stall" and not conn.closed:
                    await self._wait_change()
                fault = conn.fault
                if fault.kind in ("reset", "refuse"):
                    self.stats.reset += 1
                    conn.abort()
                    return
                if fault.kind == "latency":
                    await asyncio.sleep(fault.seconds)
                if not up and fault.kind == "cut":
                    room = fault.after_bytes - conn.down_bytes
                    if room < len(data):
                        if room > 0:
                            writer.write(data[:room])
                            conn.down_bytes += room
                            self.stats.bytes_down += room
                            await writer.drain()
                        self.stats.cut += 1
                        conn.abort()
                        return
                if fault.kind == "bandwidth" and fault.rate > 0:
                    await self._trickle(writer, data, fault.rate, conn, up)
                else:
                    writer.write(data)
                    await writer.drain()
                    self._count(conn, len(data), up)
        except (ConnectionError, OSError, asyncio.IncompleteReadError):
            conn.abort()

    async def _trickle(
        self, writer: asyncio.StreamWriter, data: bytes, rate: float, conn: _Conn, up: bool
    ) -> None:
        # Slices of about 10 ms worth of bytes, so the cap holds even for one large chunk.
        slice_size = max(1, int(rate / 100))
        for start in range(0, len(data), slice_size):
            if conn.closed:
                return
            piece = data[start : start + slice_size]
            writer.write(piece)
            await writer.drain()
            self._count(conn, len(piece), up)
            await asyncio.sleep(len(piece) / rate)

    def _count(self, conn: _Conn, n: int, up: bool) -> None:
        if up:
            self.stats.bytes_up += n
        else:
            conn.down_bytes += n
            self.stats.bytes_down += n


def _now() -> float:
    import time

    return time.monotonic()


@contextlib.contextmanager
def proxied(port: int, fault: Fault | None = None) -> Iterator[FaultProxy]:
    """A :class:`FaultProxy` in front of ``127.0.0.1:port`` for the block."""
    with FaultProxy(("127.0.0.1", port), fault=fault) as proxy:
        yield proxy
