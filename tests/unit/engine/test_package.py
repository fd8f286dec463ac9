"""The engine package as a whole: standard library only, and one public surface."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import pytest

from runpoller import engine

PACKAGE = Path(engine.__file__).parent
MODULES = sorted(PACKAGE.rglob("*.py"))
ALLOWED = set(sys.stdlib_module_names) | {"__future__"}


def outside_imports(path: Path, root: Path = PACKAGE) -> set[str]:
    """What ``path`` (a module under ``root``) imports from beyond the standard library and
    the package itself: top-level names, or ``..`` for a relative import that leaves it."""
    depth = len(path.relative_to(root).parts) - 1
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level > depth + 1:
                found.add("..")
            elif not node.level and node.module:
                found.add(node.module.split(".")[0])
    return found - ALLOWED


def test_the_package_has_modules_to_check() -> None:
    assert {p.name for p in MODULES} >= {"__init__.py", "model.py", "rules.py", "admission.py"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_the_engine_imports_nothing_beyond_the_standard_library(path: Path) -> None:
    outside = outside_imports(path)
    assert not outside, f"{path.name} imports {sorted(outside)}: the engine is stdlib-only"


@pytest.mark.parametrize(
    "line",
    [
        "import httpx",
        "import redis.asyncio",
        "from runpoller.protocol import Keys",
        "from runpoller import protocol",
        "from .. import protocol",
        "from ..http.api import ApiFailure",
    ],
)
def test_the_check_catches_imports_from_outside(tmp_path: Path, line: str) -> None:
    module = tmp_path / "engine" / "probe.py"
    module.parent.mkdir()
    module.write_text(f"from __future__ import annotations\nimport json\n{line}\n")
    assert outside_imports(module, tmp_path / "engine")


def test_the_check_allows_the_package_and_the_standard_library(tmp_path: Path) -> None:
    module = tmp_path / "engine" / "probe.py"
    module.parent.mkdir()
    module.write_text("import json\nfrom dataclasses import replace\nfrom .model import Op\n")
    assert outside_imports(module, tmp_path / "engine") == set()


def test_every_public_name_is_exported_from_the_package() -> None:
    defined = {
        name
        for module in (engine.model, engine.rules, engine.admission, engine.codes)
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and (getattr(value, "__module__", None) in (module.__name__, None) or name.isupper())
    } - {"annotations", "Any", "Mapping", "Sequence", "Callable"}
    assert defined <= set(engine.__all__), sorted(defined - set(engine.__all__))
    for name in engine.__all__:
        assert hasattr(engine, name), name
