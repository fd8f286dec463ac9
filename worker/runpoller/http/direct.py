"""A run's poll sent straight through the aiohttp session, without httpx in between.

A poll is a GET with no body and no parameters, the same request every interval. Through
httpx and httpx-aiohttp's transport each one builds an ``httpx.Request`` and an
``httpx.Response``, converts the headers both ways and reads the body through a stream
adapter: about a third of a poll's CPU goes there (docs/performance.md, "third round"), and
the request cached per run for it was the biggest item of a run's memory. This path hands the
same request to the same ``aiohttp.ClientSession`` the httpx transport uses (one pool, one
connection limit), and keeps per run only a URL string; the headers are one object per
(API key, beta), shared by every run. Other requests without a body (a page of a run's
results, with its parameters encoded into the URL as httpx encodes them) take it too.

It answers as the httpx path does: the answer is read by the same functions
(``api.answer``), an aiohttp error becomes the httpx error httpx's own transport raises for
the same event, so ``api.transport_failure`` classifies it (what surely never left is not
ambiguous: a refused connection; whatever may have reached the API is), and the outage
watch (``HostWatch``) hears of every answer and every failure to get one, as it does through
the httpx transport it wraps.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport
from multidict import CIMultiDict, CIMultiDictProxy

from runpoller.http.api import ApiFailure, ApiResponse, HostWatch, answer, transport_failure

if TYPE_CHECKING:
    from collections.abc import Mapping

WireHeaders = CIMultiDictProxy[str]


class SharedSession:
    """The one aiohttp session of the worker's polls and of httpx-aiohttp's transport, built
    by whichever sends first (inside the running loop, as aiohttp wants), with a cookie jar
    that stores nothing (see ``api.make_http_client``)."""

    def __init__(self, limits: httpx.Limits) -> None:
        self.limits = limits
        self.session: aiohttp.ClientSession | None = None

    def __call__(self) -> aiohttp.ClientSession:
        if self.session is None:
            connector = aiohttp.TCPConnector(
                keepalive_timeout=self.limits.keepalive_expiry,
                ssl=httpx.create_ssl_context(),
                limit=self.limits.max_connections or 0,
            )
            self.session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar()
            )
        return self.session

    async def aclose(self) -> None:
        if self.session is not None:
            await self.session.close()


class SharedSessionTransport(AiohttpTransport):
    """httpx-aiohttp's transport over the shared session; closing it closes the session,
    whichever path built it. Its errors are the direct path's (:func:`httpx_error`):
    httpx-aiohttp raises ``ConnectTimeout`` for a refused connection as for a dropped one,
    so a create whose connection was refused counted as maybe processed."""

    def __init__(self, session: SharedSession) -> None:
        super().__init__(limits=session.limits, client=session)
        self.shared = session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await super().handle_async_request(request)
        except httpx.TransportError as exc:
            cause = exc.__cause__
            error = httpx_error(cause) if isinstance(cause, aiohttp.ClientError) else None
            if error is None:
                raise
            raise error from cause

    async def aclose(self) -> None:
        await self.shared.aclose()


def httpx_error(exc: aiohttp.ClientError) -> httpx.TransportError | None:
    """The error httpx's own transport raises for what ``exc`` says happened (None: not a
    failure of the transport). A refused connection (or a name that does not resolve, a
    refused certificate) never sent the request; a connect timeout may be the pool's or the
    connection's (aiohttp does not tell them apart), so it counts as a connect timeout."""
    message = str(exc)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(message)
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.ReadTimeout(message)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return httpx.RemoteProtocolError(message)  # closed before (all of) its answer
    if isinstance(exc, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError):
        return httpx.ReadError(message)
    if isinstance(exc, aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(message)  # an answer that is not HTTP
    return None


class DirectPath:
    """Sends body-less requests through the shared session (see the module's docstring)."""

    def __init__(
        self,
        session: SharedSession,
        *,
        timeout: httpx.Timeout,
        headers: httpx.Headers,
        watch: Callable[[httpx.URL], HostWatch] | None = None,
    ) -> None:
        """``timeout`` and ``headers`` are the httpx client's (its defaults: Accept,
        Accept-Encoding, User-Agent…), so a poll sends what the client would; ``watch``
        finds the watch of a URL's host."""
        self.session = session
        # The client's timeouts as httpx-aiohttp's transport hands them to aiohttp: the
        # connection's, each read's, and the wait for a connection from the pool.
        self.timeout = aiohttp.ClientTimeout(
            sock_connect=timeout.connect, sock_read=timeout.read, connect=timeout.pool
        )
        self.defaults = headers
        self.watch = watch

    def wire_headers(self, headers: Mapping[str, str]) -> WireHeaders:
        """The headers a request with ``headers`` sends (the client's defaults, then these),
        read-only: one object shared by every request with them."""
        merged = CIMultiDict(self.defaults)
        merged.update(headers)
        return CIMultiDictProxy(merged)

    def watch_for(self, url: httpx.URL) -> HostWatch | None:
        return None if self.watch is None else self.watch(url)

    async def send(
        self,
        method: str,
        url: str,
        headers: WireHeaders,
        watch: HostWatch | None,
        *,
        accepted: bool = False,
    ) -> ApiResponse:
        """One request without a body; its answer as :func:`api.answer` reads it, or
        ApiFailure."""
        answered = False
        try:
            async with self.session().request(
                method, url, headers=headers, allow_redirects=False, timeout=self.timeout
            ) as response:
                answered = True
                if watch is not None:
                    watch.answered(response.status)
                body = await response.read()
        except aiohttp.ClientError as exc:
            error = httpx_error(exc)
            if error is None:
                raise
            if watch is not None and not answered:
                watch.failed(error)
            raise ApiFailure(transport_failure(error)) from None
        return answer(response.status, response.reason, response.headers, body, accepted=accepted)
