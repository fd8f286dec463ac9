from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from runpoller_actions import validate_strict
from runpoller_actions.cli import main, register

SPECS = Path(__file__).parent / "specs"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_librechat_docs_example_as_printed_gives_line_and_column(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(capsys, "actions", "convert", str(SPECS / "librechat-mathjs.broken.json"))
    assert code == 1
    assert err == "error: invalid JSON at line 21, column 22: Expecting ',' delimiter\n"
    assert out == "nothing converted: 1 error (on stderr)\n"
    assert "Traceback" not in err


def test_librechat_docs_example_repaired_gives_a_valid_strict_tool(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(
        capsys, "actions", "convert", str(SPECS / "librechat-mathjs.json"), "--json"
    )
    assert code == 0
    assert err == ""
    data = json.loads(out)
    assert data["errors"] == [] and data["warnings"] == []
    (tool,) = data["tools"]
    assert tool == {
        "type": "function",
        "function": {
            "name": "math",
            "description": "Evaluate a mathematical expression\n\n"
            "Sends a mathematical expression in the request body to evaluate.",
            "parameters": {
                "type": "object",
                "properties": {
                    "expr": {
                        "type": "string",
                        "description": "The mathematical expression to evaluate (e.g., `2+3`).",
                    }
                },
                "required": ["expr"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
    assert validate_strict(tool["function"]["parameters"]) == []
    assert data["operations"]["math"]["url"] == "https://api.mathjs.org/v4/"


def test_responses_format_is_flat(capsys: pytest.CaptureFixture[str]) -> None:
    spec = str(SPECS / "librechat-mathjs.json")
    code, out, _ = run(capsys, "actions", "convert", spec, "--json", "--format", "responses")
    assert code == 0
    (tool,) = json.loads(out)["tools"]
    assert list(tool) == ["type", "name", "description", "parameters", "strict"]


def test_summary_lists_tools_and_counts(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "actions", "convert", str(SPECS / "uspto.yaml"))
    assert code == 0
    assert out.splitlines()[0] == (
        "USPTO Data Set API (OpenAPI 3.0.1): 3 of 3 operations converted to assistants tools"
    )
    assert "list-searchable-fields" in out
    assert "arguments: dataset, version" in out
    (search,) = [line for line in out.splitlines() if "perform-search" in line]
    assert search.endswith("/{dataset}/{version}/records  form")
    assert err == ""


def test_stdin(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    text = (SPECS / "museum.yaml").read_text(encoding="utf-8")
    monkeypatch.setattr("sys.stdin", io.StringIO(text))
    code, out, _ = run(capsys, "actions", "convert", "-", "--json")
    assert code == 0
    assert len(json.loads(out)["tools"]) == 8


def test_swagger_2_exits_non_zero(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(
        capsys, "actions", "convert", str(SPECS / "swagger2-petstore-minimal.yaml"), "--json"
    )
    assert code == 1
    assert json.loads(out)["tools"] == []
    assert "Swagger 2.0" in err


def test_missing_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, err = run(capsys, "actions", "convert", str(tmp_path / "nope.yaml"))
    assert code == 1
    assert out == ""
    assert err == f"error: cannot read {tmp_path / 'nope.yaml'}: No such file or directory\n"


def test_binary_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = tmp_path / "spec.bin"
    path.write_bytes(b"\xff\xfe\x00junk")
    code, _, err = run(capsys, "actions", "convert", str(path))
    assert code == 1
    assert err.startswith(f"error: cannot read {path}: ")


def test_bad_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["actions", "convert", "x.yaml", "--format", "chat"])
    assert info.value.code == 2
    assert "invalid choice: 'chat'" in capsys.readouterr().err


def test_register_plugs_into_another_parser() -> None:
    parser = argparse.ArgumentParser(prog="runpoller")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("config")
    register(sub)
    args = parser.parse_args(["actions", "convert", "-", "--format", "responses"])
    assert args.spec == "-"
    assert args.format == "responses"
    assert args.json is False
    assert callable(args.func)
