"""``bounceback simulate`` as a user runs it: a real subprocess, a real home database."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BOUNCEBACK_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "bounceback", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def simulate_json(home: Path, *args: str) -> dict[str, Any]:
    proc = run(home, "simulate", *args, "--json")
    assert proc.returncode == 0, proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)
    return data


def test_the_default_run_prints_the_model_the_policy_and_a_table(home: Path) -> None:
    proc = run(home, "simulate", "--model", "contention", "--clients", "30")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "contention: 30 clients" in out
    assert "policy: exponential 0.2s..30s jitter=full, 5 attempts, deadline 30s, breaker" in out
    header = next(line for line in out.splitlines() if line.startswith("policy "))
    assert "calls/req" in header and "p99 s" in header


def test_the_operations_own_settings_are_simulated(home: Path) -> None:
    assert run(home, "settings", "set", "retry.jitter", "none", "--op", "checkout").returncode == 0
    assert run(home, "settings", "set", "retry.max_attempts", "3", "--op", "checkout").returncode == 0
    mine = simulate_json(home, "--op", "checkout", "--model", "contention", "--clients", "20")
    other = simulate_json(home, "--model", "contention", "--clients", "20")
    assert "jitter=none, 3 attempts" in mine["policy"]
    assert "jitter=full, 5 attempts" in other["policy"]
    assert mine["results"][0]["label"] == "checkout"
    # --set and --jitter change this run only; nothing is saved.
    tried = simulate_json(
        home,
        *("--op", "checkout", "--model", "contention", "--jitter", "equal"),
        *("--set", "budget.enabled=yes", "--set", "breaker.enabled=off"),
    )
    assert "jitter=equal" in tried["policy"] and "budget 20%" in tried["policy"]
    assert "breaker" not in tried["policy"]
    again = simulate_json(home, "--op", "checkout", "--model", "contention", "--clients", "20")
    assert again["policy"] == mine["policy"]


def test_compare_same_seed_same_numbers_and_a_plot(home: Path, tmp_path: Path) -> None:
    args = ("--model", "outage", "--clients", "100", "--outage-seconds", "60", "--compare", "budget")
    first = simulate_json(home, *args, "--seed", "4", "--plot", str(tmp_path / "calls.png"))
    second = simulate_json(home, *args, "--seed", "4")
    assert [r["label"] for r in first["results"]] == ["full, no budget", "full + budget"]
    assert first["results"] == second["results"]
    no_budget, budget = first["results"]
    assert budget["calls_during_incident"] < no_budget["calls_during_incident"]
    assert (tmp_path / "calls.png").read_bytes().startswith(b"\x89PNG")
    assert first["incident"] == [60.0, 120.0]


def test_compare_jitter_on_the_capacity_model(home: Path) -> None:
    data = simulate_json(
        home, "--model", "capacity", "--clients", "100", "--compare", "jitter", "--set", "breaker.enabled=no"
    )
    assert [r["label"] for r in data["results"]] == ["none", "full", "equal", "decorrelated"]
    assert all(r["requests"] == data["results"][0]["requests"] for r in data["results"])


def test_bad_values_exit_2_with_a_clear_message(home: Path, tmp_path: Path) -> None:
    proc = run(home, "simulate", "--set", "retry.max_attempt=3")
    assert proc.returncode == 2
    assert "retry.max_attempts" in proc.stderr  # the suggestion
    proc = run(home, "simulate", "--set", "retry.max_attempts")
    assert proc.returncode == 2 and "key=value" in proc.stderr
    proc = run(home, "simulate", "--plot", str(tmp_path / "x.gif"))
    assert proc.returncode == 2 and ".png or .svg" in proc.stderr
    proc = run(home, "simulate", "--model", "contention", "--headroom", "2")
    assert proc.returncode == 2 and "contention" in proc.stderr
    proc = run(home, "simulate", "--model", "weather")
    assert proc.returncode == 2 and "weather" in proc.stderr


def test_hedging_on_the_slow_tail_model_cuts_the_p99_for_a_few_more_calls(home: Path) -> None:
    args = ("--model", "tail", "--clients", "50", "--set", "budget.enabled=no", "--set", "breaker.enabled=no")
    data = simulate_json(home, *args, "--hedge-delay", "0.1", "--compare", "hedge", "--seed", "3")
    assert data["model"] == "tail"
    assert "5% of attempts take 1 s instead of 0.02 s" in data["description"]
    assert "hedge after 0.1s" in data["policy"]
    plain, hedged = data["results"]
    assert [plain["label"], hedged["label"]] == ["full, no hedge", "full + hedge after 0.1s"]
    assert plain["hedges"] == 0 and plain["latency_p99_seconds"] == 1.0
    assert hedged["latency_p99_seconds"] <= 0.12 + 1e-6
    assert hedged["requests"] == plain["requests"]
    assert 0 < hedged["hedges"] < 0.1 * hedged["requests"]  # only the slow ~5% were hedged
    assert hedged["calls"] == hedged["requests"] + hedged["hedges"]


def test_hedge_uses_the_operations_hedge_settings_and_the_tail_options(home: Path) -> None:
    assert run(home, "settings", "set", "hedge.percentile", "90", "--op", "search").returncode == 0
    assert run(home, "settings", "set", "hedge.max_hedges", "2", "--op", "search").returncode == 0
    data = simulate_json(
        home,
        *("--op", "search", "--model", "tail", "--clients", "20", "--hedge"),
        *("--slow-fraction", "0.2", "--slow-latency", "2"),
    )
    assert "hedge after p90 (1s at first) x2" in data["policy"]
    assert "20% of attempts take 2 s" in data["description"]
    assert data["results"][0]["hedges"] > 0
    # Without --hedge the same settings simulate no hedging: hedging is marked in code, not by a setting.
    plain = simulate_json(home, "--op", "search", "--model", "tail", "--clients", "20")
    assert "hedge" not in plain["policy"] and plain["results"][0]["hedges"] == 0


def test_tail_options_belong_to_the_tail_model(home: Path) -> None:
    proc = run(home, "simulate", "--model", "outage", "--slow-fraction", "0.1")
    assert proc.returncode == 2 and "--slow-fraction" in proc.stderr and "--model tail" in proc.stderr
    proc = run(home, "simulate", "--model", "tail", "--headroom", "2")
    assert proc.returncode == 2 and "tail model has no capacity" in proc.stderr
    proc = run(home, "simulate", "--model", "tail", "--hedge-delay", "0")
    assert proc.returncode == 2 and "--hedge-delay" in proc.stderr
