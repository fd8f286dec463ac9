"""The HTTP client and the Assistants backend against httpx.MockTransport."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from runpoller.backends.assistants import AssistantsBackend, observe
from runpoller.backends.responses import ResponsesBackend
from runpoller.engine import RunState, Status
from runpoller.http.api import (
    ApiClient,
    ApiFailure,
    InvalidId,
    classify,
    make_http_client,
    no_cookies,
    retry_after_s,
)
from runpoller.protocol import AssistantsRunJob, ResponseJob

KEY = "sk-test-canary-0123456789"


def client(handler: Callable[[httpx.Request], httpx.Response]) -> ApiClient:
    """Wired as the worker wires it: no cookie jar, prepared requests straight to the transport."""
    transport = httpx.MockTransport(handler)
    http = httpx.AsyncClient(transport=transport, cookies=no_cookies(), timeout=7)
    return ApiClient(http, "http://api.test/v1", transport=transport)


def run_object(status: str = "in_progress", **extra: Any) -> dict[str, Any]:
    return {
        "id": "run_1",
        "object": "thread.run",
        "thread_id": "thread_1",
        "assistant_id": "asst_1",
        "status": status,
        "model": "gpt-4o",
        "required_action": None,
        "last_error": None,
        "usage": None,
        **extra,
    }


@pytest.mark.parametrize(
    "bad", ["../../files", "run/1", "run?x=1", "run%2F..", "run\n1", "", "rün", "a" * 200]
)
async def test_ids_are_refused_before_any_request(bad: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request may leave: {request.url}")

    api = client(handler)
    with pytest.raises(InvalidId, match="not a valid id"):
        await api.request("GET", ("threads", ("thread_id", bad)), api_key=KEY)


async def test_headers_bearer_and_beta_only_on_assistants() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"id": "x"})

    api = client(handler)
    await api.request("GET", ("threads", ("thread_id", "thread_1")), api_key=KEY, assistants=True)
    await api.request("GET", ("responses", ("response_id", "resp_1")), api_key=KEY)
    assert seen[0].url == "http://api.test/v1/threads/thread_1"
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"
    assert seen[0].headers["openai-beta"] == "assistants=v2"
    assert "openai-beta" not in seen[1].headers


@pytest.mark.parametrize(
    ("status", "headers", "retryable"),
    [
        (408, {}, True),
        (409, {}, True),
        (429, {}, True),
        (500, {}, True),
        (503, {}, True),
        (500, {"x-should-retry": "false"}, False),
        (400, {"x-should-retry": "true"}, True),
        (400, {}, False),
        (401, {}, False),
        (403, {}, False),
        (404, {}, False),
    ],
)
def test_classification(status: int, headers: dict[str, str], retryable: bool) -> None:
    body = {"error": {"message": "boom", "type": "x", "param": None, "code": None}}
    failure = classify(httpx.Response(status, json=body, headers=headers))
    assert failure.retryable is retryable
    assert failure.status_code == status
    assert failure.message == f"HTTP {status}: boom"


@pytest.mark.parametrize(
    "message",
    [
        "Cannot cancel run with status 'completed'.",
        'Runs in status "expired" do not accept tool outputs.',
    ],
)
def test_race_400s_are_recognised(message: str) -> None:
    body = {"error": {"message": message, "type": "invalid_request_error"}}
    failure = classify(httpx.Response(400, json=body))
    assert failure.race and not failure.retryable


def test_retry_after_variants() -> None:
    assert retry_after_s(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(httpx.Headers({"retry-after": "3"})) == 3.0
    assert retry_after_s(httpx.Headers({"retry-after-ms": "100", "retry-after": "9"})) == 0.1
    date = "Thu, 26 Nov 2026 00:00:10 GMT"
    now = 1795651200.0  # 2026-11-26T00:00:00Z
    assert retry_after_s(httpx.Headers({"retry-after": date}), now=now) == pytest.approx(10)
    assert retry_after_s(httpx.Headers({})) is None


async def test_connection_error_is_retryable_and_keyless() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError(f"refused {request.headers['authorization']}")

    with pytest.raises(ApiFailure) as info:
        await client(handler).request("GET", ("models",), api_key=KEY)
    assert info.value.failure.retryable
    assert KEY not in str(info.value) and KEY not in info.value.failure.message


async def test_non_json_success_is_a_retryable_failure() -> None:
    api = client(lambda request: httpx.Response(200, text="<html>proxy</html>"))
    with pytest.raises(ApiFailure) as info:
        await api.request("GET", ("models",), api_key=KEY)
    assert info.value.failure.retryable and "not a JSON object" in info.value.failure.message


# ----------------------------------------------------------------- assistants backend


def test_observe_maps_required_action_and_errors() -> None:
    data = run_object(
        "requires_action",
        expires_at=1700000600,
        required_action={
            "type": "submit_tool_outputs",
            "submit_tool_outputs": {
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "f", "arguments": "{"},
                    }
                ]
            },
        },
    )
    o = observe(data, poll_after_s=1.5)
    assert o.status is Status.REQUIRES_ACTION
    assert o.tool_calls[0].id == "call_1" and o.tool_calls[0].arguments == "{"
    assert o.action_expires_at == 1700000600 and o.poll_after_s == 1.5
    failed = observe(run_object("failed", last_error={"code": "server_error", "message": "m"}))
    assert failed.error == ("server_error", "m")


def test_observe_maps_an_unknown_status_to_unknown_keeping_it_raw() -> None:
    o = observe(run_object("paused"))
    assert o.status is Status.UNKNOWN and o.api_status == "paused"


async def test_fetch_result_paginates_messages_of_this_run() -> None:
    pages = {
        None: {"data": [_msg("msg_1", "Hello ")], "has_more": True, "last_id": "msg_1"},
        "msg_1": {"data": [_msg("msg_2", "world")], "has_more": False, "last_id": "msg_2"},
    }
    seen: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url)
        assert request.url.params["run_id"] == "run_1"
        return httpx.Response(200, json=pages[request.url.params.get("after")])

    backend = AssistantsBackend(client(handler))
    job = AssistantsRunJob(kind="assistants_run", thread_id="thread_1", run_id="run_1")
    state = RunState(deadline=0, interval=1, object_id="run_1")
    last = observe(run_object("completed"))
    result = await backend.fetch_result(job, state, KEY, last)
    assert result.output_text == "Hello \n\nworld"
    assert [m["id"] for m in result.detail["messages"]] == ["msg_1", "msg_2"]
    assert len(seen) == 2


async def test_submit_sends_all_outputs_in_one_request() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        assert request.url.path.endswith("/runs/run_1/submit_tool_outputs")
        return httpx.Response(200, json=run_object("queued"))

    backend = AssistantsBackend(client(handler))
    job = AssistantsRunJob(kind="assistants_run", thread_id="thread_1", run_id="run_1")
    state = RunState(deadline=0, interval=1, object_id="run_1")
    o = await backend.submit(job, state, KEY, (("call_1", "a"), ("call_2", "b")))
    assert o.status is Status.QUEUED
    assert bodies == [
        {
            "tool_outputs": [
                {"tool_call_id": "call_1", "output": "a"},
                {"tool_call_id": "call_2", "output": "b"},
            ]
        }
    ]


def _msg(mid: str, text: str) -> dict[str, Any]:
    return {
        "id": mid,
        "role": "assistant",
        "content": [{"type": "text", "text": {"value": text, "annotations": []}}],
    }


# ---------------------------------------------------------------------------- prepared polls


def recorded_run(
    answer: Callable[[list[httpx.Request]], httpx.Response] | None = None,
) -> tuple[list[httpx.Request], ApiClient, AssistantsRunJob, RunState]:
    """An API that records every request (answering ``in_progress`` unless told), and a run."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if answer is not None:
            return answer(seen)
        return httpx.Response(200, json=run_object("in_progress"))

    job = AssistantsRunJob(kind="assistants_run", thread_id="thread_1", run_id="run_1")
    return seen, client(handler), job, RunState(deadline=0, interval=1, object_id="run_1")


async def test_a_runs_poll_is_the_same_request_every_time() -> None:
    seen, api, job, state = recorded_run()
    backend = AssistantsBackend(api)
    memo: dict[str, Any] = {}
    for _ in range(3):
        assert (await backend.get(job, state, KEY, memo)).status is Status.IN_PROGRESS
    other = AssistantsRunJob(kind="assistants_run", thread_id="thread_2", run_id="run_2")
    await backend.get(other, state, KEY, {})
    first, second = (f"http://api.test/v1/threads/thread_{i}/runs/run_{i}" for i in (1, 2))
    assert [str(r.url) for r in seen] == [first, first, first, second]
    for request in seen:
        assert request.method == "GET"
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.headers["openai-beta"] == "assistants=v2"
        assert request.headers["host"] == "api.test"
        assert "cookie" not in request.headers


async def test_a_cookie_one_response_sets_is_never_sent_with_later_requests() -> None:
    # One client serves every tenant's API key: a cookie set in answer to one request must
    # not ride along with the next (another tenant's, maybe). The API needs none.
    def answer(seen: list[httpx.Request]) -> httpx.Response:
        headers = {"set-cookie": "__cf_bm=abc; Path=/"} if len(seen) == 1 else {}
        return httpx.Response(200, json=run_object("in_progress"), headers=headers)

    seen, api, job, state = recorded_run(answer)
    backend = AssistantsBackend(api)
    memo: dict[str, Any] = {}
    for _ in range(3):
        await backend.get(job, state, KEY, memo)
    await backend.cancel(job, state, "sk-other-tenant-0123456789")
    assert [r.headers.get("cookie") for r in seen] == [None, None, None, None]
    assert not api.http.cookies


async def test_prepared_requests_carry_the_clients_timeouts() -> None:
    seen, api, job, state = recorded_run()
    backend = AssistantsBackend(api)
    await backend.get(job, state, KEY, {})
    assert seen[0].extensions["timeout"] == {"connect": 7, "read": 7, "write": 7, "pool": 7}


@pytest.mark.parametrize("kind", ["aiohttp", "httpx"])
async def test_the_worker_client_keeps_no_cookies_and_exposes_its_transport(kind: str) -> None:
    http, transport, direct = make_http_client(
        kind, connect_timeout_s=1, read_timeout_s=2, max_connections=5
    )
    try:
        request = http.build_request("GET", "https://api.openai.com/v1/threads/t/runs/r")
        answer = httpx.Response(200, headers={"set-cookie": "__cf_bm=abc; Path=/"}, request=request)
        http.cookies.extract_cookies(answer)
        assert not http.cookies, "the jar refuses every cookie"
        assert isinstance(transport, httpx.AsyncBaseTransport)
        assert (direct is not None) is (kind == "aiohttp"), "the direct path is aiohttp's"
    finally:
        await http.aclose()


async def test_a_response_poll_follows_the_current_response_id() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        rid = request.url.path.rsplit("/", 1)[1]
        return httpx.Response(200, json={"id": rid, "status": "in_progress"})

    backend = ResponsesBackend(client(handler))
    job = ResponseJob(kind="response", response_id="resp_1")
    memo: dict[str, Any] = {}
    first = RunState(deadline=0, interval=1, object_id="resp_1")
    second = RunState(deadline=0, interval=1, object_id="resp_2")
    for state in (first, first, second, second):
        obs = await backend.get(job, state, KEY, memo)
        assert obs.object_id == state.object_id
    assert seen == ["/v1/responses/resp_1"] * 2 + ["/v1/responses/resp_2"] * 2


async def test_a_bad_id_never_reaches_a_prepared_request() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"no request may leave: {request.url}")

    backend = AssistantsBackend(client(handler))
    job = AssistantsRunJob.model_construct(kind="assistants_run", thread_id="../x", run_id="run_1")
    state = RunState(deadline=0, interval=1, object_id="run_1")
    memo: dict[str, Any] = {}
    with pytest.raises(InvalidId):
        await backend.get(job, state, KEY, memo)
    assert memo == {}


async def test_a_continuation_sends_again_what_the_api_does_not_carry_over() -> None:
    # previous_response_id carries neither tools nor instructions: a continuation of a job
    # that created its response takes them from the request, unless the job's continuation
    # says otherwise.
    bodies: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json={"id": "resp_2", "status": "queued"})

    tools = [{"type": "function", "name": "get_weather", "parameters": {}, "strict": False}]
    job = ResponseJob(
        kind="response",
        id="r1",
        request={"model": "gpt-4o", "input": "hi", "tools": tools, "instructions": "Be brief."},
        continuation={"instructions": "Be briefer."},
    )
    state = RunState(deadline=0, interval=1, object_id="resp_1")
    await ResponsesBackend(client(handler)).submit(job, state, KEY, (("call_1", "sunny"),))
    (body,) = bodies
    assert body["tools"] == tools and body["model"] == "gpt-4o"
    assert body["instructions"] == "Be briefer.", "the job's continuation wins"
    assert body["previous_response_id"] == "resp_1"
    assert body["input"] == [
        {"type": "function_call_output", "call_id": "call_1", "output": "sunny"}
    ]


@pytest.mark.parametrize("kind", ["aiohttp", "httpx"])
async def test_a_cookie_a_real_server_sets_never_reaches_another_request(kind: str) -> None:
    # Over a real connection to a host *name* (aiohttp's own session would keep cookies
    # for one, apart from httpx's jar): the Cloudflare cookie OpenAI's edge sets in answer
    # to one tenant's poll must not ride along with any later request, the direct path's
    # (a poll) or the client's (a body).
    from aiohttp import web

    seen: list[str | None] = []

    async def handle(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Cookie"))
        answer = web.json_response(run_object("in_progress"))
        answer.set_cookie("__cf_bm", "tenant-a-session", path="/")
        return answer

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    http, transport, direct = make_http_client(
        kind, connect_timeout_s=2, read_timeout_s=5, max_connections=5
    )
    api = ApiClient(http, f"http://localhost:{port}/v1", transport=transport, direct=direct)
    try:
        poll = api.endpoint(
            "GET",
            ("threads", ("t", "thread_1"), "runs", ("r", "run_1")),
            api_key=KEY,
            assistants=True,
        )
        for _ in range(2):
            await api.send(poll)
        await api.request(
            "POST",
            ("threads", ("t", "thread_1"), "runs", ("r", "run_1"), "cancel"),
            api_key="sk-other-tenant-0123456789",
            assistants=True,
            json_body={},
        )
        await api.send(poll)
    finally:
        await http.aclose()
        await runner.cleanup()
    assert seen == [None, None, None, None]
