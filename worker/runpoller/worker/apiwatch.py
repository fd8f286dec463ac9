"""The API's outages, as the worker's log tells them: a watch on every request to an API host.

Every request goes through :class:`WatchedTransport` (the transport around the shared
client's) or, for a poll, the direct path around httpx (``runpoller.http.direct``), which
tells the same :class:`ApiHostWatch`: a connection error or timeout, or a 502/503/504, is a
failure of that host; any other answer ends its outage. Each host's
:class:`~runpoller.redis.connection.OutageMonitor` logs one warning when an outage starts (the
host, the error), one a minute while it lasts, one when it ends, with counts. Nothing is
retried or changed here: the engine decides that.
"""

from __future__ import annotations

import httpx

from runpoller.http.api import WatchingTransport
from runpoller.redis.connection import OutageMonitor

UNAVAILABLE = frozenset({502, 503, 504})


class ApiHostWatch:
    """One host's watch: what an answer or a failure means for its availability."""

    __slots__ = ("monitor",)

    def __init__(self, monitor: OutageMonitor) -> None:
        self.monitor = monitor

    def answered(self, status: int) -> None:
        if status in UNAVAILABLE:
            self.monitor.note_failure(f"HTTP {status}")
        else:
            self.monitor.note_success()

    def failed(self, error: httpx.TransportError) -> None:
        self.monitor.note_failure(error)


class WatchedTransport(WatchingTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, *, report_s: float = 60.0) -> None:
        self.inner = inner
        self.report_s = report_s
        self.monitors: dict[str, OutageMonitor] = {}
        self._watches: dict[str, ApiHostWatch] = {}

    def host_watch(self, url: httpx.URL) -> ApiHostWatch:
        port = url.port or (443 if url.scheme == "https" else 80)
        where = f"{url.scheme}://{url.host}:{port}"
        found = self._watches.get(where)
        if found is None:
            monitor = self.monitors[where] = OutageMonitor(
                where=where, what="api", report_s=self.report_s, retrying=None
            )
            found = self._watches[where] = ApiHostWatch(monitor)
        return found

    def monitor(self, url: httpx.URL) -> OutageMonitor:
        return self.host_watch(url).monitor

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        watch = self.host_watch(request.url)
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.TransportError as exc:
            watch.failed(exc)
            raise
        watch.answered(response.status_code)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
