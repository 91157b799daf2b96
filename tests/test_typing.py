"""The public API keeps its types: mypy --strict on what a user writes (tests/typing/)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent / "typing"


def _mypy(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--hide-error-context", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def test_decorated_sync_and_async_functions_keep_their_signatures() -> None:
    run = _mypy(HERE / "signatures.py")
    assert run.returncode == 0, run.stdout + run.stderr


def test_misuse_is_reported_on_every_marked_line() -> None:
    path = HERE / "misuse.py"
    marked = {n for n, line in enumerate(path.read_text().splitlines(), 1) if "# error:" in line}
    run = _mypy(path)
    reported = {int(m.group(1)) for m in re.finditer(rf"{re.escape(path.name)}:(\d+): error", run.stdout)}
    assert run.returncode == 1
    assert reported == marked, run.stdout
