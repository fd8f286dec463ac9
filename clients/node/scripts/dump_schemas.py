"""Print the protocol's JSON Schemas (the ones docs/protocol.md shows) as one JSON document.

Run by scripts/gen-types.mjs with the project's virtualenv; the TypeScript types of the Node
client are compiled from this output, so they come from the same pydantic models as the doc.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import TypeAdapter

from runpoller import protocol
from runpoller.protocol import (
    DeadLetter,
    Event,
    Job,
    ToolOutput,
    ToolOutputsReply,
)

NAMED: dict[str, Any] = {
    "Job": Job,
    "Event": Event,
    "ToolOutputsReply": ToolOutputsReply,
    "ToolOutput": ToolOutput,
    "DeadLetter": DeadLetter,
}


def main() -> int:
    defs: dict[str, Any] = {}
    for name, target in NAMED.items():
        schema = TypeAdapter(target).json_schema()
        defs.update(schema.pop("$defs", {}))
        schema["title"] = name
        defs[name] = schema
    document = {
        "constants": {
            "PROTOCOL_VERSION": protocol.PROTOCOL_VERSION,
            "FN_RUN": protocol.FN_RUN,
            "RUN_ID_PATTERN": protocol.RUN_ID_PATTERN,
            "API_ID_PATTERN": protocol.API_ID_PATTERN,
            "MAX_METADATA_KEYS": protocol.MAX_METADATA_KEYS,
        },
        "schema": {"title": "Protocol", "$defs": defs},
    }
    json.dump(document, sys.stdout, indent=2, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
