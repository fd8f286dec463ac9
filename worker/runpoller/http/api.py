"""A thin HTTP client for OpenAI-style APIs: one request in, JSON or a classified failure out.

It does not retry: whether and when to retry is a decision of the engine (``runpoller.engine``),
which knows the run's deadline. This module only classifies what happened, following
openai-python's rules (retry 408/409/429/5xx and connection errors; obey ``x-should-retry``;
``retry-after-ms`` then ``retry-after``), and recognises the "race" 400s that mean the run
has already moved on. Path segments are validated before they reach a URL.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import TYPE_CHECKING, Any, Protocol

import httpx
from httpx_sse import EventSource

from runpoller.engine import Failure
from runpoller.protocol import API_ID_PATTERN

if TYPE_CHECKING:
    from runpoller.http.direct import DirectPath, WireHeaders

_ID_RE = re.compile(API_ID_PATTERN)
_RACE_PATTERNS = (
    re.compile(r"cannot cancel", re.IGNORECASE),
    re.compile(r"do(es)? not accept tool outputs", re.IGNORECASE),
    re.compile(r"only .* can be cancel", re.IGNORECASE),
)
_RETRYABLE_STATUS = frozenset({408, 409, 429})


class InvalidId(ValueError):
    """An id that must not be put into a URL path."""


# Errors raised before the request could reach the API: repeating it cannot do it twice.
# (Not ConnectTimeout: httpx-aiohttp's response stream maps a server that drops the
# connection while answering, aiohttp's ServerDisconnectedError, onto it. The requests
# themselves raise what httpx's transport would: see ``runpoller.http.direct.httpx_error``.)
_NOT_SENT = (httpx.ConnectError, httpx.PoolTimeout)


def check_id(value: str, what: str) -> str:
    if not _ID_RE.fullmatch(value):
        raise InvalidId(f"{what} {value[:80]!r} is not a valid id (letters, digits, _ and - only)")
    return value


@dataclass(frozen=True, slots=True)
class ApiResponse:
    data: dict[str, Any]
    headers: Mapping[str, str]

    @property
    def poll_after_s(self) -> float | None:
        raw = self.headers.get("openai-poll-after-ms")
        try:
            return float(raw) / 1000 if raw is not None else None
        except ValueError:
            return None


class ApiFailure(Exception):
    """A request that failed; ``failure`` is what the engine decides on."""

    def __init__(self, failure: Failure) -> None:
        super().__init__(failure.message)
        self.failure = failure


def retry_after_s(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The server's requested delay: ``retry-after-ms``, else ``retry-after`` (s or HTTP date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms is not None:
        try:
            return max(float(raw_ms) / 1000, 0.0)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(float(raw), 0.0)
    except ValueError:
        pass
    parsed = email.utils.parsedate_to_datetime(raw) if raw else None
    if parsed is None:
        return None
    return max(parsed.timestamp() - (time.time() if now is None else now), 0.0)


def classify(response: httpx.Response) -> Failure:
    """Turn a non-2xx response into a :class:`Failure`."""
    return refusal(response.status_code, response.reason_phrase, response.headers, response.content)


def refusal(status: int, reason: str | None, headers: Mapping[str, str], content: bytes) -> Failure:
    """A non-2xx answer (its status, reason phrase, headers and body) as a :class:`Failure`."""
    message, code = _error_message(content, reason or httpx.codes.get_reason_phrase(status))
    should_retry = headers.get("x-should-retry")
    if should_retry == "true":
        retryable = True
    elif should_retry == "false":
        retryable = False
    else:
        retryable = status in _RETRYABLE_STATUS or status >= 500
    race = status == 400 and any(p.search(message) for p in _RACE_PATTERNS)
    return Failure(
        message=f"HTTP {status}: {message}",
        status_code=status,
        code=code,
        retryable=retryable and not race,
        race=race,
        retry_after_s=retry_after_s(headers),
    )


def _error_message(content: bytes, reason: str) -> tuple[str, str | None]:
    try:
        body = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        code = err.get("code") if isinstance(err.get("code"), str) else None
        return str(err.get("message") or reason)[:500], code
    return (reason or "error"), None


class Endpoint:
    """One request target (method, URL, headers), checked and built once, sent many times.

    A run's poll is the same GET every interval: checking and normalising its URL (httpx
    parses every character) once per run, not per poll, saves a good share of a poll's CPU.
    A target keeps the URL as a string and the headers its API key shares with every other
    target (``wire``: the same as the direct path sends them, see ``runpoller.http.direct``);
    without the direct path, with the client's transport at hand, the whole ``httpx.Request``
    is built once and reused.
    """

    __slots__ = ("_request", "headers", "method", "url", "wire")

    def __init__(
        self, method: str, url: str, headers: httpx.Headers, wire: WireHeaders | None = None
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.wire = wire
        self._request: httpx.Request | None = None


# Distinct (key, beta) header sets kept at most; a worker usually sees a handful of keys.
MAX_HEADER_SETS = 1024


class ApiClient:
    """Requests against one base URL, authenticated per call (keys can differ per job)."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        base_url: str,
        *,
        assistants_version: int = 2,
        transport: httpx.AsyncBaseTransport | None = None,
        stream_http: httpx.AsyncClient | None = None,
        direct: DirectPath | None = None,
    ) -> None:
        """``direct``: the path a request without a body takes, around httpx
        (the aiohttp session under ``http``'s transport, see :func:`make_http_client`).
        ``transport``: the one ``http`` sends through; given (and no ``direct``), a prepared
        request without a body is handed to it directly (httpx's transport API), skipping
        the client's per-call machinery (auth and redirect flows, mount lookup, cookie
        handling): the client has nothing to add to such a request. ``stream_http``: the
        client streams are opened with (default ``http``): its own pool, so streams held open
        for minutes never take the connections polls need."""
        self.http = http
        self.stream_http = stream_http or http
        self.transport = transport
        self.direct = direct
        self.base_url = base_url.rstrip("/")
        self.beta = f"assistants=v{assistants_version}"
        self._headers: dict[tuple[str, str], tuple[httpx.Headers, WireHeaders | None]] = {}
        # Every target is under the base URL: one host, one watch.
        self._watch = direct.watch_for(httpx.URL(self.base_url)) if direct else None

    def endpoint(
        self,
        method: str,
        segments: Sequence[str | tuple[str, str]],
        *,
        api_key: str,
        assistants: bool = False,
        beta: str = "",
    ) -> Endpoint:
        """Check the ids and build the target. ``segments`` are literal path parts or
        ``(what, id)`` pairs; an id that does not match the id pattern raises InvalidId.
        ``assistants`` sends the Assistants beta header; ``beta`` another ``OpenAI-Beta``
        value (``agents=v1``)."""
        parts: list[str] = []
        for segment in segments:
            if isinstance(segment, tuple):
                parts.append(check_id(segment[1], segment[0]))
            else:
                parts.append(segment)
        # httpx checks and normalises it; the string is what httpx-aiohttp would send.
        url = str(httpx.URL(self.base_url + "/" + "/".join(parts)))
        headers, wire = self._headers_for(api_key, self.beta if assistants else beta)
        return Endpoint(method, url, headers, wire)

    def _headers_for(self, api_key: str, beta: str) -> tuple[httpx.Headers, WireHeaders | None]:
        found = self._headers.get((api_key, beta))
        if found is None:
            if len(self._headers) >= MAX_HEADER_SETS:
                self._headers.clear()
            values = {"Authorization": f"Bearer {api_key}"}
            if beta:
                values["OpenAI-Beta"] = beta
            # Shared by every request with this key: httpx copies headers, never changes them.
            headers = httpx.Headers(values)
            wire = None if self.direct is None else self.direct.wire_headers(headers)
            found = self._headers[(api_key, beta)] = (headers, wire)
        return found

    async def request(
        self,
        method: str,
        segments: Sequence[str | tuple[str, str]],
        *,
        api_key: str,
        assistants: bool = False,
        beta: str = "",
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        accepted: bool = False,
    ) -> ApiResponse:
        """Send one request. ``segments`` are literal path parts or ``(what, id)`` pairs."""
        target = self.endpoint(method, segments, api_key=api_key, assistants=assistants, beta=beta)
        return await self.send(target, json_body=json_body, params=params, accepted=accepted)

    async def send(
        self,
        target: Endpoint,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        accepted: bool = False,
    ) -> ApiResponse:
        """Send a request to a prepared target (see :meth:`endpoint`). ``accepted``: the
        request is answered with no object (HTTP 202 and an empty body, as the Agents API's
        session events are): any success is an empty answer."""
        if json_body is None:
            direct, wire = self.direct, target.wire
            if direct is not None and wire is not None:
                # Parameters (a results page's order, limit, cursor) encoded as httpx
                # encodes them into the URL it sends.
                url = target.url if params is None else str(httpx.URL(target.url, params=params))
                return await direct.send(target.method, url, wire, self._watch, accepted=accepted)
        http, transport = self.http, self.transport
        try:
            if transport is not None and json_body is None and params is None:
                # Without a body or parameters the request a target builds is the same every
                # time (the client keeps no cookies to merge): build it once, send it as is.
                request = target._request
                if request is None:
                    request = target._request = http.build_request(
                        target.method, target.url, headers=target.headers
                    )
                response = await transport.handle_async_request(request)
                try:
                    await response.aread()
                finally:
                    await response.aclose()
            else:
                response = await http.request(
                    target.method, target.url, headers=target.headers, json=json_body, params=params
                )
        except httpx.HTTPError as exc:
            raise ApiFailure(transport_failure(exc)) from None
        return _answer(response, accepted=accepted)

    async def open_stream(
        self,
        method: str,
        segments: Sequence[str | tuple[str, str]],
        *,
        api_key: str,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> EventStream | ApiResponse:
        """Send a request whose answer should be a server-sent-events stream, and hand over
        the open stream (the caller closes it), or the object a server that does not stream
        answered with instead. A refusal raises ApiFailure, as :meth:`send` does."""
        target = self.endpoint(method, segments, api_key=api_key)
        headers = httpx.Headers(target.headers)  # a copy: the target's are shared
        headers["Accept"] = "text/event-stream"
        http = self.stream_http
        timeout = httpx.Timeout(STREAM_IDLE_TIMEOUT_S, connect=http.timeout.connect)
        request = http.build_request(
            method, target.url, headers=headers, json=json_body, params=params, timeout=timeout
        )
        try:
            response = await http.send(request, stream=True)
        except httpx.HTTPError as exc:
            raise ApiFailure(transport_failure(exc)) from None
        content_type = response.headers.get("content-type", "")
        if response.status_code < 300 and content_type.startswith("text/event-stream"):
            return EventStream(response)
        try:
            await response.aread()
        except httpx.HTTPError as exc:
            raise ApiFailure(transport_failure(exc)) from None
        finally:
            await response.aclose()
        # A refusal, or a server that answered with the object instead (it does not stream).
        return _answer(response)


def _answer(response: httpx.Response, *, accepted: bool = False) -> ApiResponse:
    """A read httpx answer as :func:`answer` reads it."""
    return answer(
        response.status_code,
        response.reason_phrase,
        response.headers,
        response.content,
        accepted=accepted,
    )


def answer(
    status: int,
    reason: str | None,
    headers: Mapping[str, str],
    content: bytes,
    *,
    accepted: bool = False,
) -> ApiResponse:
    """A read answer (its status, reason phrase, headers and body) as the object it carries
    (``accepted``: any 2xx is all there is to know, its body is not read); a refusal or a body
    that is no JSON object raises ApiFailure."""
    if status >= 300:
        raise ApiFailure(refusal(status, reason, headers, content))
    if accepted:
        return ApiResponse({}, headers)
    try:
        data = json.loads(content)
    except (json.JSONDecodeError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise ApiFailure(
            Failure(
                f"HTTP {status}: the response body is not a JSON object",
                status_code=status,
                retryable=True,
                ambiguous=True,  # answered with success: it was processed
            )
        )
    return ApiResponse(data, headers)


# How long an open stream may stay silent before it counts as broken (then resumed).
STREAM_IDLE_TIMEOUT_S = 60.0


class EventStream:
    """An open server-sent-events answer: its events' JSON objects, in order, until it ends."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self._events = EventSource(response).aiter_sse()

    async def next(self) -> dict[str, Any] | None:
        """The next event (None: the stream ended); a broken connection raises ApiFailure."""
        try:
            event = await anext(self._events)
        except StopAsyncIteration:
            return None
        except httpx.HTTPError as exc:
            raise ApiFailure(transport_failure(exc)) from None
        try:
            data = json.loads(event.data)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ApiFailure(
                Failure("a stream event is not a JSON object", retryable=True, ambiguous=True)
            )
        return data

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._events.aclose()
        with contextlib.suppress(Exception):
            await self.response.aclose()


def transport_failure(exc: httpx.HTTPError) -> Failure:
    """A request that got no HTTP answer: a timeout or a connection error; ambiguous unless
    it surely never left (see ``_NOT_SENT``)."""
    what = "request timed out" if isinstance(exc, httpx.TimeoutException) else "connection error"
    return Failure(
        f"{what} ({type(exc).__name__})",
        retryable=True,
        ambiguous=not isinstance(exc, _NOT_SENT),
    )


class HostWatch(Protocol):
    """What watches one API host's availability: told of every answer (its status) and of
    every request that got none (the httpx error it raised)."""

    def answered(self, status: int) -> None: ...

    def failed(self, error: httpx.TransportError) -> None: ...


class WatchingTransport(httpx.AsyncBaseTransport):
    """A transport around another that watches the hosts it sends to (``wrap`` of
    :func:`make_http_client`): the direct path tells the same watch of its requests."""

    def host_watch(self, url: httpx.URL) -> HostWatch:
        raise NotImplementedError


ACCEPT_ENCODING = "gzip, deflate"


def make_http_client(
    transport: str,
    *,
    connect_timeout_s: float,
    read_timeout_s: float,
    max_connections: int,
    wrap: Callable[[httpx.AsyncBaseTransport], WatchingTransport] | None = None,
) -> tuple[httpx.AsyncClient, httpx.AsyncBaseTransport, DirectPath | None]:
    """The worker's one shared client, the transport it sends through (``wrap``: a
    transport around it that watches for outages) and, with ``aiohttp``, the direct path
    around httpx for requests without a body (see ``runpoller.http.direct``; None with
    ``httpx``).

    ``aiohttp`` uses httpx-aiohttp's transport (faster, see docs/performance.md) over the
    aiohttp session the direct path sends through: one pool, one connection limit. The client
    keeps no cookies: it serves every job's API key, and a cookie one tenant's response set
    must not ride along with another tenant's requests (the API needs none). Both jars are
    empty: httpx's, and the aiohttp session's (httpx-aiohttp's default session keeps every
    cookie a host name sets, apart from httpx's jar).
    """
    timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s)
    limits = httpx.Limits(
        max_connections=max_connections, max_keepalive_connections=max_connections
    )
    sender: httpx.AsyncBaseTransport
    session = None
    if transport == "aiohttp":
        from runpoller.http.direct import SharedSession, SharedSessionTransport

        session = SharedSession(limits)
        sender = SharedSessionTransport(session)
    else:
        sender = httpx.AsyncHTTPTransport(limits=limits)
    watched = None if wrap is None else wrap(sender)
    client = httpx.AsyncClient(
        transport=watched or sender,
        timeout=timeout,
        trust_env=False,
        cookies=no_cookies(),
        # What both paths decode whatever else is installed: httpx would also offer br or
        # zstd when brotli or zstandard happens to be, and aiohttp (the direct path) decodes
        # those only with packages of its own.
        headers={"Accept-Encoding": ACCEPT_ENCODING},
    )
    direct = None
    if session is not None:
        from runpoller.http.direct import DirectPath

        direct = DirectPath(
            session,
            timeout=timeout,
            headers=client.headers,
            watch=None if watched is None else watched.host_watch,
        )
    return client, watched or sender, direct


def no_cookies() -> CookieJar:
    """A cookie jar that stores nothing."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
