"""Fixtures of the reliability suite: the figures each test records, and the soak size.

Every test asks ``figures("<scenario id>")`` for a :class:`Figures` record and fills in what it tried and
what held (``tries``, ``result``, ``lost``, plus any ``details`` such as throughput). When the test ends the
record is written, with the test's outcome, to ``test-artifacts/reliability.json``; the script
``scripts/reliability_report.py`` turns that file into RELIABILITY.md.

Sizes: ``BOUNCEBACK_SOAK=full`` runs the long tests at their published size (a million calls ...); by
default they run at a CI size that keeps this folder within a few minutes on two cores.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.scenarios import SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "test-artifacts" / "reliability.json"
"""Where the figures go (merged per test: a partial run updates only its own tests)."""


def is_full_soak() -> bool:
    """True when ``BOUNCEBACK_SOAK=full`` asks for the published sizes."""
    return os.environ.get("BOUNCEBACK_SOAK", "").strip().lower() == "full"


def soak_size(ci: int, full: int) -> int:
    """``full`` under ``BOUNCEBACK_SOAK=full``, else ``ci``."""
    return full if is_full_soak() else ci


@dataclass
class Figures:
    """What one test tried and what held. ``lost`` counts data lost (entries, rows, changes): must be 0."""

    scenario: str
    test: str
    tries: int = 0
    result: str = ""
    lost: int = 0
    details: dict[str, Any] = field(default_factory=dict)

    def note(self, **values: Any) -> None:
        """Add figures worth publishing (throughput, memory growth ...)."""
        self.details.update(values)


def _load() -> dict[str, Any]:
    try:
        data = json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return {"entries": {}}
    if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
        return {"entries": {}}
    return data


def _save(entry: dict[str, Any]) -> None:
    data = _load()
    data["entries"][entry["test"]] = entry
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    tmp.replace(RESULTS)  # atomic: a killed run never leaves half a file


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if report.when == "call" or report.failed:
        item.stash.setdefault(_OUTCOME, []).append(report.outcome)
    return report


_OUTCOME = pytest.StashKey[list[str]]()


@pytest.fixture
def figures(request: pytest.FixtureRequest) -> Iterator[Callable[[str], Figures]]:
    """``fig = figures("scenario-id")``: the record this test fills in; written when the test ends."""
    made: list[Figures] = []
    started = time.monotonic()

    def make(scenario: str) -> Figures:
        if scenario not in SCENARIOS:
            raise AssertionError(f"unknown scenario {scenario!r}: add it to tests/reliability/scenarios.py")
        fig = Figures(scenario, request.node.nodeid)
        made.append(fig)
        return fig

    yield make
    outcomes = request.node.stash.get(_OUTCOME, [])
    passed = bool(outcomes) and all(o == "passed" for o in outcomes)
    for fig in made:
        group, title = SCENARIOS[fig.scenario]
        _save(
            {
                "scenario": fig.scenario,
                "group": group,
                "title": title,
                "test": fig.test if len(made) == 1 else f"{fig.test}[{fig.scenario}]",
                "tries": fig.tries,
                "result": fig.result if passed else f"FAILED: {fig.result or 'see the test log'}",
                "lost": fig.lost,
                "passed": passed,
                "size": "full" if is_full_soak() else "ci",
                "seconds": round(time.monotonic() - started, 2),
                "details": fig.details,
            }
        )
