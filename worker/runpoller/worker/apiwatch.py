"""The API's outages, as the worker's log tells them: a transport around the shared client's.

Every request to an API host goes through :class:`WatchedTransport`: a connection error or
timeout, or a 502/503/504, is a failure of that host; any other answer ends its outage. Each
host's :class:`~runpoller.redis.connection.OutageMonitor` logs one warning when an outage
starts (the host, the error), one a minute while it lasts, one when it ends, with counts.
Nothing is retried or changed here: the engine decides that.
"""

from __future__ import annotations

import httpx

from runpoller.redis.connection import OutageMonitor

UNAVAILABLE = frozenset({502, 503, 504})


class WatchedTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.AsyncBaseTransport, *, report_s: float = 60.0) -> None:
        self.inner = inner
        self.report_s = report_s
        self.monitors: dict[str, OutageMonitor] = {}

    def monitor(self, url: httpx.URL) -> OutageMonitor:
        port = url.port or (443 if url.scheme == "https" else 80)
        where = f"{url.scheme}://{url.host}:{port}"
        found = self.monitors.get(where)
        if found is None:
            found = self.monitors[where] = OutageMonitor(
                where=where, what="api", report_s=self.report_s, retrying=None
            )
        return found

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        monitor = self.monitor(request.url)
        try:
            response = await self.inner.handle_async_request(request)
        except httpx.TransportError as exc:
            monitor.note_failure(exc)
            raise
        if response.status_code in UNAVAILABLE:
            monitor.note_failure(f"HTTP {response.status_code}")
        else:
            monitor.note_success()
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()
