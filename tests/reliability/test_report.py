"""RELIABILITY.md cannot go stale silently: it lists every scenario the suite has, each scenario is proved by
a test, and nothing was lost in any of them."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

from tests.reliability.conftest import ROOT
from tests.reliability.scenarios import GROUPS, SCENARIOS

HERE = Path(__file__).parent
SCRIPT = ROOT / "scripts" / "reliability_report.py"


def _scenarios_used_by_tests() -> set[str]:
    used: set[str] = set()
    for path in HERE.glob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "figures"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                used.add(str(node.args[0].value))
    return used


def test_every_scenario_is_proved_by_a_test() -> None:
    used = _scenarios_used_by_tests()
    assert used - set(SCENARIOS) == set(), "tests name scenarios that scenarios.py does not list"
    assert set(SCENARIOS) - used == set(), "scenarios.py lists scenarios that no test proves"
    assert {group for group, _ in SCENARIOS.values()} <= set(GROUPS)


def test_reliability_md_lists_every_scenario_and_nothing_lost() -> None:
    page = (ROOT / "RELIABILITY.md").read_text()
    tables = page.split("## Figures")[0]  # the scenario tables; the figures table below has other columns
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([a-z0-9-]+)` \|.*$", tables, re.MULTILINE)}
    missing = set(SCENARIOS) - set(rows)
    assert not missing, (
        f"RELIABILITY.md lacks {sorted(missing)}: run the suite, then scripts/reliability_report.py"
    )
    assert "Failing scenarios" not in page
    for scenario in SCENARIOS:
        cells = [c.strip() for c in rows[scenario].strip("|").split("|")]
        assert cells[-1] == "none", f"{scenario}: data lost = {cells[-1]!r}"
        assert cells[3] not in ("not run", "") and int(cells[2].replace(",", "")) > 0, rows[scenario]


def test_the_script_renders_checks_and_refuses_gaps(tmp_path: Path) -> None:
    entries = {
        f"t::{s}": {
            "scenario": s,
            "test": f"t::{s}",
            "tries": 3,
            "result": "held | twice",
            "lost": 0,
            "passed": True,
            "size": "ci",
            "details": {"calls_per_second": 1234} if s.startswith("soak") else {},
        }
        for s in SCENARIOS
    }
    figures = tmp_path / "figures.json"
    figures.write_text(json.dumps({"entries": entries}))
    out = tmp_path / "RELIABILITY.md"
    run = [sys.executable, str(SCRIPT), "--input", str(figures), "--output", str(out)]
    assert subprocess.run(run, capture_output=True, text=True, check=False).returncode == 0
    page = out.read_text()
    assert page.count("| none |") == len(SCENARIOS)
    assert "held \\| twice" in page and "calls_per_second = 1,234" in page
    assert subprocess.run([*run, "--check"], capture_output=True, check=False).returncode == 0
    out.write_text(page + "edited by hand\n")
    assert subprocess.run([*run, "--check"], capture_output=True, check=False).returncode == 1
    del entries[next(iter(entries))]
    figures.write_text(json.dumps({"entries": entries}))
    refused = subprocess.run(run, capture_output=True, text=True, check=False)
    assert refused.returncode != 0 and "no figures for 1 scenario" in refused.stderr
