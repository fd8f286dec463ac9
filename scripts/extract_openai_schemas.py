#!/usr/bin/env python3
"""Extract the OpenAPI schemas the fake OpenAI server is checked against.

The official spec is 3 MB; the fake needs a few dozen schemas. This copies the transitive
closure of ``ROOTS`` (every schema they ``$ref``), byte-for-byte in content, into
``worker/runpoller_fake/openai_schemas.json`` with a header naming the source, so the package
ships a small, reviewable file and a test can prove it still matches the spec.

Usage: ``python scripts/extract_openai_schemas.py [SPEC] [--output PATH] [--check]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SPEC = REPO.parent / "shared" / "openai-openapi" / "openapi.yaml"
DEFAULT_OUTPUT = REPO / "worker" / "runpoller_fake" / "openai_schemas.json"

SOURCE = {
    "repository": "openai/openai-openapi",
    "commit": "f85dbe223d40e1a31cba812ab2d755c7e98a92a3",
    "file": "openapi.yaml",
    "license": "MIT, Copyright (c) OpenAI",
    "note": "Subset: the transitive $ref closure of `roots`, copied unchanged. "
    "Regenerate with scripts/extract_openai_schemas.py.",
}

ROOTS = (
    "RunObject",
    "MessageObject",
    "ListMessagesResponse",
    "RunStepObject",
    "ListRunStepsResponse",
    "SubmitToolOutputsRunRequest",
    "CreateRunRequest",
    "CreateThreadRequest",
    "CreateThreadAndRunRequest",
    "ThreadObject",
    "Response",
    "CreateResponse",
    "FunctionToolCall",
    "FunctionCallOutputItemParam",
    "ErrorResponse",
    "ResponseStreamEvent",
)

_PREFIX = "#/components/schemas/"


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def closure(schemas: dict[str, Any], roots: tuple[str, ...] = ROOTS) -> dict[str, Any]:
    """Return the named schemas plus everything they reference, sorted by name."""
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        if name not in schemas:
            raise KeyError(f"schema {name!r} is referenced but not in the spec")
        seen.add(name)
        for ref in _refs(schemas[name]):
            if not ref.startswith(_PREFIX):
                raise ValueError(f"{name}: unsupported $ref {ref!r}")
            stack.append(ref.removeprefix(_PREFIX))
    return {name: schemas[name] for name in sorted(seen)}


def render(spec_path: Path) -> str:
    """The JSON text of the schema subset: one schema per line, so diffs stay readable."""
    raw = spec_path.read_bytes()
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    spec = yaml.load(raw, Loader=loader)  # noqa: S506 - a safe loader either way
    subset = closure(spec["components"]["schemas"])
    header = {
        **SOURCE,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "openapi": spec["openapi"],
        "info_version": spec["info"]["version"],
        "roots": list(ROOTS),
    }
    lines = [
        "{",
        f'"x-source": {json.dumps(header, sort_keys=True)},',
        '"components": {"schemas": {',
    ]
    items = [
        f"{json.dumps(name)}: {json.dumps(schema, sort_keys=True, ensure_ascii=False)}"
        for name, schema in subset.items()
    ]
    lines.append(",\n".join(items))
    lines.append("}}}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", nargs="?", type=Path, default=DEFAULT_SPEC)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 if the output file is not up to date"
    )
    args = parser.parse_args(argv)
    if not args.spec.is_file():
        print(f"spec not found: {args.spec}", file=sys.stderr)
        return 2
    text = render(args.spec)
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is out of date; re-run without --check", file=sys.stderr)
            return 1
        print(f"{args.output} is up to date")
        return 0
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
