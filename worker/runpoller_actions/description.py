"""Tool descriptions: what the model reads to pick a tool, cut to a length the API accepts.

Limit: 1024 characters. The Assistants API rejects longer function descriptions; the
Responses API documents no limit, but one converted spec should serve both, and past a few
hundred characters extra text mostly costs tokens. Text is cut at a word boundary when there
is one in the last fifth and ends with `…`; the cut is reported as a warning.
"""

from __future__ import annotations

from typing import Any

DESCRIPTION_LIMIT = 1024
ELLIPSIS = "…"


def describe(summary: Any, description: Any, fallback: str) -> str:
    """`summary` and `description` together (once if one repeats the other), else `fallback`."""
    short = summary.strip() if isinstance(summary, str) else ""
    long = description.strip() if isinstance(description, str) else ""
    if short and long and not long.startswith(short):
        return f"{short}\n\n{long}"
    return long or short or fallback


def trim(text: str, limit: int = DESCRIPTION_LIMIT) -> str:
    """`text` if it fits, else a prefix ending at a word boundary plus `…`, within `limit`."""
    if len(text) <= limit:
        return text
    cut = text[: limit - len(ELLIPSIS)]
    space = max(cut.rfind(" "), cut.rfind("\n"))
    if space >= len(cut) * 4 // 5:
        cut = cut[:space]
    return cut.rstrip() + ELLIPSIS
