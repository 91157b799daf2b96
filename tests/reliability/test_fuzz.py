"""Coverage-guided fuzzing (atheris) of the untrusted-text parsers, for a bounded number of inputs each.

The targets and their invariants live in ``fuzz_targets.py``; each runs in its own process (libFuzzer
owns the process). A failing input is saved under the test's temporary folder and named in the failure.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.reliability.conftest import ROOT, Figures, soak_size

SCENARIO = {
    "retry-after": "input-retry-after",
    "setting-text": "input-settings-values",
    "settings-document": "input-settings-import",
}


@pytest.mark.soak
@pytest.mark.parametrize("target", sorted(SCENARIO))
def test_fuzz_target(target: str, tmp_path: Path, figures: Callable[[str], Figures]) -> None:
    fig = figures(SCENARIO[target])
    runs = soak_size(20_000, 1_000_000)
    proc = subprocess.run(
        [
            sys.executable, "-m", "tests.reliability.fuzz_targets", target,
            f"-runs={runs}", "-seed=1", "-max_len=512", f"-artifact_prefix={tmp_path}/",
        ],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    crashes = sorted(p.name for p in tmp_path.iterdir())
    assert proc.returncode == 0, f"{target}: {crashes}\n{proc.stderr[-3000:]}"
    assert re.search(rf"Done {runs} runs", proc.stderr), proc.stderr[-2000:]
    cov = re.findall(r"cov: (\d+)", proc.stderr)
    fig.tries = runs
    fig.result = f"atheris: {runs:,} coverage-guided inputs to {target}, invariant held (edges covered: {cov[-1] if cov else '?'})"
