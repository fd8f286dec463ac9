"""The engine's vocabulary (engine.model): the durable state and what is worth persisting."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from runpoller import engine
from runpoller.engine import CancelReason, Observation, Op, Phase, RunState, Status

T0 = 1_000_000.0


def state(**kw: object) -> RunState:
    base = engine.new_state("run_1", now=T0, timeout_s=60, interval_s=2)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_state_round_trips_through_json() -> None:
    s = state(
        phase=Phase.CANCELLING,
        cancel_reason=CancelReason.TIMEOUT,
        last_status=Status.IN_PROGRESS,
        pending_calls=("call_1",),
        object_ids=("resp_1", "resp_2"),
    )
    assert RunState.from_json(s.to_json()) == s


def test_a_state_written_before_cancellable_existed_reads_as_cancellable() -> None:
    data = json.loads(state(cancellable=False).to_json())
    del data["cancellable"]
    assert RunState.from_json(json.dumps(data)).cancellable is True


def test_the_very_same_state_is_not_a_change() -> None:
    s = state()
    assert not s.durable_changed(s)


def test_the_failure_count_alone_is_not_worth_persisting() -> None:
    s = state()
    assert not s.durable_changed(replace(s, failures=3))
    assert not replace(s, failures=3).durable_changed(s)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("phase", Phase.CANCELLING),
        ("cancel_sent", True),
        ("last_status", Status.QUEUED),
        ("round", 1),
        ("object_ids", ("run_1", "run_2")),
        ("cancellable", False),
    ],
)
def test_every_other_field_is_durable(name: str, value: object) -> None:
    s = state()
    assert s.durable_changed(replace(s, **{name: value}))  # type: ignore[arg-type]


def test_an_equal_copy_is_not_a_change() -> None:
    s = state(last_status=Status.IN_PROGRESS)
    assert not s.durable_changed(RunState.from_json(s.to_json()))


def test_op_values_are_the_metrics_op_labels() -> None:
    assert [op.value for op in Op] == ["create", "get", "cancel", "submit", "fetch_result"]


def test_an_observation_is_cancellable_unless_its_backend_says_otherwise() -> None:
    assert Observation(Status.IN_PROGRESS, "in_progress", "run_1").cancellable
