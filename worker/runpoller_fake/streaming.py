"""The server-sent events of a streamed background response, computed from its lifecycle.

A response created with ``stream: true`` keeps a :class:`StreamLog`: every event the real API
would send (``ResponseStreamEvent`` in the spec), each with its ``sequence_number`` (0, 1, …)
and the instant it happened. Nothing here does I/O or keeps a timer: the lifecycle tells the
log when the response enters a status (``entered``), and ``release(now)`` lets out the text
deltas due by ``now``. Text is "generated" while the response is ``in_progress``: the words
of the message(s) its next, terminal step will write are spread evenly over that step, so a
longer step streams more slowly, as a slower model would.

A response that is cancelled sends nothing more: the spec has no ``response.cancelled``
stream event, so the stream just ends; a client learns the status by asking for it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# Words with their trailing space: what one delta carries.
_WORD = re.compile(r"\S+\s*|\s+")
END_EVENTS = {
    "completed": "response.completed",
    "failed": "response.failed",
    "incomplete": "response.incomplete",
}


def chunks(text: str) -> list[str]:
    """The deltas ``text`` streams as (joined, they give it back exactly)."""
    return _WORD.findall(text) or [text]


@dataclass(slots=True)
class PlannedText:
    """One output message whose text streams before the response ends."""

    item_id: str
    output_index: int
    text: str
    sent: str = ""


@dataclass(slots=True)
class StreamLog:
    """The events so far (index = sequence number) and the deltas still to come."""

    snapshot: Callable[[], dict[str, Any]]
    """The response as GET would show it now (the lifecycle's ``response_object``)."""
    events: list[dict[str, Any]] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    pending: list[tuple[float, PlannedText, str]] = field(default_factory=list)
    opened: set[str] = field(default_factory=set)
    ended: bool = False
    """No event will follow (the response ended, or was cancelled)."""

    @property
    def last_sequence(self) -> int:
        return len(self.events) - 1

    def next_due(self) -> float | None:
        """When the next delta is due (None: none is planned)."""
        return self.pending[0][0] if self.pending else None

    def _emit(self, t: float, event: dict[str, Any]) -> None:
        event["sequence_number"] = len(self.events)
        self.events.append(event)
        self.times.append(t)

    def release(self, now: float) -> None:
        """Send every planned delta due by ``now``, in order."""
        while self.pending and self.pending[0][0] <= now:
            t, text, delta = self.pending.pop(0)
            if text.item_id not in self.opened:
                self.opened.add(text.item_id)
                self._emit(t, _item_added(text))
                self._emit(t, _part_added(text))
            text.sent += delta
            self._emit(
                t,
                {
                    "type": "response.output_text.delta",
                    "item_id": text.item_id,
                    "output_index": text.output_index,
                    "content_index": 0,
                    "delta": delta,
                    "logprobs": [],
                },
            )

    def plan(self, texts: list[PlannedText], start: float, duration: float) -> None:
        """Spread the words of ``texts`` evenly over ``[start, start + duration]``."""
        words = [(text, word) for text in texts for word in chunks(text.text)]
        step = duration / (len(words) + 1)
        self.pending = [
            (start + step * (i + 1), text, word) for i, (text, word) in enumerate(words)
        ]

    def entered(self, status: str, t: float, *, first: bool) -> None:
        """The response entered ``status`` at ``t`` (``first``: it was just created)."""
        self.release(t)
        if first:
            self._emit(t, {"type": "response.created", "response": self.snapshot()})
        if status in ("queued", "in_progress"):
            self._emit(t, {"type": f"response.{status}", "response": self.snapshot()})
            return
        self.pending.clear()
        self.ended = True
        end = END_EVENTS.get(status)
        if end is None:
            return  # cancelled: nothing more is sent
        response = self.snapshot()
        for index, item in enumerate(response["output"]):
            self._close_item(t, index, item)
        self._emit(t, {"type": end, "response": response})

    def _close_item(self, t: float, index: int, item: dict[str, Any]) -> None:
        """The events that finish one output item (and open it, if no delta did)."""
        item_id = item["id"]
        if item["type"] == "function_call":
            self._emit(
                t,
                {
                    "type": "response.output_item.added",
                    "output_index": index,
                    "item": {**item, "status": "in_progress", "arguments": ""},
                },
            )
            for name, extra in (
                ("delta", {"delta": item["arguments"]}),
                ("done", {"arguments": item["arguments"], "name": item["name"]}),
            ):
                self._emit(
                    t,
                    {
                        "type": f"response.function_call_arguments.{name}",
                        "item_id": item_id,
                        "output_index": index,
                        **extra,
                    },
                )
            self._emit(
                t, {"type": "response.output_item.done", "output_index": index, "item": item}
            )
            return
        part = item["content"][0]
        if item_id not in self.opened:
            planned = PlannedText(item_id, index, part["text"])
            self.opened.add(item_id)
            self._emit(t, _item_added(planned))
            self._emit(t, _part_added(planned))
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        self._emit(
            t, {"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []}
        )
        self._emit(t, {"type": "response.content_part.done", **where, "part": part})
        self._emit(t, {"type": "response.output_item.done", "output_index": index, "item": item})


def _item_added(text: PlannedText) -> dict[str, Any]:
    return {
        "type": "response.output_item.added",
        "output_index": text.output_index,
        "item": {
            "id": text.item_id,
            "type": "message",
            "status": "in_progress",
            "role": "assistant",
            "content": [],
        },
    }


def _part_added(text: PlannedText) -> dict[str, Any]:
    return {
        "type": "response.content_part.added",
        "item_id": text.item_id,
        "output_index": text.output_index,
        "content_index": 0,
        "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
    }
