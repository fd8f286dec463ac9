"""Jobs: parse_job is the one way a payload becomes a job; errors are one line per field."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from runpoller.protocol import (
    API_ID_PATTERN,
    RUN_ID_PATTERN,
    AssistantsRunJob,
    ResponseJob,
    describe_validation_error,
    parse_job,
)


def test_parse_job_picks_the_kind() -> None:
    job = parse_job({"kind": "assistants_run", "thread_id": "thread_1", "run_id": "run_1"})
    assert isinstance(job, AssistantsRunJob) and job.run_key == "run_1"
    job = parse_job({"kind": "response", "response_id": "resp_1", "id": "conv:1.a"})
    assert isinstance(job, ResponseJob) and job.run_key == "conv:1.a"
    assert job.object_id == "resp_1"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (
            {"kind": "assistants_run", "thread_id": "../x", "run_id": "run_1"},
            "assistants_run.thread_id: String should match pattern",
        ),
        ({"kind": "nope"}, "job: Input tag 'nope' found using 'kind'"),
        ("not an object", "job: Input should be a valid dictionary"),
        ({"kind": "response"}, "response: Value error, give exactly one of response_id"),
    ],
)
def test_validation_errors_name_the_field_in_one_line(raw: object, expected: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_job(raw)
    text = describe_validation_error(caught.value)
    assert text.startswith(expected)
    assert "\n" not in text


def test_at_most_five_problems_are_described() -> None:
    raw = {"kind": "assistants_run", "thread_id": "t", "run_id": "r"}
    raw.update({name: 1 for name in "abcdefg"})
    with pytest.raises(ValidationError) as caught:
        parse_job(raw)
    assert describe_validation_error(caught.value).count(";") == 4


@pytest.mark.parametrize("bad", ["../x", "a/b", "a?b", "a%2F", "a b", "", "x" * 129])
def test_ids_that_reach_urls_and_keys_are_refused(bad: str) -> None:
    assert re.fullmatch(API_ID_PATTERN, bad) is None
    assert re.fullmatch(RUN_ID_PATTERN, bad) is None
    assert re.fullmatch(RUN_ID_PATTERN, "conv:1.a_b-c")
