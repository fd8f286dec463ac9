"""parse_reply reads a replies-stream entry through the documented models.

None when the entry names no run or round; otherwise a ParsedReply, with ``outputs=None`` and
a one-line problem naming the field when the outputs cannot be read. Whether the outputs
answer the pending calls (and are strings) is the engine's rule, not the parser's.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from runpoller.engine import ToolFailure
from runpoller.protocol import ParsedReply, ToolOutput, ToolOutputsReply, parse_reply


def entry(outputs: Any = None, **fields: Any) -> dict[bytes, bytes]:
    """A stream entry as redis-py returns it (bytes keys and values)."""
    raw: dict[str, Any] = {"run_id": "run_1", "round": "1", **fields}
    if outputs is not None:
        raw["outputs"] = outputs if isinstance(outputs, str) else json.dumps(outputs)
    return {k.encode(): str(v).encode() for k, v in raw.items() if v is not None}


def test_a_good_reply() -> None:
    reply = parse_reply(entry([{"tool_call_id": "call_1", "output": "sunny"}], round="2"))
    assert reply == ParsedReply("run_1", 2, [("call_1", "sunny")])


def test_str_keys_and_values_are_read_too() -> None:
    fields = {"run_id": "r", "round": "1", "outputs": '[{"tool_call_id": "a", "output": "x"}]'}
    assert parse_reply(fields) == ParsedReply("r", 1, [("a", "x")])


@pytest.mark.parametrize(
    "fields",
    [
        {b"round": b"1", b"outputs": b"[]"},
        {b"run_id": b"", b"round": b"1", b"outputs": b"[]"},
        {b"run_id": b"r", b"outputs": b"[]"},
        {b"run_id": b"r", b"round": b"first", b"outputs": b"[]"},
        {b"run_id": b"r", b"round": b"", b"outputs": b"[]"},
        {},
    ],
)
def test_an_entry_naming_no_run_or_round_is_none(fields: dict[bytes, bytes]) -> None:
    assert parse_reply(fields) is None


@pytest.mark.parametrize(
    ("outputs", "problem"),
    [
        (None, "the reply has no outputs field"),
        ("{oops", "outputs is not valid JSON: "),
        ("", "outputs is not valid JSON: "),
        ('{"tool_call_id": "a", "output": "x"}', "outputs must be a JSON array"),
        ("null", "outputs must be a JSON array"),
        (
            [{"tool_call_id": "a", "output": "x"}, "b"],
            "outputs[1] must be an object with tool_call_id and output",
        ),
        (
            [{"tool_call_id": "a", "output": "x", "type": "function_call_output"}],
            "outputs[0] has unexpected key 'type': each item has tool_call_id and output "
            "(or error) only",
        ),
        ([{"output": "x"}], "outputs[0] needs a string tool_call_id"),
        ([{"tool_call_id": 7, "output": "x"}], "outputs[0] needs a string tool_call_id"),
        ([{"tool_call_id": "a"}], "outputs[0] needs exactly one of output and error"),
        (
            [{"tool_call_id": "a", "output": "x", "error": "boom"}],
            "outputs[0] needs exactly one of output and error",
        ),
        # The first problem, in the order of the array, then of the fields.
        ([{"tool_call_id": "a"}, {"output": "x"}], "outputs[0] needs exactly one of output and"),
        ([{}, {"tool_call_id": "b"}], "outputs[0] needs a string tool_call_id"),
    ],
)
def test_unreadable_outputs_name_the_field(outputs: Any, problem: str) -> None:
    reply = parse_reply(entry(outputs))
    assert reply is not None
    assert (reply.run_id, reply.round, reply.outputs) == ("run_1", 1, None)
    assert reply.problem.startswith(problem)
    assert "\n" not in reply.problem


def test_an_empty_array_is_readable() -> None:
    # Missing answers are the engine's finding ("missing outputs for tool_call_id ...").
    assert parse_reply(entry([])) == ParsedReply("run_1", 1, [])


def test_outputs_of_any_json_type_are_kept_for_the_engine_to_reject() -> None:
    items = [
        {"tool_call_id": "a", "output": 5},
        {"tool_call_id": "b", "output": None},
        {"tool_call_id": "c", "output": {"temp_c": 21}},
    ]
    reply = parse_reply(entry(items))
    assert reply is not None and reply.problem == ""
    assert reply.outputs == [("a", 5), ("b", None), ("c", {"temp_c": 21})]


def test_an_entry_with_fields_the_schema_does_not_have_is_rejected_naming_them() -> None:
    # additionalProperties: false, as documented: a typo ("output" for "outputs") or an extra
    # field is not silently dropped.
    reply = parse_reply(entry([{"tool_call_id": "a", "output": "x"}], note="from the app"))
    assert reply == ParsedReply(
        "run_1",
        1,
        None,
        "unexpected field 'note': a reply has run_id, round and outputs only",
    )


def test_the_entry_id_travels_with_the_reply() -> None:
    reply = parse_reply(entry([{"tool_call_id": "a", "output": "x"}]), "1700000000000-3")
    assert reply == ParsedReply("run_1", 1, [("a", "x")], "", "1700000000000-3")


def test_invalid_utf8_never_raises() -> None:
    reply = parse_reply({b"run_id": b"r\xff", b"round": b"1", b"outputs": b"[\xff]"})
    assert reply is not None and reply.run_id == "r\ufffd"
    assert reply.problem.startswith("outputs is not valid JSON")


def test_the_parser_reads_the_fields_the_docs_document() -> None:
    # One definition: the documented entry fields are the ones parse_reply reads.
    assert list(ToolOutputsReply.model_fields) == ["run_id", "round", "outputs"]
    schema = ToolOutputsReply.model_json_schema()
    assert schema["required"] == ["run_id", "round", "outputs"]
    assert schema["additionalProperties"] is False
    # The contract documents string outputs and the call id with one of output and error,
    # though the parser is lenient about the output's type.
    item = ToolOutput.model_json_schema()
    assert item["properties"]["output"]["type"] == "string"
    assert item["properties"]["error"]["anyOf"][0] == {"type": "string"}
    assert item["required"] == ["tool_call_id"]
    assert item["oneOf"] == [{"required": ["output"]}, {"required": ["error"]}]
    assert item["additionalProperties"] is False


def test_an_error_answers_a_call_as_failed() -> None:
    reply = parse_reply(entry([{"tool_call_id": "a", "error": "no such city"}]))
    assert reply is not None and reply.outputs == [("a", ToolFailure("no such city"))]
