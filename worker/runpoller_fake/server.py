"""Running the fake: in-process for tests (``start_fake_server``) or as a blocking command."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

from aiohttp import web

from runpoller_fake.app import make_app
from runpoller_fake.state import FakeState


class FakeServer:
    """A listening fake server; ``base_url`` ends in ``/v1`` like the real API's."""

    def __init__(self, runner: web.AppRunner, state: FakeState, host: str, port: int) -> None:
        self._runner = runner
        self.state = state
        self.host = host
        self.port = port
        self.root_url = f"http://{host}:{port}"
        self.base_url = f"{self.root_url}/v1"

    async def close(self) -> None:
        await self._runner.cleanup()

    async def __aenter__(self) -> FakeServer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


async def start_fake_server(
    host: str = "127.0.0.1",
    port: int = 0,
    state: FakeState | None = None,
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> FakeServer:
    """Listen on ``host:port`` (0 = a free port) and return at once.

    With ``webhook_url`` and ``webhook_secret``, ended responses are sent there as webhooks
    (``runpoller_fake.webhooks``; also ``POST /_fake/webhooks``)."""
    state = state if state is not None else FakeState()
    if webhook_url is not None or webhook_secret is not None:
        state.webhooks.configure(url=webhook_url, secret=webhook_secret)
    # No access log: it would cost more than the handlers under benchmark load.
    runner = web.AppRunner(
        make_app(state), access_log=None, handle_signals=False, shutdown_timeout=1.0
    )
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound_port = runner.addresses[0][1]
    return FakeServer(runner, state, host, int(bound_port))


@asynccontextmanager
async def running_fake_server(
    host: str = "127.0.0.1",
    port: int = 0,
    state: FakeState | None = None,
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> AsyncIterator[FakeServer]:
    server = await start_fake_server(
        host, port, state, webhook_url=webhook_url, webhook_secret=webhook_secret
    )
    try:
        yield server
    finally:
        await server.close()


def serve(
    host: str,
    port: int,
    api_keys: Iterable[str] | None,
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> None:
    """Run until SIGINT/SIGTERM (``runpoller fake-openai``); prints the base URL once ready.

    On uvloop where installed, like the workers: the fake API's own latency is part of every
    round trip the benchmark measures, for every design alike.
    """
    from runpoller.worker.loops import new_event_loop

    state = FakeState(api_keys=api_keys, webhook_url=webhook_url, webhook_secret=webhook_secret)
    with asyncio.Runner(loop_factory=lambda: new_event_loop("auto")) as runner:
        runner.run(_serve_forever(host, port, state))


async def _serve_forever(host: str, port: int, state: FakeState) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with running_fake_server(host, port, state) as server:
        print(f"fake OpenAI server listening on {server.base_url}", flush=True)
        await stop.wait()
