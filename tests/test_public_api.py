from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import bounceback
import bounceback.errors

PKG = Path(bounceback.__file__).parent


def _modules() -> list[str]:
    names = []
    for info in pkgutil.walk_packages([str(PKG)], "bounceback."):
        names.append(info.name)
    return names


def test_facade_all_is_sorted_unique_and_resolves() -> None:
    names = bounceback.__all__
    assert names == sorted(names)
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(bounceback, name), name


def test_every_module_all_is_sorted_and_resolves() -> None:
    for modname in _modules():
        module = importlib.import_module(modname)
        names = getattr(module, "__all__", None)
        if names is None:
            continue
        assert list(names) == sorted(names), modname
        for name in names:
            assert hasattr(module, name), f"{modname}.{name}"


def test_every_error_is_exported_and_drawn_in_the_tree() -> None:
    doc = bounceback.errors.__doc__ or ""
    for name, obj in vars(bounceback.errors).items():
        if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == "bounceback.errors":
            assert name in bounceback.__all__, name
            assert name in doc, f"{name} missing from the tree in errors.py"


def test_public_names_have_docstrings() -> None:
    missing = []
    for name in bounceback.__all__:
        obj = getattr(bounceback, name)
        if (inspect.isclass(obj) or inspect.isfunction(obj)) and not inspect.getdoc(obj):
            missing.append(name)
    assert missing == []


def test_facade_has_nothing_but_imports_and_all() -> None:
    tree = ast.parse((PKG / "__init__.py").read_text())
    for node in tree.body:
        ok = isinstance(node, (ast.Import, ast.ImportFrom, ast.Expr))
        ok = ok or (
            isinstance(node, ast.Assign)
            and {t.id for t in node.targets if isinstance(t, ast.Name)} <= {"__all__", "__version__"}
        )
        assert ok, ast.dump(node)[:80]


def test_py_typed_is_shipped() -> None:
    assert (PKG / "py.typed").exists()


NAMESPACES = ("breakers", "classify", "events", "recovery", "settings", "strategies", "timing")


def test_the_facade_holds_at_most_fifty_names() -> None:
    # The names a program writes every day; everything else lives in a namespace of its capability.
    assert len(bounceback.__all__) <= 50, len(bounceback.__all__)


def test_each_namespace_is_documented_and_its_names_found_once() -> None:
    homes: dict[str, str] = {}
    readme = (PKG.parents[1] / "README.md").read_text()
    for ns in NAMESPACES:
        module = importlib.import_module(f"bounceback.{ns}")
        assert (module.__doc__ or "").strip(), f"bounceback.{ns} has no docstring"
        assert f"bounceback.{ns}" in readme, f"bounceback.{ns} is not named in the README"
        assert module.__all__, ns
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert inspect.getdoc(obj), f"bounceback.{ns}.{name} has no docstring"
            if name in bounceback.__all__:
                continue  # a facade shortcut to the same object
            assert name not in homes, f"{name} is in bounceback.{homes[name]} and bounceback.{ns}"
            homes[name] = ns


def test_a_facade_shortcut_is_the_object_of_its_namespace() -> None:
    for ns in NAMESPACES:
        module = importlib.import_module(f"bounceback.{ns}")
        for name in module.__all__:
            if name in bounceback.__all__:
                assert getattr(module, name) is getattr(bounceback, name), f"{ns}.{name}"
