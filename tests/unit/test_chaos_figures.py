"""The chaos figures (tests/chaos/figures.py) on synthetic logs and streams; no Redis needed.

The last tests check the fake server's request log (``GET /_fake/log``) the figures read.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from runpoller_fake import FakeState, start_fake_server
from tests.chaos import figures as fig

T0 = 1_700_000_000.0


def ev(type_: str, t: float, **data: Any) -> dict[str, Any]:
    return {"type": type_, "ts": int((T0 + t) * 1000), **data}


def req(endpoint: str, t: float, status: Any = 200, **fields: Any) -> dict[str, Any]:
    return {"endpoint": endpoint, "time": T0 + t, "status": status, **fields}


# ---------------------------------------------------------------- percentiles


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert fig.percentile(values, 0.5) == 50
    assert fig.percentile(values, 0.95) == 95
    assert fig.percentile(values, 0.99) == 99
    assert fig.percentile(values, 1.0) == 100
    assert fig.percentile([3.0], 0.95) == 3.0
    assert fig.percentile([5.0, 1.0], 0.5) == 1.0
    assert fig.percentile([], 0.5) is None


# ---------------------------------------------------------------- events


def test_lost_runs_have_no_final_or_a_final_past_the_bound() -> None:
    streams = {
        "ok": [ev("accepted", 0), ev("final", 5)],
        "none": [ev("accepted", 0), ev("status", 1)],
        "empty": [],
        "late": [ev("accepted", 0), ev("final", 30)],
    }
    assert fig.lost_runs(streams) == ["empty", "none"]
    assert fig.lost_runs(streams, final_by=T0 + 10) == ["empty", "late", "none"]


def test_duplicate_finals_count_finals_beyond_the_first() -> None:
    streams = {
        "a": [ev("final", 1)],
        "b": [ev("final", 1), ev("final", 2), ev("final", 3)],
        "c": [ev("final", 1), ev("final", 2)],
        "d": [],
    }
    assert fig.duplicate_finals(streams) == 3


def test_intake_lag_runs_from_enqueue_to_accepted() -> None:
    streams = {
        "a": [ev("accepted", 0.25), ev("final", 3)],
        "b": [ev("accepted", 2.0)],
        "c": [],  # never accepted: no lag (it is lost, counted there)
    }
    lags = fig.intake_lags(streams, {"a": T0, "b": T0 + 0.5, "c": T0})
    assert lags == pytest.approx([0.25, 1.5])


def test_late_finals_from_the_accepted_deadline_or_a_given_one() -> None:
    deadline_ms = int((T0 + 10) * 1000)
    streams = {
        "early": [ev("accepted", 0, deadline=deadline_ms), ev("final", 8)],
        "late": [ev("accepted", 0, deadline=deadline_ms), ev("final", 14.5)],
        "no_accepted": [ev("final", 20)],
        "given": [ev("final", 20)],
        "open": [ev("accepted", 0, deadline=deadline_ms)],
    }
    late = fig.late_finals(streams, grace_s=3, deadlines={"given": T0 + 10})
    assert late == pytest.approx({"early": -5.0, "late": 1.5, "given": 7.0})


def test_resume_from_events_is_the_first_event_after_the_kill() -> None:
    streams = {
        "a": [ev("accepted", 0), ev("status", 1), ev("status", 6.5), ev("final", 9)],
        "b": [ev("accepted", 0), ev("final", 7)],
        "c": [ev("accepted", 0)],  # nothing after the kill
        "other": [ev("status", 5.5)],  # not the victim's
    }
    assert fig.resume_from_events(streams, ["a", "b", "c"], killed_at=T0 + 5) == pytest.approx(
        {"a": 1.5, "b": 2.0}
    )


def test_object_ids_follow_a_responses_run_through_its_continuations() -> None:
    events = [
        ev("accepted", 0),
        ev("status", 1, object_id="resp_1"),
        ev("requires_action", 2, object_id="resp_1"),
        ev("status", 3, object_id="resp_2"),
    ]
    assert fig.object_ids("resp_1", events) == {"resp_1", "resp_2"}


# ---------------------------------------------------------------- the request log


def test_resume_from_api_is_the_first_request_for_the_run_after_the_kill() -> None:
    log = [
        req("get_run", 4.0, object_id="run_a"),  # before the kill: the victim's own
        req("get_run", 7.0, object_id="run_a"),
        req("get_run", 6.0, object_id="run_a"),  # the log order is not the time order
        req("create_response", 8.0, object_id="resp_3", previous_response_id="resp_2"),
        req("get_run", 6.5, object_id="run_x"),
    ]
    objects = {"run_a": {"run_a"}, "resp_1": {"resp_1", "resp_2"}, "run_c": {"run_c"}}
    assert fig.resume_from_api(log, objects, killed_at=T0 + 5) == pytest.approx(
        {"run_a": 1.0, "resp_1": 3.0}
    )
    # A stopped worker continued at T0 + 7.5 may send the later ones itself: not counted.
    assert fig.resume_from_api(log, objects, killed_at=T0 + 5, before=T0 + 7.5) == pytest.approx(
        {"run_a": 1.0}
    )


def test_a_submit_retried_after_a_503_or_a_drop_is_no_duplicate() -> None:
    log = [
        req("submit_tool_outputs", 1, 503, object_id="run_a", tool_call_ids=["c1"]),
        req("submit_tool_outputs", 2, "dropped", object_id="run_a", tool_call_ids=["c1"]),
        req("submit_tool_outputs", 3, 429, object_id="run_a", tool_call_ids=["c1"]),
        req("submit_tool_outputs", 4, 200, object_id="run_a", tool_call_ids=["c1"]),
        req("submit_tool_outputs", 5, None, object_id="run_a", tool_call_ids=["c1"]),  # in flight
    ]
    assert fig.duplicate_submits(log) == 0


def test_submits_answered_twice_in_one_round_are_duplicates() -> None:
    log = [
        # round 1 of run_a: the owner's 200, then a zombie's (refused with a 400: still sent)
        req("submit_tool_outputs", 1, 200, object_id="run_a", tool_call_ids=["c1", "c2"]),
        req("submit_tool_outputs", 2, 400, object_id="run_a", tool_call_ids=["c2", "c1"]),
        # round 2 of run_a: one submit, no duplicate
        req("submit_tool_outputs", 5, 200, object_id="run_a", tool_call_ids=["c3"]),
        # a submit without ids (issue 14 item 1) belongs to the run's previous round
        req("submit_tool_outputs", 6, 400, object_id="run_a", tool_call_ids=[]),
        # the same ids on another run are another side effect
        req("submit_tool_outputs", 2, 200, object_id="run_b", tool_call_ids=["c1"]),
        req("get_run", 3, 200, object_id="run_a"),
    ]
    assert fig.duplicate_submits(log) == 2


def test_continuations_are_counted_per_previous_response_id() -> None:
    log = [
        req("create_response", 1, 200, object_id="resp_2", previous_response_id="resp_1"),
        req("create_response", 1.1, 200, object_id="resp_9", previous_response_id="resp_1"),
        req("create_response", 1.2, 200, object_id="resp_8", previous_response_id="resp_1"),
        req("create_response", 2, 503, previous_response_id="resp_2"),
        req("create_response", 3, 200, object_id="resp_3", previous_response_id="resp_2"),
        req("create_response", 0, 200, object_id="resp_1"),  # a create, not a continuation
        req("create_response", 0, 200, object_id="resp_7"),
    ]
    assert fig.duplicate_continuations(log) == 2


def test_a_cancel_counts_twice_only_when_the_api_answered_the_first() -> None:
    log = [
        req("cancel_run", 1, 500, object_id="run_a"),
        req("cancel_run", 2, 200, object_id="run_a"),
        req("cancel_run", 1, 200, object_id="run_b"),
        req("cancel_run", 2, 400, object_id="run_b"),  # "Cannot cancel run with status ..."
        req("cancel_run", 3, 200, object_id="run_b"),
        req("cancel_response", 1, 200, object_id="resp_1"),
    ]
    assert fig.duplicate_cancels(log) == 2


def test_answered_means_the_api_acted_or_refused_for_good() -> None:
    assert fig.answered(200) and fig.answered(400) and fig.answered(404) and fig.answered(409)
    for status in (408, 429, 500, 502, 503, "dropped", "aborted", None, True):
        assert not fig.answered(status)


# ---------------------------------------------------------------- measure and report


def kill_attack() -> tuple[dict[str, list[dict[str, Any]]], list[dict[str, Any]]]:
    deadline = int((T0 + 60) * 1000)
    streams = {
        f"run_{i}": [ev("accepted", 0.1 * i, deadline=deadline), ev("final", 20 + i)]
        for i in range(10)
    }
    streams["run_lost"] = [ev("accepted", 0.5, deadline=deadline)]
    log = [req("get_run", 5 + 1.0 + 0.1 * i, object_id=f"run_{i}") for i in range(5)]
    log.append(req("cancel_run", 3, 200, object_id="run_1"))
    log.append(req("cancel_run", 4, 200, object_id="run_1"))
    return streams, log


def test_measure_puts_the_figures_together() -> None:
    streams, log = kill_attack()
    figures = fig.measure(
        streams,
        log,
        side_effects=("submits", "cancels"),
        killed_at=T0 + 5,
        victim_runs=[f"run_{i}" for i in range(6)],
        ttl_s=1.5,
        enqueued_at={rid: T0 for rid in streams},
        grace_s=30,
    )
    assert (figures.runs, figures.lost, figures.duplicate_finals) == (11, 1, 0)
    assert figures.duplicate_submits == 0
    assert figures.duplicate_cancels == 1
    assert figures.duplicate_continuations is None  # not measured
    assert figures.resume_source == "api" and figures.resumed == 5
    assert figures.not_resumed == 1  # run_5 saw no request after the kill
    assert figures.resume_p50_s == pytest.approx(1.2)
    assert figures.resume_max_s == pytest.approx(1.4)
    assert figures.intake_lag_p99_s == pytest.approx(0.9)
    assert figures.late_final_max_s == pytest.approx(29 - 90)
    assert figures.late_finals == 0
    verdicts = figures.verdicts()
    assert verdicts == {
        "lost": False,
        "duplicate_finals": True,
        "duplicate_submits": True,
        "duplicate_cancels": False,
        "resume_p95": True,
        "resume_max": False,  # run_5 never resumed
        "late_final": True,
    }, "the intake target applies to paced runs only"
    assert not figures.passed()


def test_resume_targets_add_to_the_ttl() -> None:
    figures = fig.Figures(runs=1, lost=0, duplicate_finals=0, ttl_s=1.5)
    figures.resume_p95_s, figures.resume_max_s = 3.5, 6.5
    assert figures.verdicts()["resume_p95"] and figures.verdicts()["resume_max"]
    figures.resume_p95_s, figures.resume_max_s = 3.6, 6.6
    assert not figures.verdicts()["resume_p95"] and not figures.verdicts()["resume_max"]


def test_runs_not_resumed_in_the_window_count_as_the_window() -> None:
    streams, log = kill_attack()
    figures = fig.measure(
        streams,
        log,
        killed_at=T0 + 5,
        victim_runs=["run_0", "run_1", "run_9"],
        resume_before=T0 + 8,
        ttl_s=1.5,
    )
    assert (figures.resumed, figures.not_resumed) == (2, 1)
    assert figures.resume_max_s == pytest.approx(3.0)
    assert figures.verdicts()["resume_max"] is False


def test_a_run_that_ended_before_the_kill_needs_no_resume() -> None:
    streams = {
        "done": [ev("accepted", 0), ev("final", 4)],
        "open": [ev("accepted", 0), ev("final", 9)],
    }
    log = [req("get_run", 6, object_id="open")]
    figures = fig.measure(streams, log, killed_at=T0 + 5, victim_runs=["done", "open"], ttl_s=1)
    assert (figures.resumed, figures.not_resumed) == (1, 0)
    assert figures.resume_max_s == pytest.approx(1.0)


def test_resume_from_any_takes_the_first_sign_of_a_new_owner() -> None:
    # run_a: a request at +1.0, an event at +0.5; run_b: ended by its new owner (a final
    # event, no request: request_unconfirmed); run_c: a request only; run_d: nothing before
    # the zombie woke (+3), its own request after that does not count.
    streams = {
        "run_a": [ev("accepted", 0), ev("status", 5.5), ev("final", 9)],
        "run_b": [ev("accepted", 0), ev("final", 6.8, status="error")],
        "run_c": [ev("accepted", 0), ev("final", 9)],
        "run_d": [ev("accepted", 0), ev("final", 12)],
    }
    log = [
        req("get_run", 6.0, object_id="run_a"),
        req("get_run", 7.0, object_id="run_c"),
        req("get_run", 8.5, object_id="run_d"),
    ]
    figures = fig.measure(
        streams,
        log,
        killed_at=T0 + 5,
        victim_runs=list(streams),
        resume_before=T0 + 8,
        resume_source="any",
        ttl_s=1.5,
    )
    assert (figures.resumed, figures.not_resumed) == (3, 1)
    assert figures.resume_p50_s == pytest.approx(1.8)
    assert figures.resume_max_s == pytest.approx(3.0)  # run_d: the whole window
    assert fig.resume_from_events(streams, ["run_a", "run_b"], T0 + 5, before=T0 + 6) == (
        pytest.approx({"run_a": 0.5})
    )


def test_paced_intake_is_judged() -> None:
    figures = fig.Figures(runs=1, lost=0, duplicate_finals=0, intake_lag_p99_s=2.5)
    assert "intake_lag_p99" not in figures.verdicts()
    figures.intake_paced = True
    assert figures.verdicts()["intake_lag_p99"] is False


def test_measure_resume_from_events_and_bad_arguments() -> None:
    streams, log = kill_attack()
    figures = fig.measure(streams, killed_at=T0 + 5, victim_runs=["run_1"], resume_source="events")
    assert figures.resume_source == "events" and figures.resume_max_s == pytest.approx(16)
    with pytest.raises(ValueError, match="'api', 'events' or 'any'"):
        fig.measure(streams, log, killed_at=T0, victim_runs=["run_1"], resume_source="owner")
    with pytest.raises(ValueError, match="request log"):
        fig.measure(streams, side_effects=("submits",))
    with pytest.raises(ValueError, match="unknown side effects"):
        fig.measure(streams, log, side_effects=("creates",))
    with pytest.raises(ValueError, match="needs the request log"):
        fig.measure(streams, killed_at=T0, victim_runs=["run_1"])


def test_the_table_shows_each_target_beside_its_figure() -> None:
    streams, log = kill_attack()
    good = fig.Figures(runs=500, lost=0, duplicate_finals=0, duplicate_submits=0)
    bad = fig.measure(
        streams, log, side_effects=("cancels",), killed_at=T0 + 5, victim_runs=["run_0"], ttl_s=1.5
    )
    records = [fig.Record("zombie", good, "t::a"), fig.Record("kill-9", bad, "t::b")]
    text = fig.table(records, {"t::a": "passed", "t::b": "xfail"})
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["attack", "runs", "lost", "dup"]
    zombie = next(line for line in lines if line.startswith("zombie"))
    kill = next(line for line in lines if line.startswith("kill-9"))
    assert "0 ok" in zombie and "FAIL" not in zombie and zombie.rstrip().endswith("passed")
    assert "1 FAIL" in kill and "1.00/api ok" in kill and kill.rstrip().endswith("xfail")
    assert "targets missed by: kill-9" in text
    assert "resume p95 <= TTL+2 s and max <= TTL+5 s" in text
    data = fig.report_json(records, {"t::b": "xfail"}, "20240101T000000")
    json.dumps(data)  # serialisable
    assert data["attacks"][1]["verdicts"]["duplicate_cancels"] is False
    assert data["attacks"][1]["outcome"] == "xfail"


def test_record_keeps_the_figures_for_the_report(capsys: pytest.CaptureFixture[str]) -> None:
    before = list(fig.RECORDS)
    try:
        fig.record("unit", fig.Figures(runs=3, lost=0, duplicate_finals=0))
        assert fig.RECORDS[-1].attack == "unit"
        assert "test_record_keeps_the_figures_for_the_report" in fig.RECORDS[-1].test
        assert "chaos figures [unit]: runs=3 lost=0 dup_finals=0" in capsys.readouterr().out
    finally:
        fig.RECORDS[:] = before


def test_events_are_parsed_from_stream_fields() -> None:
    entry = {b"type": b"final", b"data": json.dumps({"ts": 5, "status": "completed"}).encode()}
    assert fig.parse_entry(entry) == {"type": "final", "ts": 5, "status": "completed"}


# ---------------------------------------------------------------- the fake's request log


async def test_the_fake_logs_every_request_with_what_identifies_its_side_effect() -> None:
    key = "sk-figures-0123456789"
    server = await start_fake_server(state=FakeState(api_keys={key}))
    headers = {"Authorization": f"Bearer {key}", "OpenAI-Beta": "assistants=v2"}
    try:
        async with httpx.AsyncClient(base_url=server.root_url, headers=headers) as http:
            calls = [{"name": "f", "arguments": "{}"}]
            script = {"steps": [{"status": "completed", "function_calls": calls}]}
            first = (await http.post("/_fake/responses", json={"script": script})).json()
            await asyncio.sleep(0.05)
            got = (await http.get(f"/v1/responses/{first['id']}")).json()
            call_id = next(o["call_id"] for o in got["output"] if o["type"] == "function_call")
            body = {
                "model": "gpt-4o",
                "background": True,
                "previous_response_id": first["id"],
                "input": [{"type": "function_call_output", "call_id": call_id, "output": "1"}],
            }
            await http.post("/_fake/faults", json={"on": "create_response", "drop": True})
            with pytest.raises(httpx.HTTPError):
                await http.post("/v1/responses", json=body)
            await http.delete("/_fake/faults")
            second = (await http.post("/v1/responses", json=body)).json()
            run_script = {"steps": [{"status": "requires_action", "tool_calls": calls}]}
            run = (await http.post("/_fake/runs", json={"script": run_script})).json()
            got_run = (await http.get(f"/v1/threads/{run['thread_id']}/runs/{run['id']}")).json()
            tool_call = got_run["required_action"]["submit_tool_outputs"]["tool_calls"][0]["id"]
            path = f"/v1/threads/{run['thread_id']}/runs/{run['id']}"
            outputs = {"tool_outputs": [{"tool_call_id": tool_call, "output": "1"}]}
            assert (await http.post(path + "/submit_tool_outputs", json=outputs)).status_code == 200
            await http.post(path + "/cancel")
            log = await fig.request_log(server.root_url)
            since = (await http.get("/_fake/log", params={"since": 3})).json()
    finally:
        await server.close()

    assert [r["endpoint"] for r in log] == [
        "get_response",
        "create_response",
        "create_response",
        "get_run",
        "submit_tool_outputs",
        "cancel_run",
    ], "control requests are not logged"
    assert [r["seq"] for r in log] == list(range(6))
    dropped, continued = log[1], log[2]
    assert dropped["status"] == "dropped" and dropped["object_id"] is None
    assert dropped["previous_response_id"] == first["id"] and dropped["call_ids"] == [call_id]
    assert continued["status"] == 200 and continued["object_id"] == second["id"]
    assert log[4]["tool_call_ids"] == [tool_call] and log[4]["object_id"] == run["id"]
    assert log[4]["method"] == "POST" and log[4]["path"] == path + "/submit_tool_outputs"
    assert log[5]["status"] == 400, "a run that is no longer active cannot be cancelled"
    assert all(r["time"] <= r["done"] for r in log)
    assert since["next"] == 6 and [r["seq"] for r in since["requests"]] == [3, 4, 5]
    assert fig.duplicate_continuations(log) == 0
