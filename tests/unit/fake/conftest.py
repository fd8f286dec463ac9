"""Fixtures: a fake server on a free port, driven by a manual clock, and spec-checking clients."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from runpoller_fake import FakeServer, FakeState, running_fake_server
from runpoller_fake.testing import FakeClock, check_reply

ASSISTANTS_HEADERS = {"Authorization": "Bearer sk-test-key", "OpenAI-Beta": "assistants=v2"}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> FakeState:
    return FakeState(clock=clock, wall_clock=clock.wall)


@pytest.fixture
async def server(state: FakeState) -> AsyncIterator[FakeServer]:
    async with running_fake_server(state=state) as running:
        yield running


@pytest.fixture
async def client(server: FakeServer) -> AsyncIterator[httpx.AsyncClient]:
    """An Assistants-ready client; every reply it gets is checked against the spec."""
    async with httpx.AsyncClient(
        base_url=server.base_url + "/",
        headers=ASSISTANTS_HEADERS,
        event_hooks={"response": [check_reply]},
    ) as http:
        yield http


@pytest.fixture
async def control(server: FakeServer) -> AsyncIterator[httpx.AsyncClient]:
    """Client for the ``/_fake`` control endpoints (no auth, not part of the spec)."""
    async with httpx.AsyncClient(base_url=server.root_url + "/_fake/") as http:
        yield http
