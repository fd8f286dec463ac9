"""``runpoller runs|follow|reply|cancel|dead-letters`` on fakeredis: output, exit codes, errors.

The commands run as from a shell (``main([...])``, their own event loop) against one fakeredis
server the test seeds the way workers write (RunStore's scripts). Errors are one line on
stderr: 2 for bad input or Redis unreachable, 1 for a run or entry not found.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import fakeredis
import pytest
import redis.asyncio
from redis.asyncio import Redis

from runpoller import engine
from runpoller.cli import runs as runscli
from runpoller.cli.main import main
from runpoller.client import RunpollerClient
from runpoller.protocol import AcceptedEvent, Keys, parse_reply
from runpoller.redis.store import RunStore

T = TypeVar("T")
PREFIX = "rp"
NOW_MS = 1_764_115_230_500


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[fakeredis.FakeServer]:
    """The Redis every command connects to (whatever its URL), and the commands' settings."""
    shared = fakeredis.FakeServer()
    for name in ("RUNPOLLER_LIBRECHAT_CONFIG", "RUNPOLLER_SECRET_KEYS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/0")
    monkeypatch.setenv("RUNPOLLER_KEY_PREFIX", PREFIX)
    monkeypatch.setenv("RUNPOLLER_QUEUE_NAME", f"{PREFIX}:queue")
    monkeypatch.setattr(
        redis.asyncio.Redis, "from_url", lambda *a, **k: fakeredis.FakeAsyncRedis(server=shared)
    )
    yield shared


def on(server: fakeredis.FakeServer, work: Callable[[Redis], Awaitable[T]]) -> T:
    """Run ``work`` on the shared server (each command has its loop; so does this)."""

    async def go() -> T:
        client = fakeredis.FakeAsyncRedis(server=server)
        try:
            return await work(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


def cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str) -> str:
    assert err.count("\n") == 1, err
    return err.strip()


WAITING = engine.RunState(
    deadline=4_000_000_000.0,
    interval=1.0,
    object_id="run_x",
    phase=engine.Phase.AWAITING_OUTPUTS,
    round=1,
    pending_calls=("call_1", "call_2"),
    object_ids=("run_x",),
)


def accept(server: fakeredis.FakeServer, run_id: str, state: engine.RunState = WAITING) -> None:
    job = {"kind": "assistants_run", "thread_id": "thread_1", "run_id": "run_x"}

    async def work(client: Redis) -> None:
        store = RunStore(client, Keys(PREFIX), worker_id="w1", maxlen=100, ttl_s=3600)
        accepted = AcceptedEvent(
            run_id=run_id, ts=NOW_MS, kind="assistants_run", deadline=NOW_MS, poll_interval_ms=1
        )
        await store.claim(run_id, json.dumps(job), state.to_json(), accepted.model_dump_json())

    on(server, work)


def end(server: fakeredis.FakeServer, run_id: str, status: str = "completed") -> None:
    final = {"type": "final", "run_id": run_id, "ts": NOW_MS, "status": status, "reason": "done"}

    async def work(client: Redis) -> None:
        store = RunStore(client, Keys(PREFIX), worker_id="w1", maxlen=100, ttl_s=3600)
        done = dataclasses.replace(WAITING, phase=engine.Phase.DONE).to_json()
        assert await store.finalize(run_id, done, json.dumps(final), status) == 1

    on(server, work)


# ---------------------------------------------------------------------------- runs show/list


def test_runs_show_in_text_and_json(
    server: fakeredis.FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    accept(server, "run_a")
    code, out, _ = cli(["runs", "show", "run_a"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "run run_a: requires_action"
    assert any("awaiting_outputs · round 1 · waiting for call_1, call_2" in line for line in lines)
    assert any(line.split() == ["owner", "w1", "(dead)"] for line in lines)
    assert '"api_key": "none"' in out
    # Every event, with its time: here the accepted event the claim wrote.
    assert lines[-1].split()[1:] == ["accepted"] and lines[-1].startswith("    ")
    code, out, _ = cli(["runs", "show", "run_a", "--json"], capsys)
    view = json.loads(out)
    assert [e["type"] for e in view["history"]] == ["accepted"]
    assert view["history"][0]["ts"] == NOW_MS and "-" in view["history"][0]["id"]
    assert (view["status"], view["pending_calls"], view["owner_alive"]) == (
        "requires_action",
        ["call_1", "call_2"],
        False,
    )


def test_runs_show_errors(server: fakeredis.FakeServer, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["runs", "show", "nope"], capsys)
    assert code == 1
    assert (
        one_line(err) == "runpoller runs show: no run nope: no record, no result and no queued job"
    )
    code, _, err = cli(["runs", "show", "../x"], capsys)
    assert code == 2 and one_line(err).startswith("runpoller runs show: invalid run id '../x'")


def test_runs_list_pages_with_a_cursor(
    server: fakeredis.FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for run_id in ("r1", "r2", "r3"):
        accept(server, run_id)
    end(server, "r3", "failed")
    code, out, _ = cli(["runs", "list", "--limit", "1"], capsys)
    assert code == 0
    header, row, more = out.splitlines()
    assert header.split() == ["RUN", "STATUS", "SINCE", "DETAIL"]
    assert row.split()[:2] == ["r1", "requires_action"] and row.endswith("round 1 · owner w1")
    assert more.startswith("more: runpoller runs list --limit 1 --cursor ")
    cursor = more.rsplit(" ", 1)[1]
    code, out, _ = cli(["runs", "list", "--limit", "5", "--cursor", cursor, "--json"], capsys)
    page = json.loads(out)
    assert [(i["run_id"], i["status"], i["final_status"]) for i in page["items"]] == [
        ("r2", "requires_action", None),
        ("r3", "ended", "failed"),
    ]
    assert page["next_cursor"] is None
    code, out, _ = cli(["runs", "list", "--status", "ended"], capsys)
    assert [line.split()[0] for line in out.splitlines()[1:]] == ["r3"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--limit", "0"], "--limit must be a whole number from 1 to 1000, got '0'"),
        (["--since", "yesterday"], "--since 'yesterday' is neither a duration"),
        (["--cursor", "x"], "invalid cursor 'x'"),
    ],
)
def test_runs_list_refuses_bad_input_in_one_line(
    server: fakeredis.FakeServer, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = cli(["runs", "list", *argv], capsys)
    assert code == 2 and one_line(err).startswith(f"runpoller runs list: {message}")


def test_redis_unreachable_is_one_line_without_the_password(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("RUNPOLLER_LIBRECHAT_CONFIG", raising=False)
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:1/0")
    code, _, err = cli(["runs", "list"], capsys)
    assert code == 2
    line = one_line(err)
    assert line.startswith("runpoller runs list: Redis unreachable at redis://:***@127.0.0.1:1/0 (")
    assert "hunter2" not in err


# ---------------------------------------------------------------------------- follow


def test_follow_an_ended_run_prints_its_final_with_enqueue_waits_exit_code(
    server: fakeredis.FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    accept(server, "ok")
    end(server, "ok", "completed")
    accept(server, "bad")
    end(server, "bad", "failed")
    code, out, err = cli(["follow", "ok", "--json"], capsys)
    assert code == 0 and json.loads(out)["status"] == "completed"
    assert "ok: accepted" in err and "ok: COMPLETED: done" in err
    code, out, _ = cli(["follow", "bad"], capsys)
    assert code == 1 and out.startswith("bad: failed — done")


def test_follow_of_an_unknown_run_says_so(
    server: fakeredis.FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = cli(["follow", "ghost"], capsys)
    assert code == 1
    assert one_line(err) == (
        "runpoller follow: no run ghost: no record, no events and no queued job "
        "(--wait-for-start waits for it)"
    )


# ---------------------------------------------------------------------------- reply


def replies(server: fakeredis.FakeServer) -> list[tuple[str, Any]]:
    async def work(client: Redis) -> list[tuple[str, Any]]:
        rows = await client.xrange(Keys(PREFIX).replies)
        return [(i.decode(), parse_reply(f)) for i, f in rows]

    return on(server, work)


def test_reply_writes_what_the_worker_parses_and_prints_the_entry_id(
    server: fakeredis.FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    accept(server, "run_r")
    code, out, err = cli(["reply", "run_r", "--round", "1", "call_1=sunny", "call_2=a=b"], capsys)
    assert code == 0, err
    [(entry_id, reply)] = replies(server)
    assert out == f"{entry_id}\n"
    assert (reply.run_id, reply.round) == ("run_r", 1)
    assert reply.outputs == [("call_1", "sunny"), ("call_2", "a=b")]


@pytest.mark.parametrize(
    "document",
    [
        {"call_1": "x", "call_2": '{"t": 1}'},
        [
            {"tool_call_id": "call_1", "output": "x"},
            {"tool_call_id": "call_2", "output": '{"t": 1}'},
        ],
    ],
    ids=["object", "list"],
)
def test_reply_from_a_json_file(
    server: fakeredis.FakeServer,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    document: Any,
) -> None:
    accept(server, "run_r")
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps(document))
    code, _, err = cli(["reply", "run_r", "--round", "1", "--json", str(path)], capsys)
    assert code == 0, err
    [(_, reply)] = replies(server)
    assert reply.outputs == [("call_1", "x"), ("call_2", '{"t": 1}')]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--round", "2", "call_1=a", "call_2=b"], "run run_r waits for round 1, not 2"),
        (["--round", "1", "call_1=a"], "run run_r: no output for call_2 (answer every call once)"),
        (
            ["--round", "1", "call_1=a", "call_2=b", "call_9=c"],
            "run run_r: round 1 has no call call_9",
        ),
        (["--round", "1", "call_1=a", "call_1=b"], "call_1 is answered twice"),
        (["--round", "1", "call_1"], "'call_1' is not call_id=output"),
        (["--round", "0", "call_1=a"], "--round must be a whole number from 1, got '0'"),
        (["--round", "1"], "no outputs: give call_id=output arguments or --json FILE"),
    ],
)
def test_reply_refuses_what_the_worker_would_reject(
    server: fakeredis.FakeServer,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    accept(server, "run_r")
    code, _, err = cli(["reply", "run_r", *args], capsys)
    assert code == 2 and one_line(err).startswith(f"runpoller reply: {message}")
    assert replies(server) == []


def test_reply_refuses_a_json_output_that_is_not_a_string(
    server: fakeredis.FakeServer, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    accept(server, "run_r")
    path = tmp_path / "outputs.json"
    path.write_text(json.dumps({"call_1": {"t": 1}, "call_2": "x"}))
    code, _, err = cli(["reply", "run_r", "--round", "1", "--json", str(path)], capsys)
    assert code == 2
    assert one_line(err).endswith("the output for call_1 must be a string, not dict")


def test_reply_to_a_run_not_waiting(
    server: fakeredis.FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    accept(server, "run_p", dataclasses.replace(WAITING, phase=engine.Phase.POLLING))
    accept(server, "run_e")
    end(server, "run_e", "expired")
    code, _, err = cli(["reply", "run_p", "--round", "1", "call_1=a"], capsys)
    assert code == 2
    assert one_line(err).endswith("run run_p is not waiting for tool outputs: it is in_flight")
    code, _, err = cli(["reply", "run_e", "--round", "1", "call_1=a"], capsys)
    assert one_line(err).endswith("it is ended (expired)")
    code, _, err = cli(["reply", "ghost", "--round", "1", "call_1=a"], capsys)
    assert code == 1


# ---------------------------------------------------------------------------- cancel


def test_cancel_requests_and_says_so(
    server: fakeredis.FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    accept(server, "run_c")
    code, out, _ = cli(["cancel", "run_c", "--reason", "user stop", "--json"], capsys)
    assert code == 0
    outcome = json.loads(out)
    assert outcome["outcome"] == "requested" and outcome["entry_id"]

    async def request(client: Redis) -> Any:
        k = Keys(PREFIX)
        return await client.hget(k.cancel("run_c"), "reason"), await client.xlen(k.cancels)

    assert on(server, request) == (b"user stop", 1)
    code, out, _ = cli(["cancel", "run_c"], capsys)
    assert out.startswith("cancel requested for run run_c (cancels entry ")


def test_cancel_of_an_ended_or_unknown_run(
    server: fakeredis.FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    accept(server, "run_d")
    end(server, "run_d", "completed")
    code, out, _ = cli(["cancel", "run_d"], capsys)
    assert code == 0 and out == "run run_d already ended (completed): nothing requested\n"
    code, _, err = cli(["cancel", "ghost"], capsys)
    assert code == 1 and one_line(err).startswith("runpoller cancel: no run ghost")


def test_cancel_wait_follows_until_the_final(
    server: fakeredis.FakeServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    accept(server, "run_w")
    cancel = RunpollerClient.cancel

    async def cancel_then_end(self: RunpollerClient, run_id: str, reason: str | None = None) -> Any:
        outcome = await cancel(self, run_id, reason)
        final = {
            "type": "final",
            "run_id": run_id,
            "ts": 1,
            "status": "cancelled",
            "reason": "asked",
        }
        store = RunStore(self.redis, Keys(PREFIX), worker_id="w1", maxlen=100, ttl_s=3600)
        await store.finalize(run_id, WAITING.to_json(), json.dumps(final), "cancelled")
        return outcome

    monkeypatch.setattr(RunpollerClient, "cancel", cancel_then_end)
    code, out, err = cli(["cancel", "run_w", "--wait", "--json"], capsys)
    assert code == 0, err
    document = json.loads(out)
    assert document["outcome"] == "requested" and document["final"]["status"] == "cancelled"


# ---------------------------------------------------------------------------- dead letters


def dead(server: fakeredis.FakeServer, raw: Any) -> str:
    async def work(client: Redis) -> str:
        store = RunStore(client, Keys(PREFIX), worker_id="w1", maxlen=100, ttl_s=3600)
        await store.dead_letter("conflicting_job: test", json.dumps(raw))
        return str((await client.xrevrange(Keys(PREFIX).dead_letters, count=1))[0][0].decode())

    return on(server, work)


def test_dead_letters_list_requeue_purge(
    server: fakeredis.FakeServer, capsys: pytest.CaptureFixture[str]
) -> None:
    job = {"kind": "assistants_run", "thread_id": "thread_1", "run_id": "run_dl"}
    first = dead(server, job)
    second = dead(server, {**job, "run_id": "run_k", "api_key": "**********"})
    code, out, _ = cli(["dead-letters", "list"], capsys)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{first}  ") and lines[0].endswith("conflicting_job: test")
    assert lines[1] == f"    raw: {json.dumps(job)}"
    code, out, _ = cli(["dead-letters", "list", "--limit", "1", "--json"], capsys)
    assert json.loads(out)["next_after"] == first

    code, out, _ = cli(["dead-letters", "requeue", first], capsys)
    assert code == 0 and out == f"run run_dl enqueued again; dead letter {first} deleted\n"
    code, _, err = cli(["dead-letters", "requeue", second], capsys)
    assert code == 2
    assert one_line(err) == (
        f"runpoller dead-letters requeue: dead letter {second} carried an api_key, which dead "
        "letters blank: re-enqueue it with its key"
    )
    code, _, err = cli(["dead-letters", "requeue", first], capsys)
    assert code == 1 and one_line(err) == f"runpoller dead-letters requeue: no dead letter {first}"

    code, _, err = cli(["dead-letters", "purge"], capsys)
    assert code == 2 and "add --yes" in one_line(err)
    code, _, err = cli(["dead-letters", "purge", "--older-than", "soon", "--yes"], capsys)
    assert code == 2 and "is no duration" in one_line(err)
    code, out, _ = cli(["dead-letters", "purge", "--older-than", "1h", "--yes"], capsys)
    assert out == "purged 0 dead letters\n"
    code, out, _ = cli(["dead-letters", "purge", "--yes", "--json"], capsys)
    assert json.loads(out) == {"purged": 1}


# ---------------------------------------------------------------------------- helpers


def test_durations_and_times() -> None:
    assert [runscli.duration_ms(t) for t in ("500ms", "90s", "10m", "2h", "1.5d")] == [
        500,
        90_000,
        600_000,
        7_200_000,
        129_600_000,
    ]
    assert runscli.duration_ms("10") is None and runscli.duration_ms("m") is None
    assert runscli.since_ms("10m", NOW_MS) == NOW_MS - 600_000
    assert runscli.since_ms("2025-11-26T00:00:30.5", 0) == NOW_MS, "naive is UTC"
    assert runscli.since_ms("2025-11-26T01:00:30.5+01:00", 0) == NOW_MS
    assert runscli.format_time(NOW_MS, NOW_MS + 1500) == "2025-11-26 00:00:30.500Z (1.5s ago)"
    assert runscli.format_time(NOW_MS + 125_000, NOW_MS) == "2025-11-26 00:02:35.500Z (in 2m05s)"
    assert runscli.format_time(None, NOW_MS) == "-"
