"""The direct path (a poll straight through the aiohttp session) answers as httpx does.

Over real connections to a server on 127.0.0.1: each answer is asked for three ways — the
direct path, httpx with httpx-aiohttp's transport (what polls took before), httpx with its own
transport — and must come out the same: the same object and headers, the same ``Failure``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from runpoller.engine import Failure
from runpoller.http.api import ApiClient, ApiFailure, ApiResponse, make_http_client
from runpoller.http.direct import DirectPath
from runpoller.redis import connection
from runpoller.worker.apiwatch import WatchedTransport
from tests.unit.logrecorder import Recorder

KEY = "sk-test-0123456789abcdef"
PATHS = ("direct", "httpx-aiohttp", "httpx")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Server:
    base: str
    seen: list[web.Request]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Server]]]:
    runners: list[web.AppRunner] = []

    async def start(handler: Handler) -> Server:
        seen: list[web.Request] = []

        async def record(request: web.Request) -> web.StreamResponse:
            seen.append(request)
            return await handler(request)

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", record)
        runner = web.AppRunner(app)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return Server(f"http://127.0.0.1:{port}/v1", seen)

    yield start
    for runner in runners:
        await runner.cleanup()


Outcome = tuple[str, Any]


async def poll(path: str, base: str, *, read_timeout_s: float = 5.0) -> Outcome:
    """One poll of a run the way ``path`` sends it: ("ok", (data, headers)) or
    ("failure", Failure)."""
    http, transport, direct = make_http_client(
        "httpx" if path == "httpx" else "aiohttp",
        connect_timeout_s=2,
        read_timeout_s=read_timeout_s,
        max_connections=5,
    )
    api = ApiClient(http, base, transport=transport, direct=direct if path == "direct" else None)
    target = api.endpoint(
        "GET", ("threads", ("t", "thread_1"), "runs", ("r", "run_1")), api_key=KEY, assistants=True
    )
    try:
        answer = await api.send(target)
    except ApiFailure as exc:
        return ("failure", exc.failure)
    finally:
        if path != "httpx":  # the httpx transport was handed the session only if it sent
            used = isinstance(transport.client, aiohttp.ClientSession)  # type: ignore[attr-defined]
            assert used is (path == "httpx-aiohttp")
        await http.aclose()
    return ("ok", seen_of(answer))


def seen_of(answer: ApiResponse) -> tuple[dict[str, Any], dict[str, str | None]]:
    names = ("openai-poll-after-ms", "Retry-After-Ms", "content-type", "x-request-id")
    return answer.data, {name: answer.headers.get(name) for name in names}


async def all_paths(base: str, **kwargs: Any) -> dict[str, Outcome]:
    return {path: await poll(path, base, **kwargs) for path in PATHS}


def json_answer(status: int, body: Any, **headers: str) -> Handler:
    async def handle(_request: web.Request) -> web.Response:
        return web.Response(
            status=status,
            body=json.dumps(body).encode(),
            content_type="application/json",
            headers=headers,
        )

    return handle


RUN = {"id": "run_1", "object": "thread.run", "status": "in_progress"}


@pytest.mark.parametrize(
    "handler",
    [
        pytest.param(
            json_answer(200, RUN, **{"OpenAI-Poll-After-Ms": "1500", "X-Request-Id": "req_1"}),
            id="200-json",
        ),
        pytest.param(json_answer(200, ["not", "an", "object"]), id="200-json-array"),
        pytest.param(
            json_answer(404, {"error": {"message": "No run found", "code": None}}), id="404"
        ),
        pytest.param(
            json_answer(401, {"error": {"message": "Bad key", "code": "invalid_api_key"}}),
            id="401-code",
        ),
        pytest.param(
            json_answer(429, {"error": {"message": "Slow down"}}, **{"retry-after-ms": "250"}),
            id="429-retry-after-ms",
        ),
        pytest.param(json_answer(503, {}, **{"Retry-After": "3"}), id="503-retry-after"),
        pytest.param(json_answer(500, {}, **{"X-Should-Retry": "false"}), id="500-no-retry"),
        pytest.param(json_answer(404, {}, **{"x-should-retry": "true"}), id="404-retry"),
        pytest.param(
            json_answer(400, {"error": {"message": "Cannot cancel run with status 'completed'."}}),
            id="race-400",
        ),
    ],
)
async def test_every_answer_is_the_same_on_every_path(
    serve: Callable[[Handler], Awaitable[Server]], handler: Handler
) -> None:
    server = await serve(handler)
    outcomes = await all_paths(server.base)
    assert outcomes["direct"] == outcomes["httpx-aiohttp"] == outcomes["httpx"], outcomes


async def test_a_success_that_is_not_json(serve: Callable[[Handler], Awaitable[Server]]) -> None:
    async def handle(_request: web.Request) -> web.Response:
        return web.Response(text="<html>maintenance</html>", content_type="text/html")

    server = await serve(handle)
    outcomes = await all_paths(server.base)
    assert outcomes["direct"] == outcomes["httpx-aiohttp"] == outcomes["httpx"]
    kind, failure = outcomes["direct"]
    assert kind == "failure" and failure.retryable and failure.ambiguous


async def test_an_error_without_a_body_names_the_reason(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def handle(_request: web.Request) -> web.Response:
        return web.Response(status=502)

    server = await serve(handle)
    outcomes = await all_paths(server.base)
    assert outcomes["direct"] == outcomes["httpx-aiohttp"] == outcomes["httpx"]
    assert outcomes["direct"][1].message == "HTTP 502: Bad Gateway"


async def test_a_gzipped_answer_is_read(serve: Callable[[Handler], Awaitable[Server]]) -> None:
    async def handle(_request: web.Request) -> web.Response:
        answer = web.json_response(RUN)
        answer.enable_compression(web.ContentCoding.gzip)
        return answer

    server = await serve(handle)
    outcomes = await all_paths(server.base)
    assert outcomes["direct"] == outcomes["httpx-aiohttp"] == outcomes["httpx"]
    assert outcomes["direct"][1][0] == RUN


async def test_the_direct_path_sends_what_httpx_sends(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    server = await serve(json_answer(200, RUN))
    await poll("direct", server.base)
    await poll("httpx-aiohttp", server.base)
    direct, through_httpx = server.seen
    assert direct.method == through_httpx.method == "GET"
    assert direct.path_qs == through_httpx.path_qs == "/v1/threads/thread_1/runs/run_1"
    assert dict(direct.headers) == dict(through_httpx.headers)
    assert direct.headers["Accept-Encoding"] == "gzip, deflate"  # what both can decode
    assert direct.headers["Authorization"] == f"Bearer {KEY}"
    assert direct.headers["OpenAI-Beta"] == "assistants=v2"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_a_refused_connection_surely_never_sent_the_request() -> None:
    base = f"http://127.0.0.1:{unused_port()}/v1"
    kind, failure = await poll("direct", base)
    assert kind == "failure"
    assert failure == Failure("connection error (ConnectError)", retryable=True, ambiguous=False)
    assert (await poll("httpx", base)) == (kind, failure)
    assert (await poll("httpx-aiohttp", base)) == (kind, failure)


async def test_a_refused_create_is_not_ambiguous_either() -> None:
    # A request with a body goes through httpx-aiohttp's transport, which named a refused
    # connection a connect timeout (ambiguous: a create would end "request_unconfirmed").
    http, transport, direct = make_http_client(
        "aiohttp", connect_timeout_s=2, read_timeout_s=5, max_connections=5
    )
    api = ApiClient(
        http, f"http://127.0.0.1:{unused_port()}/v1", transport=transport, direct=direct
    )
    try:
        with pytest.raises(ApiFailure) as caught:
            await api.request("POST", ("threads", "runs"), api_key=KEY, json_body={"x": 1})
    finally:
        await http.aclose()
    assert caught.value.failure == Failure(
        "connection error (ConnectError)", retryable=True, ambiguous=False
    )


async def test_a_read_timeout_may_have_been_processed(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    async def handle(_request: web.Request) -> web.Response:
        await asyncio.sleep(2)
        return web.json_response(RUN)

    server = await serve(handle)
    outcomes = {path: await poll(path, server.base, read_timeout_s=0.2) for path in PATHS}
    expected = Failure("request timed out (ReadTimeout)", retryable=True, ambiguous=True)
    assert outcomes == {path: ("failure", expected) for path in PATHS}


async def test_a_server_that_drops_the_connection_may_have_processed_it() -> None:
    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")  # the whole request was read
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        outcomes = {path: await poll(path, f"http://127.0.0.1:{port}/v1") for path in PATHS}
    finally:
        server.close()
        await server.wait_closed()
    expected = Failure("connection error (RemoteProtocolError)", retryable=True, ambiguous=True)
    assert outcomes == {path: ("failure", expected) for path in PATHS}


async def test_no_cookie_is_ever_sent(serve: Callable[[Handler], Awaitable[Server]]) -> None:
    async def handle(_request: web.Request) -> web.Response:
        answer = web.json_response(RUN)
        answer.set_cookie("__cf_bm", "tenant-a-session", path="/")
        return answer

    server = await serve(handle)
    http, _transport, direct = make_http_client(
        "aiohttp", connect_timeout_s=2, read_timeout_s=5, max_connections=5
    )
    # A host name, not an address: aiohttp's own jar would keep this one's cookies.
    api = ApiClient(http, server.base.replace("127.0.0.1", "localhost"), direct=direct)
    try:
        for key in (KEY, "sk-other-tenant-0123456789"):
            target = api.endpoint("GET", ("threads", ("t", "thread_1")), api_key=key)
            for _ in range(2):
                await api.send(target)
    finally:
        await http.aclose()
    assert [request.headers.get("Cookie") for request in server.seen] == [None] * 4


async def test_the_clients_timeouts_apply() -> None:
    http, _, direct = make_http_client(
        "aiohttp", connect_timeout_s=1.5, read_timeout_s=7, max_connections=5
    )
    await http.aclose()
    assert isinstance(direct, DirectPath)
    assert direct.timeout == aiohttp.ClientTimeout(sock_connect=1.5, sock_read=7, connect=7)


async def test_one_session_one_pool(serve: Callable[[Handler], Awaitable[Server]]) -> None:
    server = await serve(json_answer(200, RUN))
    http, transport, direct = make_http_client(
        "aiohttp", connect_timeout_s=2, read_timeout_s=5, max_connections=1
    )
    api = ApiClient(http, server.base, transport=transport, direct=direct)
    try:
        poll_target = api.endpoint("GET", ("threads", ("t", "thread_1")), api_key=KEY)
        await api.send(poll_target)  # direct
        await api.request("POST", ("threads", ("t", "thread_1")), api_key=KEY, json_body={})
        assert direct is not None
        session = direct.session.session
        assert session is not None and session is transport.client  # type: ignore[attr-defined]
        assert len(server.seen) == 2
        assert server.seen[0].transport is server.seen[1].transport, "one kept-alive connection"
    finally:
        await http.aclose()
    assert session.closed, "closing the client closes the session, whoever built it"


async def test_the_outage_watch_hears_of_every_direct_request(
    serve: Callable[[Handler], Awaitable[Server]], monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    monkeypatch.setattr(connection, "log", recorder)
    statuses = iter([503, 200, 404, 502])

    async def handle(_request: web.Request) -> web.Response:
        return web.json_response(RUN, status=next(statuses))

    server = await serve(handle)
    http, transport, direct = make_http_client(
        "aiohttp", connect_timeout_s=2, read_timeout_s=5, max_connections=5, wrap=WatchedTransport
    )
    api = ApiClient(http, server.base, transport=transport, direct=direct)
    refused = ApiClient(http, f"http://127.0.0.1:{unused_port()}/v1", direct=direct)
    try:
        target = api.endpoint("GET", ("threads", ("t", "thread_1")), api_key=KEY)
        for _ in range(3):
            with contextlib.suppress(ApiFailure):
                await api.send(target)
        with pytest.raises(ApiFailure):
            await refused.send(refused.endpoint("GET", ("threads",), api_key=KEY))
        with pytest.raises(ApiFailure):  # the 502, through httpx: the same watch
            await api.request("POST", ("threads",), api_key=KEY, json_body={})
    finally:
        await http.aclose()
    where = server.base.removesuffix("/v1")
    assert [(line["event"], line["where"]) for line in recorder.lines] == [
        ("api.unavailable", where),
        ("api.available", where),
        ("api.unavailable", refused.base_url.removesuffix("/v1")),
        ("api.unavailable", where),
    ]
    assert recorder.lines[0]["error"] == "HTTP 503"
    assert recorder.lines[2]["error"].startswith("ConnectError: ")
    assert recorder.lines[3]["error"] == "HTTP 502"


async def test_a_results_page_with_parameters_asks_for_what_httpx_asks_for(
    serve: Callable[[Handler], Awaitable[Server]],
) -> None:
    # The results fetch (a GET with order, limit and a cursor) takes the direct path too:
    # the server must see the same query, in the same encoding, as through httpx.
    server = await serve(json_answer(200, {"object": "list", "data": []}))
    params = {"run_id": "run_1", "order": "asc", "limit": "100", "after": "msg_a-b_c"}
    for path in PATHS:
        http, transport, direct = make_http_client(
            "httpx" if path == "httpx" else "aiohttp",
            connect_timeout_s=2,
            read_timeout_s=5,
            max_connections=5,
        )
        api = ApiClient(
            http, server.base, transport=transport, direct=direct if path == "direct" else None
        )
        try:
            page = await api.request(
                "GET", ("threads", ("t", "thread_1"), "messages"), api_key=KEY, params=params
            )
            if path != "httpx":  # httpx's transport was handed the session only if it sent
                used = isinstance(transport.client, aiohttp.ClientSession)  # type: ignore[attr-defined]
                assert used is (path == "httpx-aiohttp"), path
        finally:
            await http.aclose()
        assert page.data == {"object": "list", "data": []}, path
    queries = [request.path_qs for request in server.seen]
    assert len(set(queries)) == 1, queries
    assert queries[0] == (
        "/v1/threads/thread_1/messages?run_id=run_1&order=asc&limit=100&after=msg_a-b_c"
    )
    direct_headers, *others = (dict(request.headers) for request in server.seen)
    assert all(direct_headers == other for other in others)
