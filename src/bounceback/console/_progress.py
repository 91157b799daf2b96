"""Live terminal progress of automatic recovery: a subscriber of the event bus, drawn with rich.

On a terminal, every recovery running in the process gets one live line (spinner, operation, attempt n of
N, countdown to the next try, time used against the deadline, breaker badge, last error), and a final line
("recovered after 3 attempts in 5.4 s" / "gave up after ...") is printed above the live lines when a run
ends. Elsewhere (CI logs, files, pipes) each event becomes one plain line without ANSI codes.

Threads: the subscriber runs in the thread that emitted the event and only updates state under a short
lock and wakes the display thread; that thread alone writes to the terminal. It redraws at once after an
event and every ``refresh`` seconds (0.1 by default) while a run is waiting, so the countdown moves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any

from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from bounceback.console._text import badge_style, clock_time, countdown, describe_reason, one_line, seconds
from bounceback.core._events import (
    AttemptFailed,
    BreakerStateChanged,
    CallRejected,
    Event,
    EventBus,
    RecoveryExhausted,
    RecoverySucceeded,
    RetryScheduled,
    default_bus,
)
from bounceback.core._time import SYSTEM_CLOCK, Clock
from bounceback.errors import ConfigError

__all__ = ["MODES", "ProgressDisplay", "describe_reason", "show_progress"]

MODES = ("auto", "rich", "plain", "off")
"""Display modes: ``auto`` (rich on a terminal, plain elsewhere), ``rich``, ``plain``, ``off``."""

_FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
_SHOWN = (AttemptFailed, RetryScheduled, RecoverySucceeded, RecoveryExhausted, BreakerStateChanged)


@dataclass
class _RunView:
    run_id: str
    operation: str
    attempt: int
    max_attempts: int | None
    started_at: float
    deadline_at: float | None = None
    retry_at: float | None = None
    error: str = ""
    kind: str = ""
    breaker: tuple[str, float] | None = None

    def of(self) -> str:
        return (
            f"attempt {self.attempt} of {self.max_attempts}"
            if self.max_attempts
            else f"attempt {self.attempt}"
        )


class ProgressDisplay:
    """Show every recovery of the process live on ``console`` (default: a rich console on stderr).

    ``mode`` is one of :data:`MODES`. Use it as a context manager, or :meth:`start` / :meth:`stop`.

    >>> import io
    >>> from rich.console import Console
    >>> from bounceback import Backoff, Policy
    >>> from bounceback.events import EventBus
    >>> from bounceback.testing import FakeClock
    >>> bus, clock, out = EventBus(), FakeClock(), io.StringIO()
    >>> tries = []
    >>> def flaky():
    ...     tries.append(1)
    ...     if len(tries) < 3:
    ...         raise ConnectionResetError("reset by peer")
    >>> with ProgressDisplay(bus=bus, console=Console(file=out), clock=clock):
    ...     Policy("sync", attempts=5, backoff=Backoff(initial=1, jitter="none"), bus=bus, clock=clock).call(flaky)
    >>> print(out.getvalue().splitlines()[-1])
    bounceback: sync: recovered after 3 attempts in 3.0 s
    """

    def __init__(
        self,
        bus: EventBus | None = None,
        console: Console | None = None,
        *,
        mode: str = "auto",
        refresh: float = 0.1,
        clock: Clock = SYSTEM_CLOCK,
        prefix: str = "bounceback: ",
    ) -> None:
        if mode not in MODES:
            raise ConfigError("mode", mode, f"one of {', '.join(MODES)}")
        if not 0.01 <= refresh <= 1.0:
            raise ConfigError(
                "refresh", refresh, "seconds between 0.01 and 1 (the countdown moves this often)"
            )
        self.console = console or Console(stderr=True)
        if mode == "auto":
            mode = "rich" if self.console.is_terminal else "plain"
        self.mode = mode
        self.refresh = refresh
        self.prefix = prefix
        self._bus = bus or default_bus
        self._clock = clock
        self._lock = threading.Lock()  # guards the state below; never held while writing
        self._render_lock = threading.RLock()  # one writer to the terminal at a time
        self._runs: dict[str, _RunView] = {}
        self._breakers: dict[str, tuple[str, float]] = {}
        self._lines: list[Text] = []
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._live: Live | None = None
        self._suspended = 0
        self._unsubscribe: Callable[[], None] | None = None
        self.on_drawn: Callable[[], None] | None = None
        """Called (from the display thread) after each redraw; for measuring and tests."""

    # -- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> ProgressDisplay:
        """Subscribe to the bus and, in rich mode, start the display thread."""
        if self._unsubscribe is not None or self.mode == "off":
            return self
        self._unsubscribe = self._bus.subscribe(self)
        if self.mode == "rich":
            self._stopping.clear()
            self._thread = threading.Thread(target=self._loop, name="bounceback-progress", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Unsubscribe, print what is pending, and clear the live lines."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._stopping.set()
        self._wake.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)
        with self._render_lock:
            self._print_pending()
            self._stop_live()

    def __enter__(self) -> ProgressDisplay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @contextmanager
    def suspended(self) -> Iterator[None]:
        """Clear the live lines for the block, e.g. while a child process writes to the same terminal."""
        with self._render_lock:
            self._suspended += 1
            self._print_pending()
            self._stop_live()
        try:
            yield
        finally:
            with self._render_lock:
                self._suspended -= 1
            self._wake.set()

    # -- events (any thread) -------------------------------------------------------------------------

    def __call__(self, event: Event) -> None:
        """Take one event (the bus calls this)."""
        if not isinstance(event, _SHOWN):
            if isinstance(event, CallRejected):
                # Rejections may come thousands a second: no redraw each, the next periodic one shows it.
                with self._lock:
                    self._breakers[event.operation] = (event.state, event.at)
            return
        line = self._update(event)
        if self.mode == "plain":
            if line is not None:
                self._write_plain(line.plain)
            return
        if line is not None:
            with self._lock:
                self._lines.append(line)
        if isinstance(event, (RecoverySucceeded, RecoveryExhausted)) and self._thread is not None:
            # Settle the terminal before control returns to the program, which may print next.
            self.draw()
        else:
            self._wake.set()

    def _update(self, ev: Event) -> Text | None:
        """Apply an event to the state; return the line it prints, if any."""
        op = ev.operation
        if isinstance(ev, AttemptFailed):
            with self._lock:
                view = self._runs.get(ev.run_id)
                if view is None:
                    view = self._runs[ev.run_id] = _RunView(
                        ev.run_id, op, ev.attempt, ev.max_attempts, ev.at - ev.elapsed
                    )
                view.attempt, view.max_attempts, view.retry_at = ev.attempt, ev.max_attempts, None
                view.error = one_line(f"{ev.error_type}: {ev.error_message}")
                view.kind = ev.classification.kind.value
                if ev.breaker_state:
                    view.breaker = (ev.breaker_state, ev.at)
                text = f"{op}: {view.of()} failed: {view.error} ({view.kind})"
            return self._line(text, "red") if self.mode == "plain" else None
        if isinstance(ev, RetryScheduled):
            with self._lock:
                view = self._runs.get(ev.run_id)
                if view is None:
                    view = self._runs[ev.run_id] = _RunView(
                        ev.run_id, op, ev.attempt, ev.max_attempts, ev.started_at
                    )
                view.attempt, view.max_attempts = ev.attempt, ev.max_attempts
                view.retry_at, view.deadline_at, view.started_at = ev.retry_at, ev.deadline_at, ev.started_at
                text = f"{op}: retrying in {seconds(ev.delay)} ({view.of()} at {clock_time(ev.retry_at)}"
                text += f"; {self._budget(view, ev.at)})"
            return self._line(text, "yellow") if self.mode == "plain" else None
        if isinstance(ev, RecoverySucceeded):
            with self._lock:
                self._runs.pop(ev.run_id, None)
            plural = "s" if ev.attempts != 1 else ""
            return self._line(
                f"{op}: recovered after {ev.attempts} attempt{plural} in {seconds(ev.elapsed)}", "green"
            )
        if isinstance(ev, RecoveryExhausted):
            with self._lock:
                self._runs.pop(ev.run_id, None)
            error = one_line(f"{ev.error_type}: {ev.error_message}")
            plural = "s" if ev.attempts != 1 else ""
            text = f"{op}: gave up after {ev.attempts} attempt{plural} in {seconds(ev.elapsed)}"
            return self._line(f"{text} ({describe_reason(ev.reason)}): {error}", "bold red")
        if isinstance(ev, BreakerStateChanged):
            with self._lock:
                self._breakers[op] = (ev.new_state, ev.at)
            until = f" until {clock_time(ev.open_until)}" if ev.open_until is not None else ""
            text = f"breaker {op}: {ev.old_state} -> {ev.new_state}{until} ({one_line(ev.reason)})"
            return self._line(text, badge_style(ev.new_state))
        return None

    def _line(self, text: str, style: str) -> Text:
        # Built from plain strings with Text: error text can never be read as rich markup.
        line = Text(self.prefix, style="dim")
        line.append(text, style=style)
        return line

    @staticmethod
    def _budget(view: _RunView, now: float) -> str:
        used = max(0.0, now - view.started_at)
        if view.deadline_at is None:
            return f"{countdown(used)} elapsed"
        return f"{countdown(used)} of {countdown(view.deadline_at - view.started_at)} deadline used"

    def _write_plain(self, text: str) -> None:
        file: IO[str] = self.console.file
        with self._render_lock:
            try:
                file.write(text + "\n")
                file.flush()
            except (OSError, ValueError):
                pass  # a closed pipe must not break the recovery that emitted the event

    # -- drawing (the display thread) ----------------------------------------------------------------

    def lines(self, now: float | None = None) -> list[Text]:
        """The live lines as they would be drawn at wall time ``now`` (default: the clock's)."""
        now = self._clock.wall() if now is None else now
        frame = _FRAMES[int(time.monotonic() * 10) % len(_FRAMES)]
        with self._lock:
            views = list(self._runs.values())
            breakers = dict(self._breakers)
        out = []
        for view in views:
            line = Text(no_wrap=True, overflow="ellipsis")
            line.append(f"{frame} ", style="cyan")
            line.append(view.operation, style="bold")
            line.append(f"  {view.of()}")
            if view.retry_at is not None and view.retry_at > now:
                line.append(f"  next try in {countdown(view.retry_at - now)}", style="yellow")
            else:
                line.append("  trying…", style="cyan")
            late = view.deadline_at is not None and now - view.started_at > 0.8 * (
                view.deadline_at - view.started_at
            )
            line.append(f"  {self._budget(view, now)}", style="red" if late else "dim")
            breaker = view.breaker
            shared = breakers.get(view.operation)
            if shared is not None and (breaker is None or shared[1] >= breaker[1]):
                breaker = shared
            if breaker is not None:
                line.append("  ")
                line.append(f" breaker {breaker[0]} ", style=badge_style(breaker[0]) or "reverse")
            if view.error:
                line.append(f"  {view.error}", style="dim red")
            out.append(line)
        return out

    def _loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.wait(self.refresh)
            self._wake.clear()
            if self._stopping.is_set():
                return
            try:
                self.draw()
            except Exception:  # pragma: no cover - a broken terminal must not stop the program
                import logging

                logging.getLogger("bounceback.console").exception("progress display failed")

    def draw(self) -> None:
        """Print pending final lines and redraw the live lines now (the display thread does this)."""
        with self._render_lock:
            with self._lock:
                active = bool(self._runs)
            if not active or self._suspended:
                self._stop_live()  # first, so the final lines land on a clean screen
            self._print_pending()
            if active and not self._suspended:
                if self._live is None:
                    self._live = Live(
                        get_renderable=self._renderable,
                        console=self.console,
                        auto_refresh=False,  # this thread refreshes: at once after an event, then every 100 ms
                        refresh_per_second=max(10.0, 1 / self.refresh),
                        transient=True,
                        redirect_stdout=False,
                        redirect_stderr=False,
                    )
                    self._live.start()
                self._live.refresh()
        if self.on_drawn is not None:
            self.on_drawn()

    def _renderable(self) -> Any:
        return Group(*self.lines())

    def _print_pending(self) -> None:
        with self._lock:
            lines, self._lines = self._lines, []
        for line in lines:
            self.console.print(line, soft_wrap=True, highlight=False, markup=False)

    def _stop_live(self) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()


@contextmanager
def show_progress(
    bus: EventBus | None = None,
    *,
    console: Console | None = None,
    mode: str | None = None,
    settings: Any = None,
    clock: Clock = SYSTEM_CLOCK,
) -> Iterator[ProgressDisplay]:
    """Show live recovery progress on stderr for the block.

    ``mode`` and the refresh interval come from ``settings`` (``display.progress``, ``display.refresh``)
    when given, else ``auto`` and 0.1 s.

    >>> import io
    >>> from rich.console import Console
    >>> with show_progress(console=Console(file=io.StringIO()), mode="plain") as display:
    ...     display.mode
    'plain'
    """
    values = settings.effective(None) if settings is not None else {}
    chosen = mode or values.get("display.progress", "auto")
    refresh = float(values.get("display.refresh", 0.1))
    with ProgressDisplay(bus, console, mode=chosen, refresh=refresh, clock=clock) as display:
        yield display
