"""docs/actions.md shows real output: its strict before/after example is checked here."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runpoller_actions import convert_document

DOCS = Path(__file__).parents[3] / "docs" / "actions.md"

EXAMPLE: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Orders", "version": "1"},
    "servers": [{"url": "https://shop.example.com/api"}],
    "paths": {
        "/orders/{orderId}/notes": {
            "post": {
                "operationId": "add order note",
                "summary": "Add a note to an order",
                "parameters": [
                    {
                        "name": "orderId",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "format": "int64"},
                    },
                    {
                        "name": "notify",
                        "in": "query",
                        "schema": {"type": "boolean", "default": False},
                    },
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["text"],
                                "properties": {
                                    "text": {"type": "string", "minLength": 1, "maxLength": 500},
                                    "author": {
                                        "type": "object",
                                        "properties": {
                                            "name": {"type": "string"},
                                            "email": {
                                                "type": "string",
                                                "format": "email",
                                                "nullable": True,
                                            },
                                        },
                                    },
                                    "tags": {
                                        "type": "array",
                                        "items": {"type": "string"},
                                        "uniqueItems": True,
                                    },
                                    "metadata": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                },
                            }
                        }
                    },
                },
            }
        }
    },
}


def section_blocks(kind: str) -> list[str]:
    """Fenced code blocks with info string `kind` in the "Before and after" section."""
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("### Before and after", 1)[1].split("\n### ", 1)[0]
    blocks: list[str] = []
    current: list[str] | None = None
    info = ""
    for line in section.splitlines():
        if line.startswith("```") and current is None:
            current, info = [], line[3:].strip()
        elif line.startswith("```") and current is not None:
            if info == kind:
                blocks.append("\n".join(current))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def converted(strict: bool) -> Any:
    operation = EXAMPLE["paths"]["/orders/{orderId}/notes"]["post"]
    doc = {
        **EXAMPLE,
        "paths": {"/orders/{orderId}/notes": {"post": {**operation, "x-strict": strict}}},
    }
    return convert_document(doc)


def test_before_and_after_match_the_converter() -> None:
    before, after = (json.loads(block) for block in section_blocks("json"))
    assert converted(strict=False).tools[0].parameters == before
    assert converted(strict=True).tools[0].parameters == after


def test_listed_warnings_match_the_converter() -> None:
    (listed,) = section_blocks("")
    actual = [f"{w.pointer}: {w.message}" for w in converted(strict=True).warnings if w.pointer]
    assert listed.strip().splitlines() == actual
