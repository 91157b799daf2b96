"""Recovery runs and breaker changes drawn on a time axis in the terminal (``bounceback timeline``).

One row per run: a line from its first attempt to its end (green recovered, red gave up, yellow still
running, dim abandoned) with ``✗`` where an attempt failed and ``✓`` where the last one succeeded, and a
short summary at the right. One row per breaker shows its state over time: ``━`` closed, ``█`` open,
``▒`` half-open, ``▓`` forced open, ``┄`` disabled. Times on the axis are local clock times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from rich.console import Group
from rich.text import Text

from bounceback.console._text import badge_style, clock_time, one_line, seconds
from bounceback.stores.journal._schema import AttemptEntry, BreakerChange, RunEntry

__all__ = ["render_timeline"]

_RUN_STYLE = {"recovered": "green", "gave-up": "red", "running": "yellow", "abandoned": "dim"}
_STATE_CHAR = {"closed": "━", "open": "█", "half_open": "▒", "forced_open": "▓", "disabled": "┄"}
_LABEL = 26
_SUMMARY = 48


def _label(text: str) -> str:
    text = one_line(text, _LABEL)
    return text.ljust(_LABEL)


def render_timeline(
    runs: Sequence[RunEntry],
    attempts: Mapping[str, Sequence[AttemptEntry]],
    changes: Sequence[BreakerChange],
    *,
    since: float,
    until: float,
    width: int = 100,
    max_rows: int = 60,
) -> Group:
    """Draw ``runs`` (with their ``attempts`` by run id) and breaker ``changes`` between wall times.

    >>> from rich.console import Console
    >>> run = RunEntry("ab-1", "fetch", 10.0, 14.0, 14.0, "recovered", None, 2, 5, None, None,
    ...                "OSError", "refused", "transient", None, 1, "h", "recovered")
    >>> tries = {"ab-1": [AttemptEntry("ab-1", 1, "fetch", 11.0, 1.0, "failed", "OSError", "refused",
    ...          "transient", "", 3.0, 14.0, None),
    ...          AttemptEntry("ab-1", 2, "fetch", 14.0, 4.0, "succeeded", *[None] * 7)]}
    >>> console = Console(width=80, color_system=None)
    >>> with console.capture() as cap:
    ...     console.print(render_timeline([run], tries, [], since=0.0, until=20.0, width=80))
    >>> "✗" in cap.get() and "✓" in cap.get() and "recovered, 2 attempts" in cap.get()
    True
    """
    span = max(until - since, 1e-9)
    cols = max(10, width - _LABEL - _SUMMARY - 2)

    def col(at: float) -> int:
        return min(cols - 1, max(0, int((at - since) / span * (cols - 1) + 0.5)))

    rows: list[Text] = [_axis(since, until, cols)]
    by_name: dict[str, list[BreakerChange]] = {}
    for change in changes:
        by_name.setdefault(change.name, []).append(change)
    for name, named in sorted(by_name.items()):
        rows.append(_breaker_row(name, named, col, cols, until))
    shown = list(runs)[-max_rows:]
    if len(runs) > len(shown):
        rows.append(Text(f"… {len(runs) - len(shown)} earlier run(s) not shown", style="dim"))
    for run in shown:
        rows.append(_run_row(run, attempts.get(run.run_id, ()), col, cols, until))
    if not runs and not changes:
        rows.append(Text("no recoveries in this period", style="dim"))
    return Group(*rows)


def _axis(since: float, until: float, cols: int) -> Text:
    line = [" "] * cols
    ticks = min(4, max(1, cols // 12))  # labels are 8 wide: keep them apart
    for i in range(ticks + 1):
        pos = round(i * (cols - 1) / ticks)
        stamp = clock_time(since + (until - since) * pos / max(cols - 1, 1))
        start = min(max(0, pos - len(stamp) // 2), cols - len(stamp))
        for j, ch in enumerate(stamp):
            line[start + j] = ch
    return Text(" " * _LABEL + " " + "".join(line), style="dim")


def _breaker_row(
    name: str, changes: Sequence[BreakerChange], to_col: Callable[[float], int], cols: int, until: float
) -> Text:
    cells: list[tuple[str, str]] = [(" ", "")] * cols
    for i, change in enumerate(changes):
        start = to_col(change.at)
        end = to_col(changes[i + 1].at) if i + 1 < len(changes) else to_col(until) + 1
        char = _STATE_CHAR.get(change.new_state, "?")
        for c in range(start, max(start + 1, end)):
            if c < cols:
                cells[c] = (char, badge_style(change.new_state))
    row = Text(_label(f"breaker {name}") + " ", style="bold", no_wrap=True, overflow="ellipsis")
    for char, style in cells:
        row.append(char, style=style)
    last = changes[-1]
    row.append(f"  {last.new_state}", style=badge_style(last.new_state))
    if last.open_until is not None and last.new_state == "open":
        row.append(f" until {clock_time(last.open_until)}", style="dim")
    return row


def _run_row(
    run: RunEntry, attempts: Sequence[AttemptEntry], to_col: Callable[[float], int], cols: int, until: float
) -> Text:
    style = _RUN_STYLE.get(run.status, "")
    cells: list[tuple[str, str]] = [(" ", "")] * cols
    end = run.ended_at if run.ended_at is not None else (until if run.status == "running" else run.updated_at)
    for c in range(to_col(run.started_at), to_col(end) + 1):
        cells[c] = ("─", style)
    for attempt in attempts:
        if attempt.outcome == "failed":
            cells[to_col(attempt.at)] = ("✗", "red")
        else:
            cells[to_col(attempt.at)] = ("✓", "bold green")
    row = Text(_label(f"{run.operation} {run.run_id[-6:]}") + " ", no_wrap=True, overflow="ellipsis")
    for char, cell_style in cells:
        row.append(char, style=cell_style)
    plural = "s" if run.attempts != 1 else ""
    done = f"{run.attempts} attempt{plural}"
    if run.status == "running" and not run.attempts:
        done = "attempt 1"  # a command of `bounceback run`, listed before anything failed
    summary = f"  {run.status}, {done}, {seconds(run.duration)}"
    if run.status == "gave-up" and run.reason:
        summary += f" ({run.reason})"
    row.append(summary, style=style)
    return row
