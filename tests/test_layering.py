"""The arrows of DESIGN.md: core imports only the standard library; nothing imports cli/ or web/."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "bounceback"
STDLIB = set(sys.stdlib_module_names) | {"__future__"}
# Which bounceback subpackages each layer may import (besides itself, core and errors).
ALLOWED = {
    "core": set(),
    "stores": set(),
    "integrations": {"stores"},
    "console": {"stores"},
    "sim": set(),
    "web": {"stores", "console", "integrations", "sim"},
    "demo": {"stores", "console", "integrations", "web", "sim"},
    "cli": {"stores", "console", "integrations", "web", "demo", "sim"},
}


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    found: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                raise AssertionError(f"{path}: relative import; use absolute bounceback.* imports")
            found.append(node.module or "")
    return found


def _layer(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else "top"


def test_core_is_pure_standard_library() -> None:
    bad = []
    for path in (PKG / "core").rglob("*.py"):
        for mod in _imports(path):
            top = mod.split(".")[0]
            if top == "bounceback":
                if not (mod.startswith("bounceback.core") or mod == "bounceback.errors"):
                    bad.append(f"{path.name} imports {mod}")
            elif top not in STDLIB:
                bad.append(f"{path.name} imports {mod}")
    assert bad == []


def test_layers_only_import_downwards() -> None:
    bad = []
    for path in PKG.rglob("*.py"):
        layer = _layer(path)
        if layer == "top":
            continue
        for mod in _imports(path):
            parts = mod.split(".")
            if parts[0] != "bounceback" or len(parts) < 2:
                continue
            target = parts[1]
            if target in {layer, "core", "errors", "testing"} or target.startswith("_"):
                continue
            if target not in ALLOWED.get(layer, set()):
                bad.append(f"{path.relative_to(PKG)} ({layer}) imports {mod}")
    assert bad == []


def test_nothing_imports_cli_or_web_except_from_above() -> None:
    for path in PKG.rglob("*.py"):
        layer = _layer(path)
        for mod in _imports(path):
            if mod.startswith("bounceback.cli"):
                assert layer == "cli" or path.name == "__main__.py", f"{path} imports {mod}"


def test_the_layering_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "x.py"
    bad.write_text("import sqlite3\nfrom bounceback.stores import thing\n")
    assert "bounceback.stores" in _imports(bad)
