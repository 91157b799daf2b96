"""The arrows of DESIGN.md: core imports only the standard library; nothing imports cli/ or web/."""

from __future__ import annotations

import ast
import importlib.util
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


# The core's capabilities, lowest first: each may import the core's root (its top-level modules) and the
# capabilities of a lower rank, never one beside or above it (DESIGN.md, "Where things live").
CAPABILITY_RANK = {
    "classify": 1,
    "settings": 1,
    "retry": 2,
    "breaker": 3,
    "strategies": 3,
    "recovery": 4,
    "policy": 5,
}


def _capability(parts: tuple[str, ...]) -> str:
    """The capability of a path or module under core/ (``parts`` after "core"): root for its private top-level
    modules (their names start with an underscore; a capability's package name does not)."""
    return "root" if parts[0].startswith("_") else parts[0]


def _capability_violations(core: Path) -> list[str]:
    bad = []
    for path in core.rglob("*.py"):
        mine = _capability(path.relative_to(core).parts)
        rank = CAPABILITY_RANK.get(mine, 0)
        for mod in _imports(path):
            parts = tuple(mod.split("."))
            if parts[:2] != ("bounceback", "core") or len(parts) < 3:
                continue
            theirs = _capability(parts[2:])
            if theirs in {mine, "root"}:
                continue
            if CAPABILITY_RANK.get(theirs, 0) >= rank:
                bad.append(f"core/{path.relative_to(core)} ({mine}) imports {mod} ({theirs})")
    return bad


def test_core_capabilities_import_only_the_root_and_those_below() -> None:
    assert sorted(
        p.name for p in (PKG / "core").iterdir() if p.is_dir() and p.name != "__pycache__"
    ) == sorted(CAPABILITY_RANK)
    assert _capability_violations(PKG / "core") == []


def test_the_capability_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "retry").mkdir()
    (tmp_path / "retry" / "_x.py").write_text("from bounceback.core.policy._policy import Policy\n")
    (tmp_path / "_root.py").write_text("from bounceback.core.breaker import CircuitBreaker\n")
    assert len(_capability_violations(tmp_path)) == 2


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


def _runtime_imports(path: Path) -> set[str]:
    """The bounceback modules ``path`` imports when it runs (imports under ``if TYPE_CHECKING:`` excluded)."""
    tree = ast.parse(path.read_text(), str(path))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for n in ast.walk(node)}
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("bounceback")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("bounceback"):
            found.add(node.module or "")
    return found


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import circle in ``graph``, as the list of its modules, or [] when there is none."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for start in sorted(graph):
        if start not in state:
            found = visit(start)
            if found:
                return found
    return []


def test_no_module_of_the_package_imports_itself_in_a_circle() -> None:
    graph = {_module_name(p): _runtime_imports(p) for p in PKG.rglob("*.py")}
    # A package's __init__ re-exporting its modules is not a circle of the modules themselves.
    graph = {
        mod: {d for d in deps if d != mod and not mod.startswith(d + ".")} for mod, deps in graph.items()
    }
    assert _cycle(graph) == []


def test_the_circle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []


def _classes_built_of_mixins(core: Path = PKG / "core") -> set[str]:
    """Classes of core/ with more than one base class of the package's own (a class cut into slices)."""
    own: set[str] = set()
    trees = [ast.parse(p.read_text(), str(p)) for p in core.rglob("*.py")]
    for tree in trees:
        own |= {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}
    built = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                bases = [b.id for b in node.bases if isinstance(b, ast.Name) and b.id in own]
                if len(bases) > 1 or any(b.endswith("Mixin") for b in bases):
                    built.add(node.name)
    return built


def test_no_class_of_the_core_is_assembled_from_mixins() -> None:
    # The circuit breaker was the last one; it is composed of parts now (issue 20).
    assert _classes_built_of_mixins() == set()


def test_the_mixin_check_can_fail(tmp_path: Path) -> None:
    (tmp_path / "_x.py").write_text(
        "class _AMixin:\n    pass\nclass _B:\n    pass\nclass C(_AMixin):\n    pass\nclass D(_B, C):\n    pass\n"
    )
    assert _classes_built_of_mixins(tmp_path) == {"C", "D"}


# -- private attributes stay private to their class ------------------------------------------------------

# Names that start with an underscore and are public all the same: the sunder names of enum (``_value_``)
# and namedtuple's documented methods (``rec._asdict()`` in recovery/_tickets.py).
PUBLIC_UNDERSCORED = {"_asdict", "_fields", "_field_defaults", "_make", "_replace"}


def _module_names(tree: ast.Module) -> set[str]:
    """Names that ``tree`` binds to modules by its imports (``import time``, ``from pkg import _mod``)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.asname or a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                try:
                    spec = importlib.util.find_spec(f"{node.module}.{alias.name}")
                except (ImportError, ValueError):
                    spec = None
                if spec is not None:
                    names.add(alias.asname or alias.name)
    return names


def _is_private(name: str) -> bool:
    if not name.startswith("_") or name.startswith("__") or name in PUBLIC_UNDERSCORED:
        return False
    return not (len(name) > 2 and name.endswith("_"))  # enum's sunder names (``_value_``) are its API


def private_access(path: Path, rel: str) -> list[str]:
    """Every ``<expr>._name`` in ``path`` where ``<expr>`` is not ``self``, ``cls``, ``super()`` or a module:
    one object reaching into another's private attributes. As ``"<rel>: <expr>._name"``."""
    tree = ast.parse(path.read_text(), str(path))
    modules = _module_names(tree)
    found = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and (owner.id in {"self", "cls"} or owner.id in modules):
            continue
        if isinstance(owner, ast.Call) and isinstance(owner.func, ast.Name) and owner.func.id == "super":
            continue
        found.append(f"{rel}: {ast.unparse(owner)}.{node.attr}")
    return found


# No class of the core reaches into another's private attributes; an entry here would name its file.
PRIVATE_ACCESS_ALLOWED: set[str] = set()


def test_core_classes_do_not_reach_into_each_others_private_attributes() -> None:
    core = PKG / "core"
    found = set()
    for path in sorted(core.rglob("*.py")):
        found |= set(private_access(path, path.relative_to(core).as_posix()))
    assert sorted(found - PRIVATE_ACCESS_ALLOWED) == []
    # The ratchet only shrinks: an entry fixed must leave the list.
    assert sorted(PRIVATE_ACCESS_ALLOWED - found) == []


def test_the_private_access_check_can_fail(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "import time\n"
        "from bounceback.core import _tally\n"
        "class A:\n"
        "    def f(self, other):\n"
        "        self._mine = other._theirs\n"  # flagged: another object's private attribute
        "        self._part._inner()\n"  # flagged: a part's private method
        "        time._private_thing, _tally._x\n"  # modules: not flagged
        "        super()._hook(); other.__dict__; other._value_; other._asdict()\n"  # not private
    )
    assert private_access(sample, "sample.py") == ["sample.py: other._theirs", "sample.py: self._part._inner"]


def test_dashboard_views_import_nothing_of_the_server_but_the_snapshot_model() -> None:
    # Views are pure functions of a snapshot (DESIGN.md): the server, its security and its routes sit above.
    bad = []
    for path in (PKG / "web" / "views").rglob("*.py"):
        for mod in _imports(path):
            if mod.startswith("bounceback.web") and not mod.startswith(
                ("bounceback.web.views", "bounceback.web._model")
            ):
                bad.append(f"{path.name} imports {mod}")
    assert bad == []
