"""A stand-in for a structlog logger that keeps the lines a module writes, for assertions."""

from __future__ import annotations

from typing import Any


class Recorder:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def warning(self, event: str, **fields: Any) -> None:
        self.lines.append({"event": event, **fields})

    info = warning
