"""What a verified delivery says: its event type and, for the events that wake a run, the
response it is about (``data.id``, the API object a worker's run follows)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runpoller.protocol import ApiId

# The events of a background response that has ended (the spec's WebhookResponse* schemas).
WakeType = Literal[
    "response.completed", "response.failed", "response.cancelled", "response.incomplete"
]
WAKE_EVENTS: frozenset[str] = frozenset(get_args(WakeType))

_LABEL = re.compile(r"\A[a-z0-9_.]{1,64}\Z")


class Malformed(Exception):
    """A verified body that is not JSON or not the event its type says (400)."""


class _Envelope(BaseModel):
    """What every event has (the other fields depend on the type)."""

    model_config = ConfigDict(extra="allow", strict=True)

    type: str = Field(min_length=1)


class _ResponseData(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    id: ApiId


class _ResponseEvent(BaseModel):
    """``WebhookResponseCompleted`` and its three siblings: the same shape, four types."""

    model_config = ConfigDict(extra="allow", strict=True)

    id: str = Field(min_length=1)
    type: WakeType
    created_at: int
    data: _ResponseData
    object: Literal["event"] = "event"


@dataclass(frozen=True)
class Event:
    type: str
    object_id: str | None  # set for the events that wake a run

    @property
    def label(self) -> str:
        """The type as a metric label: a type we do not know is counted under its own name
        while it looks like one (OpenAI's are few), else as ``other``."""
        return self.type if _LABEL.match(self.type) else "other"


def parse_event(body: bytes) -> Event:
    """The event in a verified body; :class:`Malformed` when it is not one."""
    try:
        envelope = _Envelope.model_validate_json(body)
        if envelope.type not in WAKE_EVENTS:
            return Event(envelope.type, None)
        event = _ResponseEvent.model_validate_json(body)
    except ValidationError as exc:
        raise Malformed(_describe(exc)) from None
    return Event(event.type, event.data.id)


def _describe(exc: ValidationError) -> str:
    """The first problems, each naming its field (never quoting the input)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'body'}: {err['msg']}"
        for err in exc.errors(include_input=False)[:3]
    )
