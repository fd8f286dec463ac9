"""Poison input: over a thousand generated malformed jobs and replies thrown at a worker.

Each must yield a precise record (a final error event where the run can be identified, a
dead letter otherwise), never an exception, never a retry; meanwhile a valid run in flight
keeps being served and completes. Runs on fakeredis (with Lua) and httpx.MockTransport.
"""

from __future__ import annotations

import asyncio
import json
import string
import time
from collections.abc import Iterator
from typing import Any

import fakeredis
import httpx
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from runpoller.config import load_settings
from runpoller.protocol import FN_DEAD_LETTER, FN_RESUME, FN_RUN, FinalEvent, parse_reply
from runpoller.protocol.serde import deserialize_job
from runpoller.worker.app import WorkerApp

PREFIX = "poison"
VALID_THREAD, VALID_RUN = "thread_ok", "run_ok"


class World:
    """One worker on fakeredis, whose API answers `in_progress` until told to finish."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.finish = False
        self.redis = fakeredis.FakeAsyncRedis()
        settings, _ = load_settings(
            assistants_api_key="sk-poison-test-key",
            assistants_base_url="http://api.test/v1",
            key_prefix=PREFIX,
            poll_interval_ms=100,
            timeout_ms=600_000,
            metrics_port=-1,
        )
        http = httpx.AsyncClient(transport=httpx.MockTransport(self.api))
        self.app = WorkerApp(settings, self.redis, http=http, worker_id="w1")  # type: ignore[arg-type]
        self.dead_letters = 0

    def api(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/messages"):
            return httpx.Response(200, json={"data": [], "has_more": False})
        status = "completed" if self.finish else "in_progress"
        return httpx.Response(
            200,
            json={"id": VALID_RUN, "object": "thread.run", "status": status, "model": "m"},
        )

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    async def process(self, raw: bytes) -> str:
        """What arq does with a job body, with our serializer and functions."""
        body = deserialize_job(raw)
        function, args = body["f"], body["a"]
        if function == FN_DEAD_LETTER:
            return await self.app.admission.dead_letter(*args)
        if function == FN_RESUME:
            return await self.app.admission.resume(args[0] if args else None)  # type: ignore[arg-type]
        assert function == FN_RUN
        job = args[0] if args else None
        return await self.app.admission.intake(job, body["et"] / 1000)

    async def count_dead_letters(self) -> int:
        return int(await self.redis.xlen(f"{PREFIX}:dead-letters"))

    async def final_of(self, run_id: str) -> FinalEvent | None:
        raw = await self.redis.get(f"{PREFIX}:result:{run_id}")
        return None if raw is None else FinalEvent.model_validate_json(raw)


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    w = World()
    valid = {"kind": "assistants_run", "thread_id": VALID_THREAD, "run_id": VALID_RUN}
    body = {"f": FN_RUN, "a": [valid], "k": {}, "t": None, "et": int(time.time() * 1000)}
    assert w.run(w.process(json.dumps(body).encode())) == "new"
    yield w
    w.run(w.app.runner.stop_runs())
    w.loop.close()


NASTY_IDS = st.sampled_from(
    [
        "../../files",
        "run/1",
        "run%2F..",
        "a\nb",
        "run?x",
        "\uff52\uff55\uff4e",  # fullwidth "run"
        "",
        " ",
        "a" * 300,
        "run_ok\x00",
    ]
)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
JOB_FIELDS = st.fixed_dictionaries(
    {},
    optional={
        "kind": st.sampled_from(["assistants_run", "response", "thread", "", 5])
        | st.text(max_size=5),
        "id": NASTY_IDS | st.text(alphabet=string.ascii_letters, min_size=1, max_size=10),
        "thread_id": NASTY_IDS | ANY_JSON,
        "run_id": NASTY_IDS | ANY_JSON,
        "response_id": NASTY_IDS | ANY_JSON,
        "timeout_ms": st.integers(-5, 10**12) | st.text(max_size=3),
        "poll_interval_ms": st.integers(-5, 10**9) | ANY_JSON,
        "metadata": ANY_JSON,
        "api_key": st.text(max_size=30) | st.integers(),
        "v": st.integers(0, 3),
        "surprise": ANY_JSON,
        "request": ANY_JSON,
    },
)


def arq_body(job: Any, function: Any = FN_RUN) -> bytes:
    return json.dumps(
        {"f": function, "a": [job], "k": {}, "t": None, "et": int(time.time() * 1000)}
    ).encode()


_serial = iter(range(10**9))


def corrupted(field: str, value: Any) -> bytes:
    """A valid job with a fresh id, and one field broken: the run can be identified."""
    job: dict[str, Any] = {
        "kind": "assistants_run",
        "id": f"fz-{next(_serial)}",
        "thread_id": "thread_1",
        "run_id": "run_1",
    }
    job[field] = value
    return arq_body(job)


BROKEN_FIELD = st.builds(
    corrupted,
    st.sampled_from(
        [
            "thread_id",
            "run_id",
            "kind",
            "timeout_ms",
            "poll_interval_ms",
            "metadata",
            "api_key",
            "v",
        ]
    ),
    NASTY_IDS | ANY_JSON | st.integers(-10, 10**13),
)

MALFORMED = st.one_of(
    BROKEN_FIELD,
    BROKEN_FIELD,
    st.binary(max_size=64),
    st.text(max_size=64).map(str.encode),
    ANY_JSON.map(lambda v: json.dumps(v).encode()),
    JOB_FIELDS.map(arq_body),
    st.tuples(ANY_JSON, st.sampled_from([FN_RUN, FN_RESUME, "nope", 7, None])).map(
        lambda t: arq_body(t[0], t[1])
    ),
    st.builds(
        lambda n: arq_body({"kind": "assistants_run", "thread_id": "t" * n, "run_id": "r"}),
        st.integers(129, 200_000),
    ),
    st.dictionaries(st.sampled_from(["f", "a", "k", "t", "et"]), ANY_JSON).map(
        lambda d: json.dumps(d).encode()
    ),
)


@settings(max_examples=1000, deadline=None, suppress_health_check=list(HealthCheck))
@given(raw=MALFORMED)
def test_malformed_jobs_leave_a_precise_record_and_never_raise(world: World, raw: bytes) -> None:
    before = world.run(world.count_dead_letters())
    try:
        outcome = world.run(world.process(raw))
    except Exception as exc:  # pragma: no cover - the failure we are looking for
        pytest.fail(f"job {raw[:120]!r} raised {type(exc).__name__}: {exc}")
    after = world.run(world.count_dead_letters())
    event(f"outcome: {outcome}")
    if outcome in ("dead_letter", "invalid", "expired"):
        assert after == before + 1, f"{raw[:120]!r}: no dead letter"
        return
    if outcome == "refused":
        body = json.loads(raw)
        run_id = next(
            body["a"][0][k]
            for k in ("id", "run_id", "response_id")
            if isinstance(body["a"][0].get(k), str)
        )
        final = world.run(world.final_of(run_id))
        assert final is not None and final.status == "error" and final.error is not None
        assert final.error.message, "the error says what was wrong"
        return
    # Anything else must be a run the worker accepted (a well-formed job to an unknown run is
    # legitimate input: it is polled, and the API answers).
    assert outcome in ("new", "owned", "done", "resumed", "already_here"), outcome


@settings(max_examples=500, deadline=None)
@given(
    fields=st.dictionaries(
        st.sampled_from(["run_id", "round", "outputs", b"run_id", b"round", b"outputs", "x"]),
        st.text(max_size=40) | st.binary(max_size=40) | ANY_JSON.map(json.dumps),
    )
)
def test_malformed_replies_never_raise(world: World, fields: dict[Any, Any]) -> None:
    reply = parse_reply(fields)
    if reply is not None:
        assert reply.outputs is not None or reply.problem
        world.app.runner.deliver_reply(reply)


def test_the_valid_run_was_served_throughout(world: World) -> None:
    run = world.app.runner.runs.get(VALID_RUN)
    assert run is not None, "the valid run is still being driven after the poison"
    world.finish = True

    async def wait_final() -> FinalEvent:
        for _ in range(100):
            final = await world.final_of(VALID_RUN)
            if final is not None:
                return final
            await asyncio.sleep(0.05)
        raise AssertionError("the valid run never finished")

    assert world.run(wait_final()).status == "completed"
