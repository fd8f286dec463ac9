"""The schema subset, its validator, and the spec check applied to every reply."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from runpoller_fake import parse_script, spec
from runpoller_fake import script as script_module
from runpoller_fake.testing import reply_problems

REPO = Path(__file__).resolve().parents[3]
SPEC_FILE = REPO.parent / "shared" / "openai-openapi" / "openapi.yaml"
SCHEMAS_FILE = REPO / "worker" / "runpoller_fake" / "openai_schemas.json"

VALID_RUN: dict[str, Any] = {
    "id": "run_1",
    "object": "thread.run",
    "created_at": 1_800_000_000,
    "thread_id": "thread_1",
    "assistant_id": "asst_1",
    "status": "queued",
    "required_action": None,
    "last_error": None,
    "expires_at": 1_800_000_600,
    "started_at": None,
    "cancelled_at": None,
    "failed_at": None,
    "completed_at": None,
    "model": "gpt-4o",
    "instructions": "",
    "tools": [],
    "metadata": {},
    "usage": None,
    "incomplete_details": None,
    "max_prompt_tokens": None,
    "max_completion_tokens": None,
    "truncation_strategy": {"type": "auto", "last_messages": None},
    "tool_choice": "auto",
    "parallel_tool_calls": True,
    "response_format": "auto",
    "temperature": 1.0,
    "top_p": 1.0,
}


def _load_extractor() -> ModuleType:
    path = REPO / "scripts" / "extract_openai_schemas.py"
    module_spec = importlib.util.spec_from_file_location("extract_openai_schemas", path)
    assert module_spec is not None and module_spec.loader is not None
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def test_a_valid_run_has_no_problems() -> None:
    assert spec.validate("RunObject", VALID_RUN) == []


def test_nullable_fields_accept_null() -> None:
    # `allOf: [$ref, {nullable: true}]` and `$ref` + `nullable: true` in the spec.
    run = {**VALID_RUN, "truncation_strategy": None, "tool_choice": None, "response_format": None}
    assert spec.validate("RunObject", run) == []


def test_a_broken_run_is_reported_with_pointers() -> None:
    broken = copy.deepcopy(VALID_RUN)
    del broken["tools"]
    broken["status"] = "done"
    broken["usage"] = {"prompt_tokens": 1}
    broken["required_action"] = {"type": "submit_tool_outputs", "submit_tool_outputs": {}}
    problems = spec.validate("RunObject", broken)
    assert "/: 'tools' is a required property" in problems
    assert any(p.startswith("/status: 'done' is not one of") for p in problems)
    assert "/usage: 'completion_tokens' is a required property" in problems
    assert "/required_action/submit_tool_outputs: 'tool_calls' is a required property" in problems


def test_non_nullable_field_rejects_null() -> None:
    assert spec.validate("RunObject", {**VALID_RUN, "model": None}) == [
        "/model: None is not of type 'string'"
    ]


def test_request_schemas_forbid_unknown_fields() -> None:
    body = {"tool_outputs": [{"tool_call_id": "call_1", "output": 3}], "extra": True}
    assert spec.validate("SubmitToolOutputsRunRequest", body) == [
        "/: Additional properties are not allowed ('extra' was unexpected)",
        "/tool_outputs/0/output: 3 is not of type 'string'",
    ]


def test_sdk_style_create_response_body_is_valid() -> None:
    # A plain input message matches two overlapping `oneOf` branches in the spec.
    body = {
        "model": "gpt-4o",
        "background": True,
        "store": True,
        "input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call_output", "call_id": "call_1", "output": "{}"},
        ],
    }
    assert spec.validate("CreateResponse", body) == []


def test_a_union_member_is_faulted_by_the_branch_its_type_names() -> None:
    # Issue 21: a function tool without `strict` was refused as "'function' is not one of
    # ['file_search']" (the deepest error of a branch whose type tag did not even match).
    tool = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}
    body = {"model": "gpt-4o", "input": "hi", "tools": [tool]}
    assert spec.validate("CreateResponse", body) == ["/tools/0: 'strict' is a required property"]
    assert spec.validate("CreateResponse", {**body, "tools": [{**tool, "strict": False}]}) == []
    unknown = spec.validate("CreateResponse", {**body, "tools": [{**tool, "type": "nope"}]})
    assert unknown[0].startswith("/tools/0/type: 'nope' is not one of ['function', 'file_search',")


def test_empty_page_ids_are_the_only_tolerated_deviation() -> None:
    empty: dict[str, Any] = {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }
    path = "/v1/threads/thread_1/messages"
    assert reply_problems("GET", path, 200, empty) == []
    assert reply_problems("GET", path, 200, {**empty, "has_more": None}) == [
        "/has_more: None is not of type 'boolean'"
    ]


def test_unknown_schema_name_is_an_error() -> None:
    with pytest.raises(KeyError):
        spec.validate("NoSuchSchema", {})


def test_subset_records_its_source() -> None:
    source = spec.source()
    assert source["repository"] == "openai/openai-openapi"
    assert source["commit"] == "f85dbe223d40e1a31cba812ab2d755c7e98a92a3"
    assert "MIT" in source["license"]
    assert len(source["sha256"]) == 64
    for root in source["roots"]:
        assert root in spec.schema_names()


@pytest.mark.skipif(
    not SPEC_FILE.is_file(),
    reason=f"the OpenAPI spec is not checked out at {SPEC_FILE}; nothing to compare with",
)
def test_committed_subset_matches_the_spec() -> None:
    extractor = _load_extractor()
    assert extractor.render(SPEC_FILE) == SCHEMAS_FILE.read_text(encoding="utf-8"), (
        "worker/runpoller_fake/openai_schemas.json is stale: run scripts/extract_openai_schemas.py"
    )


def test_the_documented_script_example_is_valid() -> None:
    doc = script_module.__doc__ or ""
    example = doc.split("optional)::", 1)[1].split("\n\n- ", 1)[0]
    script = parse_script(example)
    assert [step.status for step in script.steps][2] == "requires_action"
    assert len(script.faults) == 3
