"""The live progress display: plain lines off a terminal, live lines on one, safe error text, timing."""

from __future__ import annotations

import io
import os
import re
import select
import threading
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from rich.console import Console

from bounceback import Backoff, Classification, ErrorKind, Policy
from bounceback.console import ProgressDisplay, one_line, show_progress
from bounceback.core.settings._source import StaticSettings
from bounceback.events import AttemptFailed, BreakerOpened, EventBus, RecoveryExhausted, RetryScheduled
from bounceback.testing import FakeClock

NO_JITTER = Backoff(initial=1, max_delay=100, jitter="none")
TRANSIENT = Classification(ErrorKind.TRANSIENT, "refused")
ANSI = re.compile(r"\x1b\[")


class Flaky:
    def __init__(self, failures: int, message: str = "Connection refused") -> None:
        self.failures = failures
        self.message = message
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionRefusedError(111, self.message)
        return "ok"


def test_plain_mode_writes_one_ansi_free_line_per_event() -> None:
    bus, clock, out = EventBus(), FakeClock(), io.StringIO()
    with ProgressDisplay(bus=bus, console=Console(file=out), clock=clock) as display:
        assert display.mode == "plain"  # a StringIO is not a terminal
        Policy("fetch", attempts=5, deadline=30, backoff=NO_JITTER, bus=bus, clock=clock).call(Flaky(2))
    lines = out.getvalue().splitlines()
    assert not ANSI.search(out.getvalue())
    assert lines == [
        "bounceback: fetch: attempt 1 of 5 failed: ConnectionRefusedError: [Errno 111] Connection refused (transient)",
        lines[1],
        "bounceback: fetch: attempt 2 of 5 failed: ConnectionRefusedError: [Errno 111] Connection refused (transient)",
        lines[3],
        "bounceback: fetch: recovered after 3 attempts in 3.0 s",
    ]
    assert re.fullmatch(
        r"bounceback: fetch: retrying in 1\.0 s \(attempt 2 of 5 at \d\d:\d\d:\d\d; 0\.0 s of 30\.0 s deadline used\)",
        lines[1],
    )
    assert "retrying in 2.0 s (attempt 3 of 5" in lines[3] and "1.0 s of 30.0 s deadline used" in lines[3]


def test_plain_mode_says_why_it_gave_up_and_shows_breaker_changes() -> None:
    bus, clock, out = EventBus(), FakeClock(), io.StringIO()
    with ProgressDisplay(bus=bus, console=Console(file=out), clock=clock, mode="plain"):
        bus.emit(BreakerOpened("db", clock.wall(), "closed", "open", "failure rate 60%", clock.wall() + 30))
        with pytest.raises(ConnectionRefusedError):
            Policy("db", attempts=2, backoff=NO_JITTER, bus=bus, clock=clock).call(Flaky(9))
    lines = out.getvalue().splitlines()
    assert re.fullmatch(
        r"bounceback: breaker db: closed -> open until \d\d:\d\d:\d\d \(failure rate 60%\)", lines[0]
    )
    assert lines[-1] == (
        "bounceback: db: gave up after 2 attempts in 1.0 s (no attempts left): "
        "ConnectionRefusedError: [Errno 111] Connection refused"
    )


def test_error_text_is_never_markup_nor_terminal_control() -> None:
    evil = "[bold red]pwned[/]\x1b[2J\x1b]0;title\x07\nsecond line"
    bus, clock = EventBus(), FakeClock()
    plain, rich_out = io.StringIO(), io.StringIO()
    rich_console = Console(file=rich_out, force_terminal=True, width=300, color_system="standard")
    with ProgressDisplay(bus=bus, console=Console(file=plain), clock=clock, mode="plain"):
        with pytest.raises(ConnectionRefusedError):
            Policy("x", attempts=2, backoff=NO_JITTER, bus=bus, clock=clock).call(Flaky(9, evil))
    display = ProgressDisplay(bus=bus, console=rich_console, clock=clock, mode="rich")
    display(AttemptFailed("x", clock.wall(), "r1", 1, 3, 0.0, "OSError", evil, TRANSIENT, True))
    [line] = display.lines()
    text = plain.getvalue()
    assert "[bold red]pwned[/]\\x1b[2J\\x1b]0;title\\x07 second line" in text
    assert "\x1b" not in text and "\x07" not in text
    assert "[bold red]pwned[/]" in line.plain and "\x1b" not in line.plain
    rich_console.print(line)
    printed = rich_out.getvalue()
    # rich drew its own styles, but the error's escape sequences arrive as visible text only.
    assert "\x1b[2J" not in printed and "\x1b]0;" not in printed and "[bold red]pwned[/]" in printed


@given(st.text())
def test_one_line_is_one_printable_line(text: str) -> None:
    line = one_line(text, limit=80)
    assert "\n" not in line and "\r" not in line and len(line) <= 80
    assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in line)


def test_live_lines_show_attempts_countdown_deadline_breaker_and_error() -> None:
    bus, clock = EventBus(), FakeClock()
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    display = ProgressDisplay(bus=bus, console=console, clock=clock, mode="rich")
    start = clock.wall()
    display(
        AttemptFailed(
            "fetch", start + 1, "r1", 2, 5, 1.0, "TimeoutError", "no answer", TRANSIENT, True, "closed"
        )
    )
    display(RetryScheduled("fetch", start + 1, "r1", 3, 5, 4.0, start + 5, start + 30, start, "backoff"))
    clock.advance(2.5)
    [line] = display.lines()
    assert "fetch  attempt 3 of 5  next try in 2.5 s  2.5 s of 30.0 s deadline used" in line.plain
    assert "breaker closed" in line.plain and line.plain.endswith("TimeoutError: no answer")
    # A breaker event newer than the attempt's own reading wins the badge.
    display(BreakerOpened("fetch", start + 3, "closed", "open", "rate", start + 33))
    assert "breaker open" in display.lines()[0].plain
    clock.advance(3)
    assert "trying…" in display.lines()[0].plain
    display(
        RecoveryExhausted(
            "fetch", clock.wall(), "r1", 3, 7.0, start, "cancelled", "TimeoutError", "x", TRANSIENT
        )
    )
    assert display.lines() == []


def test_setting_off_shows_nothing_and_bad_modes_are_refused() -> None:
    bus, clock, out = EventBus(), FakeClock(), io.StringIO()
    with show_progress(bus, console=Console(file=out), settings=StaticSettings({"display.progress": "off"})):
        Policy("quiet", attempts=3, bus=bus, clock=clock).call(Flaky(1))
    assert out.getvalue() == "" and not bus.listening
    with pytest.raises(ValueError, match="mode: got 'fancy'"):
        ProgressDisplay(bus=bus, mode="fancy")


class PtyReader:
    """A real pseudo-terminal: a rich console writes to its slave side, a thread reads the master side."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.file = open(slave, "w", encoding="utf-8")  # closed in close()
        self.console = Console(file=self.file, force_terminal=True, width=160, color_system="standard")
        self.data = b""
        self.chunks: list[tuple[float, bytes]] = []
        self._lock = threading.Lock()
        self._stop = False
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop:
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:
                    return
                with self._lock:
                    self.data += chunk
                    self.chunks.append((time.perf_counter(), chunk))

    def seen_at(self, needle: bytes, after: float, timeout: float = 2.0) -> float | None:
        """When ``needle`` first arrived in a chunk read after ``after``."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            with self._lock:
                for at, chunk in self.chunks:
                    if at >= after and needle in chunk:
                        return at
            time.sleep(0.001)
        return None

    def close(self) -> None:
        self._stop = True
        self._thread.join()
        self.file.close()
        os.close(self.master)


def test_event_to_terminal_latency_is_under_100_ms_on_a_pty(record_property: object) -> None:
    pty = PtyReader()
    bus = EventBus()
    latencies = []
    try:
        with ProgressDisplay(bus=bus, console=pty.console, mode="rich", refresh=0.1):
            now = time.time()
            for n in range(20):
                time.sleep(0.02)  # let the display settle between samples
                emitted = time.perf_counter()
                bus.emit(
                    AttemptFailed(
                        f"op{n}", now, f"r{n}", 1, 3, 0.0, "OSError", f"marker-{n}-", TRANSIENT, True
                    )
                )
                seen = pty.seen_at(f"marker-{n}-".encode(), emitted)
                assert seen is not None, f"event {n} never reached the terminal"
                latencies.append(seen - emitted)
    finally:
        pty.close()
    latencies.sort()
    worst, median, p90 = latencies[-1], latencies[len(latencies) // 2], latencies[int(len(latencies) * 0.9)]
    record_property("event_to_terminal_ms", f"median {median * 1000:.1f}, max {worst * 1000:.1f}")  # type: ignore[operator]
    print(
        f"event to terminal: median {median * 1000:.2f} ms, max {worst * 1000:.2f} ms over {len(latencies)}"
    )
    # The display draws within a few milliseconds; on a machine loaded by other jobs a thread wake-up can
    # lag now and then, so the bound is on nine samples in ten and on the median.
    assert p90 < 0.1 and median < 0.05


def test_the_countdown_redraws_at_least_every_100_ms_and_final_line_stays() -> None:
    pty = PtyReader()
    bus = EventBus()
    try:
        with ProgressDisplay(bus=bus, console=pty.console, mode="rich", refresh=0.1):
            now = time.time()
            bus.emit(RetryScheduled("wait", now, "r1", 2, 3, 0.9, now + 0.9, None, now, "backoff"))
            time.sleep(0.65)  # the countdown itself is what is measured
            bus.emit(
                RecoveryExhausted("wait", time.time(), "r1", 2, 0.5, now, "cancelled", "OSError", "x", None)
            )
        assert pty.seen_at(b"gave up", 0) is not None  # the reader thread may lag behind the display
        text = pty.data.decode()
    finally:
        pty.close()
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    values = set(re.findall(r"next try in (\d\.\d) s", plain))
    assert len(values) >= 4, values  # 0.65 s at 100 ms or better: six readings, four even on a busy machine
    assert "wait: gave up after 2 attempts in 0.5 s (cancelled)" in plain


def test_suspended_clears_the_live_lines_for_a_child_process() -> None:
    pty = PtyReader()
    bus = EventBus()
    try:
        display = ProgressDisplay(bus=bus, console=pty.console, mode="rich").start()
        now = time.time()
        bus.emit(RetryScheduled("child", now, "r1", 2, 3, 30, now + 30, None, now, "backoff"))
        assert pty.seen_at(b"next try in", 0) is not None
        with display.suspended():
            assert display._live is None
            marker = time.perf_counter()
            time.sleep(0.25)  # two refresh periods: nothing may be drawn meanwhile
            with pty._lock:
                drawn = [chunk for at, chunk in pty.chunks if at > marker + 0.02]
            assert drawn == []
        assert pty.seen_at(b"next try in", time.perf_counter()) is not None
        display.stop()
    finally:
        pty.close()
