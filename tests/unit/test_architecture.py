"""docs/architecture.md's room table is the import rule: what each room may import.

Every module under worker/ is parsed (not imported); each import, at module level or inside
a function, must be the standard library, the module's own room, or a name its room's row
allows. A room missing from the table, or a row naming a room that does not exist, fails too.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SOURCES = REPO / "worker"
DOC = REPO / "docs" / "architecture.md"


def room_table() -> dict[str, set[str]]:
    """Room -> allowed imports, from the `| room | holds | may import |` table of the doc."""
    rooms: dict[str, set[str]] = {}
    in_table = False
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| room | holds | may import |"):
            in_table = True
            continue
        if in_table:
            if not line.startswith("|"):
                break
            cells = [c.strip() for c in line.strip("|").split("|")]
            if set(cells[0]) <= {"-"}:
                continue
            room = cells[0].strip("`")
            rooms[room] = set(re.findall(r"`([\w.]+)`", cells[-1]))
    return rooms


def module_name(path: Path) -> str:
    parts = path.relative_to(SOURCES).with_suffix("").parts
    return ".".join(p for p in parts if p != "__init__")


def room_of(module: str, rooms: set[str]) -> str | None:
    """The longest room name that is the module or a package containing it."""
    best = None
    for room in rooms:
        if (module == room or module.startswith(room + ".")) and (
            best is None or len(room) > len(best)
        ):
            best = room
    return best


def imports(path: Path) -> Iterator[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            if target == "runpoller" or (node.level and not node.module):
                # ``from runpoller import engine``: each name is a module of its own.
                for alias in node.names:
                    yield node.lineno, f"{target}.{alias.name}"
            else:
                yield node.lineno, target


def sources() -> list[Path]:
    return sorted(p for p in SOURCES.rglob("*.py") if "egg-info" not in str(p))


def test_every_room_imports_only_what_the_architecture_map_allows() -> None:
    table = room_table()
    assert table, f"no room table found in {DOC}"
    problems = []
    for path in sources():
        module = module_name(path)
        room = room_of(module, set(table))
        if room is None:
            problems.append(f"{module}: in no room of docs/architecture.md")
            continue
        for line, name in imports(path):
            top = name.split(".")[0]
            if top in sys.stdlib_module_names or top == "__future__":
                continue
            target = room_of(name, set(table)) if top.startswith("runpoller") else top
            if target == room or target in table[room]:
                continue
            if target is None:
                target = name
            problems.append(f"{path.relative_to(REPO)}:{line}: {room} imports {target}")
    assert not problems, "\n".join(problems)


def test_every_room_in_the_map_exists() -> None:
    modules = {module_name(p) for p in sources()}
    missing = [
        room
        for room in room_table()
        if not any(m == room or m.startswith(room + ".") for m in modules)
    ]
    assert not missing


def test_the_engine_may_import_nothing_but_the_standard_library() -> None:
    assert room_table()["runpoller.engine"] == set()


def test_the_worker_runtime_never_imports_the_packages_beside_it() -> None:
    table = room_table()
    beside = {"runpoller_fake", "runpoller_bench", "runpoller_actions", "runpoller_dev"}
    for room, allowed in table.items():
        if room.startswith("runpoller.") and room != "runpoller.cli":
            assert not allowed & beside, room
