"""Backends map one API's objects onto the engine's neutral terms and perform its requests."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from runpoller.engine import Observation, Output, RunState, ToolFailure
from runpoller.protocol import AssistantsRunJob, ResponseJob


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a finished run produced, beyond its status."""

    output_text: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


def object_id_of(data: Mapping[str, Any]) -> str:
    """The id an API object carries, or ``""`` when it carries none: handed to the engine as
    is, which checks it against the one requested (never adopted unless the request created
    an object)."""
    value = data.get("id")
    return value if isinstance(value, str) else ""


class Progress(Protocol):
    """Where a streamed run's text goes as it is written (the driver's coalescing writer)."""

    def after(self, object_id: str) -> int:
        """The last sequence number of ``object_id``'s stream already taken (-1: none):
        where a stream resumes."""
        ...

    def text(self, object_id: str, sequence_number: int, delta: str) -> None:
        """Text event ``sequence_number`` of ``object_id``'s stream said ``delta``."""
        ...


class Backend(Protocol):
    """The I/O an engine decision may ask for (one method per :class:`~runpoller.engine.Op`),
    for one kind of job.

    ``memo`` is the run's own scratch space, kept by the driver for the run's lifetime: a
    backend may keep what it prepared for the run there (its poll request, an open stream),
    not per poll; :func:`close_memo` lets go of what it holds when the run ends. ``progress``
    takes a streamed run's text.
    """

    async def create(
        self, job: Any, api_key: str, memo: dict[str, Any] | None = None
    ) -> Observation:
        """Create the run's object from the job (asked for when the state has no object id)."""
        ...

    async def get(
        self,
        job: Any,
        state: RunState,
        api_key: str,
        memo: dict[str, Any],
        progress: Progress | None = None,
    ) -> Observation: ...

    async def cancel(self, job: Any, state: RunState, api_key: str) -> Observation: ...

    async def submit(
        self,
        job: Any,
        state: RunState,
        api_key: str,
        outputs: tuple[tuple[str, Output], ...],
        memo: dict[str, Any] | None = None,
    ) -> Observation: ...

    async def fetch_result(
        self, job: Any, state: RunState, api_key: str, last: Observation | None
    ) -> RunResult: ...


def output_text(output: Output) -> str:
    """What an API that takes outputs only is sent for one call: the output, or for a call
    the app says failed, ``{"error": "<its message>"}`` (JSON, for the model to read)."""
    if isinstance(output, ToolFailure):
        return json.dumps({"error": output.message})
    return output


async def close_memo(memo: dict[str, Any]) -> None:
    """Let go of what a backend holds open in a run's memo (a stream) when the run ends."""
    for value in list(memo.values()):
        close = getattr(value, "aclose", None)
        if close is not None:
            await close()
    memo.clear()


__all__ = [
    "AssistantsRunJob",
    "Backend",
    "Progress",
    "ResponseJob",
    "RunResult",
    "close_memo",
    "object_id_of",
    "output_text",
]
