"""Real-world specs converted end to end and compared with committed golden files.

Regenerate after an intended change with `UPDATE_GOLDENS=1 pytest tests/unit/actions/test_golden.py`
and review the diff. Each spec is converted three ways: as written in Assistants shape, as
written in Responses shape, and with strict mode forced on every operation (to exercise the
strict rewrite on real schemas).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from runpoller_actions import convert_text, validate_strict

HERE = Path(__file__).parent
SPECS = sorted(p for p in (HERE / "specs").iterdir() if p.suffix in (".json", ".yaml"))
VARIANTS = {
    "assistants": ("assistants", False),
    "responses": ("responses", False),
    "strict": ("assistants", True),
}


def golden_path(spec: Path, variant: str) -> Path:
    return HERE / "golden" / f"{spec.stem}.{variant}.json"


def render(spec: Path, variant: str) -> dict[str, Any]:
    fmt, force_strict = VARIANTS[variant]
    result = convert_text(spec.read_text(encoding="utf-8"), default_strict=force_strict)
    for tool in result.tools:
        if tool.strict:
            assert validate_strict(tool.parameters) == [], tool.name
    return result.to_json(fmt)  # type: ignore[arg-type]


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.name)
def test_golden(spec: Path, variant: str) -> None:
    actual = render(spec, variant)
    path = golden_path(spec, variant)
    if os.environ.get("UPDATE_GOLDENS") == "1":
        path.write_text(json.dumps(actual, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    assert path.exists(), f"no golden file {path.name}; run with UPDATE_GOLDENS=1"
    expected = json.loads(path.read_text(encoding="utf-8"))
    assert actual == expected, f"{path.name} differs; if intended, run with UPDATE_GOLDENS=1"


def test_every_spec_has_a_source_note() -> None:
    readme = (HERE / "specs" / "README.md").read_text(encoding="utf-8")
    for spec in SPECS:
        assert spec.name in readme, f"{spec.name} has no source/licence entry in specs/README.md"


def test_no_stale_golden_files() -> None:
    expected = {golden_path(s, v).name for s in SPECS for v in VARIANTS}
    assert {p.name for p in (HERE / "golden").glob("*.json")} <= expected
