"""Replies: how an app answers a ``requires_action`` event, and how the worker reads the answer.

The models below are both the documented contract (docs/protocol.md is generated from them)
and the worker's parser: ``parse_reply`` validates a replies-stream entry with
``ToolOutputsReply`` and its ``outputs`` with ``ToolOutput``. Parsing decides only whether
the entry is readable; whether it answers the pending calls (every id once, no unknown ids,
string outputs) is the engine's rule (``runpoller.engine.on_reply``), which names each
problem.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    model_validator,
)
from pydantic_core import ErrorDetails

from runpoller.engine import ToolFailure


class _ReplyTarget(BaseModel):
    # The run and round an entry answers: what the worker routes it by, readable even when the
    # rest is not. parse_reply validates the documented fields; an entry with other fields is
    # rejected naming them (the schema says additionalProperties: false).
    model_config = ConfigDict(extra="ignore")

    run_id: str
    round: int = Field(description="The `round` of the requires_action event answered.")


class ToolOutputsReply(_ReplyTarget):
    """The app's answer to a `requires_action` event: one entry on the replies stream.

    Stream entries are flat field/value pairs, so `outputs` travels as a JSON string holding
    an array of `ToolOutput` objects.
    """

    model_config = ConfigDict(extra="forbid")
    outputs: str = Field(
        description="JSON array of {tool_call_id, output} (or {tool_call_id, error}) objects."
    )


class ToolOutput(BaseModel):
    # The contract (what the schema documents): `tool_call_id` and exactly one of `output` (a
    # string) and `error`. Other keys are rejected (naming the item and key); an output of
    # any JSON type is kept so that the engine rejects the reply naming the call and the type
    # ("output for 'call_1' must be a string, got int"), with the reply's other problems.
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"oneOf": [{"required": ["output"]}, {"required": ["error"]}]},
    )
    tool_call_id: str
    output: Annotated[Any, WithJsonSchema({"type": "string"})] = Field(
        None, description="The call's output. Give this or `error`."
    )
    error: str | None = Field(
        None,
        description="Instead of `output`: the call failed, with this message. An agent turn "
        "sends it as `success: false`; Assistants and Responses runs take outputs only, and "
        'are sent `{"error": "<message>"}` (JSON) as the output. Approvals cannot fail.',
    )

    @model_validator(mode="after")
    def _one_answer(self) -> ToolOutput:
        if ("output" in self.model_fields_set) == (self.error is not None):
            raise ValueError("give exactly one of output and error")
        return self


_OUTPUTS = TypeAdapter(list[ToolOutput])  # validate_json: the text is the array


@dataclass(frozen=True, slots=True)
class ParsedReply:
    """A replies-stream entry as the worker understood it."""

    run_id: str
    round: int
    outputs: list[tuple[str, Any]] | None
    problem: str = ""
    entry_id: str = ""
    """The stream entry's id (what a reply status is kept under; a redelivery has the same)."""


def parse_reply(fields: Mapping[Any, Any], entry_id: str = "") -> ParsedReply | None:
    """Decode one entry of the replies stream; None when it names no run or round at all.

    A reply to a run and round that cannot be used as it is (outputs unreadable, a field or
    key the schema does not have) comes back with ``outputs=None`` and a one-line ``problem``
    naming the field (the worker reports it as ``reply_rejected``).
    """
    entry: dict[str, Any] = {}
    extra: list[str] = []
    for key, value in fields.items():
        name = key.decode("utf-8", "replace") if isinstance(key, bytes) else str(key)
        if name not in ToolOutputsReply.model_fields:
            extra.append(name)
            continue
        entry[name] = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    if not entry.get("run_id"):
        return None
    try:
        target = _ReplyTarget.model_validate(entry)
    except ValidationError:
        return None

    def unusable(problem: str) -> ParsedReply:
        return ParsedReply(target.run_id, target.round, None, problem, entry_id)

    if extra:
        names = ", ".join(repr(n) for n in sorted(extra)[:5])
        return unusable(f"unexpected field {names}: a reply has run_id, round and outputs only")
    if "outputs" not in entry:
        return unusable("the reply has no outputs field")
    try:
        reply = ToolOutputsReply.model_validate(entry)
        items = _OUTPUTS.validate_json(reply.outputs)
    except ValidationError as exc:
        return unusable(_problem(exc.errors()[0]))
    outputs = [
        (i.tool_call_id, ToolFailure(i.error) if i.error is not None else i.output) for i in items
    ]
    return ParsedReply(reply.run_id, reply.round, outputs, "", entry_id)


def _problem(error: ErrorDetails) -> str:
    """The first thing wrong with ``outputs``, in one line naming the place."""
    loc = error["loc"]
    if loc[:1] == ("outputs",):  # the entry's field itself (not text)
        return f"outputs: {error['msg']}"
    if error["type"] == "json_invalid":
        return f"outputs is not valid JSON: {error.get('ctx', {}).get('error', error['msg'])}"
    if not loc:
        return "outputs must be a JSON array"
    if error["type"] == "extra_forbidden":
        return (
            f"outputs[{loc[0]}] has unexpected key {loc[-1]!r}: each item has tool_call_id "
            "and output (or error) only"
        )
    if error["type"] == "model_type":
        return f"outputs[{loc[0]}] must be an object with tool_call_id and output"
    if loc[1:] == ("output",) or error["type"] == "value_error":
        return f"outputs[{loc[0]}] needs exactly one of output and error"
    return f"outputs[{loc[0]}] needs a string tool_call_id"
