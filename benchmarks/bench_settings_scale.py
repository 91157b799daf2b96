"""Settings at scale: ``bounceback settings import`` of many operations, and ``bounceback status`` over them.

The budgets (issue 22): importing 8,000 operation sections takes under 2 s, and ``status`` with 15,000
stored values under 1 s; both grow linearly. Each measurement runs the real CLI in a fresh process on a
fresh home in a temporary folder, as a person would, and prints the wall time (best of ``--repeat``).

Run: ``python benchmarks/bench_settings_scale.py`` (``--quick`` for the small sizes only).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SECTION = '[operations."op-{i:05d}".retry]\nmax_attempts = {n}\ninitial_delay = "250ms"\n\n'


def document(sections: int) -> str:
    """A TOML file with ``sections`` operation sections of two values each."""
    return "".join(SECTION.format(i=i, n=2 + i % 7) for i in range(sections))


def run(home: Path, *args: str, stdin: str | None = None) -> float:
    """Seconds one ``bounceback ARGS`` process takes (it must succeed)."""
    env = {**os.environ, "BOUNCEBACK_HOME": str(home)}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "bounceback", *args],
        input=stdin,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    took = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"bounceback {' '.join(args)} failed: {done.stderr[-2000:]}")
    return took


def measure(sections: int, repeat: int) -> tuple[float, float, int]:
    """(import seconds, status seconds, stored values) for a document of ``sections`` sections."""
    text = document(sections)
    imports, statuses = [], []
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            source = home / "team.toml"
            source.write_text(text)
            run(home, "status")  # create the home first: the import alone is measured
            imports.append(run(home, "settings", "import", str(source), "--json"))
            statuses.append(run(home, "status"))
    return min(imports), min(statuses), sections * 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="only the small sizes")
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args(argv)
    sizes = [500, 1000, 2000] if args.quick else [1000, 2000, 4000, 7500, 8000]
    baseline = run_empty(args.repeat)
    print(f"python -m bounceback status on an empty home: {baseline:.2f} s (process start, imports)")
    print(f"{'sections':>8} {'values':>7} {'import s':>9} {'status s':>9} {'import us/section':>18}")
    for sections in sizes:
        took_import, took_status, values = measure(sections, args.repeat)
        per = (took_import - baseline) / sections * 1e6
        print(f"{sections:>8,} {values:>7,} {took_import:>9.2f} {took_status:>9.2f} {per:>18.0f}")
    return 0


def run_empty(repeat: int) -> float:
    """Seconds of ``status`` on an empty home: the fixed cost of a CLI process."""
    best = float("inf")
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            best = min(best, run(Path(tmp), "status"))
    return best


if __name__ == "__main__":
    raise SystemExit(main())
