"""`runpoller actions convert SPEC`: the converter on the command line.

Output goes to stdout (a summary, or the full JSON with `--json`); warnings and errors go to
stderr, one line each. Exit status 0 when at least one tool came out, 1 when none did.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TextIO

from runpoller_actions.convert import convert_text
from runpoller_actions.diagnostics import Diagnostic
from runpoller_actions.tools import FORMATS, Conversion, Format


def _read(spec: str, stdin: TextIO) -> str:
    if spec == "-":
        return stdin.read()
    return Path(spec).read_text(encoding="utf-8")


_ENCODINGS = {"application/x-www-form-urlencoded": "  form", "multipart/form-data": "  multipart"}


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _summary(result: Conversion, fmt: Format) -> str:
    """Human-readable table of the tools, for a quick look before using `--json`."""
    if not result.tools:
        return f"nothing converted: {_count(len(result.errors), 'error')} (on stderr)"
    head = result.title or "spec"
    if result.version:
        head += f" (OpenAPI {result.version})"
    lines = [f"{head}: {len(result.tools)} of {result.total} operations converted to {fmt} tools"]
    width = max((len(t.name) for t in result.tools), default=0)
    for tool in result.tools:
        op = result.operations[tool.name]
        flag = "  strict" if tool.strict else ""
        flag += _ENCODINGS.get(op.content_type or "", "")
        args = ", ".join(op.arguments) or "-"
        lines.append(f"  {tool.name:<{width}}  {op.method:<6} {op.server_url}{op.path}{flag}")
        lines.append(f"  {'':<{width}}  arguments: {args}")
    if result.warnings or result.errors:
        counts = f"{_count(len(result.warnings), 'warning')}, {_count(len(result.errors), 'error')}"
        lines.append(f"{counts} (on stderr)")
    return "\n".join(lines)


def _report(kind: str, items: list[Diagnostic], out: TextIO) -> None:
    for item in items:
        print(f"{kind}: {item.render()}", file=out)


def run_convert(args: argparse.Namespace) -> int:
    """Convert one spec; returns the exit status."""
    fmt: Format = args.format
    try:
        text = _read(args.spec, sys.stdin)
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        print(f"error: cannot read {args.spec}: {reason}", file=sys.stderr)
        return 1
    result = convert_text(text)
    _report("warning", result.warnings, sys.stderr)
    _report("error", result.errors, sys.stderr)
    if args.json:
        print(json.dumps(result.to_json(fmt), indent=2, ensure_ascii=False))
    else:
        print(_summary(result, fmt))
    return 0 if result.ok else 1


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `actions convert` to a parent parser's subcommands."""
    actions = subparsers.add_parser(
        "actions", help="OpenAPI actions: convert specs into function tools"
    )
    commands = actions.add_subparsers(dest="actions_command", required=True)
    convert = commands.add_parser(
        "convert",
        help="convert an OpenAPI 3.0/3.1 spec (JSON or YAML) into function tools",
        description="Convert an OpenAPI 3.0/3.1 spec into function tools plus the mapping "
        "needed to call each operation. Operations with 'x-strict: true' become strict tools.",
    )
    convert.add_argument("spec", metavar="SPEC", help="path to the spec, or - for stdin")
    convert.add_argument(
        "--format",
        choices=FORMATS,
        default="assistants",
        help="tool shape: Assistants API (nested 'function') or Responses API (flat)",
    )
    convert.add_argument(
        "--json",
        action="store_true",
        help="print {tools, operations, warnings, errors} as JSON instead of a summary",
    )
    convert.set_defaults(func=run_convert)


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point (tests, `python -m runpoller_actions.cli`)."""
    parser = argparse.ArgumentParser(prog="runpoller")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


if __name__ == "__main__":
    sys.exit(main())
