"""Every example in the docs runs: the ```python blocks of README.md and docs/*.md, and every doctest."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import bounceback

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.M | re.S)


def _blocks() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for i, match in enumerate(BLOCK.finditer(page.read_text())):
            out.append((f"{page.name}#{i + 1}", match.group(1)))
    return out


@pytest.mark.parametrize(("where", "code"), _blocks(), ids=[w for w, _ in _blocks()])
def test_doc_example_runs(where: str, code: str) -> None:
    # Each page's blocks run one by one in a fresh namespace; a block may rely on its own imports only.
    exec(compile(code, where, "exec"), {"__name__": f"docs_{where}"})


def _modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages([str(Path(bounceback.__file__).parent)], "bounceback.")]


@pytest.mark.parametrize("modname", _modules())
def test_doctests(modname: str) -> None:
    module = importlib.import_module(modname)
    result = doctest.testmod(
        module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False
    )
    assert result.failed == 0
