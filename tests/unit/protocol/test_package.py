"""runpoller.protocol re-exports the public names of its modules, so apps import one place."""

from __future__ import annotations

import ast
import importlib
import inspect

import pytest

import runpoller.protocol as protocol

MODULES = ["jobs", "events", "replies", "keys", "deadletter"]


def defined_names(module: str) -> set[str]:
    """The public names a module defines itself (classes, functions, constants, aliases)."""
    tree = ast.parse(inspect.getsource(importlib.import_module(f"runpoller.protocol.{module}")))
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if not name.startswith("_")}


def test_every_exported_name_exists() -> None:
    assert len(protocol.__all__) == len(set(protocol.__all__))
    for name in protocol.__all__:
        assert hasattr(protocol, name), name


@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_of_the_modules_is_exported(module: str) -> None:
    own = defined_names(module)
    assert own, module
    assert own <= set(protocol.__all__), own - set(protocol.__all__)
    mod = importlib.import_module(f"runpoller.protocol.{module}")
    for name in own:
        assert getattr(protocol, name) is getattr(mod, name)


def test_nothing_else_is_exported() -> None:
    assert set(protocol.__all__) == set().union(*(defined_names(m) for m in MODULES))
