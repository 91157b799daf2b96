"""The terminal timeline: runs, attempts and breaker states placed on the time axis."""

from __future__ import annotations

from rich.console import Console

from bounceback.console._timeline import render_timeline
from bounceback.stores.journal._schema import AttemptEntry, BreakerChange, RunEntry


def _run(run_id: str, op: str, start: float, end: float | None, status: str, attempts: int) -> RunEntry:
    outcome = None if status in ("running", "abandoned") else status
    return RunEntry(
        run_id, op, start, end or start, end, outcome, "attempts" if status == "gave-up" else None,
        attempts, 5, None, None, "OSError", "x", "transient", None, 1, "h", status,
    )  # fmt: skip


def _attempt(run_id: str, n: int, at: float, ok: bool = False) -> AttemptEntry:
    if ok:
        return AttemptEntry(run_id, n, "op", at, 0.0, "succeeded", *[None] * 7)
    return AttemptEntry(
        run_id, n, "op", at, 0.0, "failed", "OSError", "x", "transient", "", 1.0, at + 1, None
    )


def _draw(*args: object, width: int = 120, **kw: object) -> list[str]:
    console = Console(width=width, color_system=None)
    with console.capture() as cap:
        console.print(render_timeline(*args, width=width, **kw))  # type: ignore[arg-type]
    return cap.get().splitlines()


def test_markers_land_where_the_attempts_happened() -> None:
    runs = [
        _run("aa-1", "fetch", 0.0, 50.0, "recovered", 2),
        _run("bb-2", "store", 60.0, 100.0, "gave-up", 2),
    ]
    attempts = {
        "aa-1": [_attempt("aa-1", 1, 0.0), _attempt("aa-1", 2, 50.0, ok=True)],
        "bb-2": [_attempt("bb-2", 1, 60.0), _attempt("bb-2", 2, 100.0)],
    }
    axis, fetch, store = _draw(runs, attempts, [], since=0.0, until=100.0)
    assert axis.strip().count(":") == 8  # four HH:MM:SS ticks on 44 columns
    body = fetch[27:]
    cols = len(body.split("  recovered")[0])
    assert body.index("✗") == 0 and abs(body.index("✓") - cols // 2) <= 1
    assert "recovered, 2 attempts, 50.0 s" in fetch
    assert store.rstrip().endswith("gave-up, 2 attempts, 40.0 s (attempts)")
    assert store[27:].index("✗") > cols // 2


def test_breaker_states_fill_their_periods_and_running_runs_reach_now() -> None:
    changes = [
        BreakerChange("db", 10.0, "closed", "open", "rate", 40.0, 1, "h"),
        BreakerChange("db", 40.0, "open", "half_open", "time", None, 1, "h"),
        BreakerChange("db", 45.0, "half_open", "closed", "probe ok", None, 1, "h"),
    ]
    runs = [_run("cc-3", "db", 80.0, None, "running", 1)]
    lines = _draw(runs, {"cc-3": [_attempt("cc-3", 1, 80.0)]}, changes, since=0.0, until=100.0)
    breaker, running = lines[1], lines[2]
    assert breaker.startswith("breaker db") and "█" in breaker and "▒" in breaker and "━" in breaker
    assert breaker.index("█") < breaker.index("▒") < breaker.index("━")
    assert breaker.rstrip().endswith("closed")
    assert running.rstrip().endswith("running, 1 attempt, 0 s")
    assert "─" in running.split("✗")[1]  # drawn on until now


def test_a_command_at_its_first_attempt_says_it_is_running() -> None:
    runs = [_run("dd-c4", "backup", 90.0, None, "running", 0)]  # announced, nothing failed yet
    [_axis, line] = _draw(runs, {"dd-c4": []}, [], since=0.0, until=100.0)
    assert line.rstrip().endswith("running, attempt 1, 0 s") and "0 attempts" not in line


def test_empty_and_crowded_timelines_say_so() -> None:
    assert "no recoveries in this period" in _draw([], {}, [], since=0.0, until=60.0)[-1]
    runs = [_run(f"r-{i}", "op", float(i), float(i) + 0.5, "recovered", 2) for i in range(10)]
    lines = _draw(runs, {}, [], since=0.0, until=20.0, max_rows=3)
    assert "7 earlier run(s) not shown" in lines[1] and len(lines) == 5
    # Labels are text: markup in an operation name is printed as it is.
    odd = [_run("z-1", "[red]x[/]", 1.0, 2.0, "recovered", 2)]
    assert "[red]x[/]" in _draw(odd, {}, [], since=0.0, until=3.0)[1]
