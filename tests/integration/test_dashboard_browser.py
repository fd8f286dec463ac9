"""``runpoller dashboard`` in a real browser: Debian's chromium driven by Playwright, against
a real worker, the fake OpenAI server and a real Redis.

The browser is /usr/bin/chromium (``make install`` installs it where it is missing; nothing
is downloaded by Playwright). Each page is screenshotted; ``make screenshots`` (which sets
RUNPOLLER_SCREENSHOTS=docs/img) keeps them as the images docs/operations.md shows, otherwise
they go to a temporary directory.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import BrowserContext, Page, async_playwright, expect
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.config import Settings
from runpoller.dashboard.server import start, stop
from runpoller.protocol import FN_RUN, AcceptedEvent, Keys, RequiresActionEvent
from runpoller.protocol.serde import serialize_job
from tests.integration.conftest import WorkerHandle
from tests.procs import wait_for

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("RUNPOLLER_CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
IMG = Path(os.environ.get("RUNPOLLER_SCREENSHOTS") or tempfile.mkdtemp(prefix="rp-shots-"))
TOKEN = "operator-token-for-the-browser-tests"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
TIMEOUT_MS = 15_000

StartWorker = Callable[..., Awaitable[WorkerHandle]]
Dashboard = Callable[..., Awaitable[str]]


@pytest.fixture
async def browser() -> AsyncIterator[BrowserContext]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make install` installs Debian's chromium")
    async with async_playwright() as pw:
        with tempfile.TemporaryDirectory(prefix="rp-chromium-") as profile:
            context = await pw.chromium.launch_persistent_context(
                profile,
                executable_path=CHROMIUM,
                args=FLAGS,
                headless=True,
                viewport=DESKTOP,
            )
            context.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            yield context
            await context.close()


@pytest.fixture
async def dashboard(make_settings: Callable[..., Settings]) -> AsyncIterator[Dashboard]:
    """Start a dashboard (on a free port) on the test's namespace; returns its URL."""
    started: list[Any] = []

    async def run(token: str | None = None) -> str:
        runner, redis, url = await start(make_settings(), host="127.0.0.1", port=0, token=token)
        started.append((runner, redis))
        return url

    yield run
    for runner, redis in started:
        await stop(runner, redis)


@dataclass
class Cluster:
    """What every test here uses: a worker's Redis and client, the fake, a dashboard, a browser."""

    start_worker: StartWorker
    client: RunpollerClient
    redis: Redis
    namespace: str
    fake_http: httpx.AsyncClient
    dashboard: Dashboard
    browser: BrowserContext

    async def job(self, script: str) -> dict[str, Any]:
        return await fake_job(self.fake_http, script)

    async def dead_letter(self, name: str, body: bytes) -> None:
        """Put ``body`` on the queue as a job and wait for the worker to dead-letter it."""
        keys = Keys(self.namespace)
        before = int(await self.redis.xlen(keys.dead_letters))
        await self.redis.set(f"arq:job:{self.namespace}-{name}", body, px=60_000)
        await self.redis.zadd(
            f"{self.namespace}:queue", {f"{self.namespace}-{name}": int(time.time() * 1000)}
        )

        async def lettered() -> bool:
            return int(await self.redis.xlen(keys.dead_letters)) > before

        await wait_for(lettered, 15, f"the dead letter {name}")


@pytest.fixture
async def cluster(
    start_worker: StartWorker,
    client: RunpollerClient,
    redis: Redis,
    namespace: str,
    fake_http: httpx.AsyncClient,
    dashboard: Dashboard,
    browser: BrowserContext,
) -> Cluster:
    await start_worker()
    return Cluster(start_worker, client, redis, namespace, fake_http, dashboard, browser)


async def fake_job(http: httpx.AsyncClient, script: str) -> dict[str, Any]:
    body = (await http.post("/_fake/runs", json={"script": script})).json()
    return {"kind": "assistants_run", "thread_id": body["thread_id"], "run_id": body["id"]}


async def first_event(client: RunpollerClient, run_id: str, kind: type) -> Any:
    async for item in client.events(run_id):
        if isinstance(item.event, kind):
            return item.event
    raise AssertionError(f"no {kind.__name__} event for {run_id}")


async def page_at(browser: BrowserContext, url: str, viewport: dict[str, int] = DESKTOP) -> Page:
    page = await browser.new_page()
    await page.set_viewport_size(viewport)  # type: ignore[arg-type]
    await page.goto(url)
    return page


async def shot(page: Page, name: str) -> None:
    IMG.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(IMG / name), full_page=True)


async def test_overview_shows_the_clusters_numbers(cluster: Cluster) -> None:
    c = cluster
    done = await c.client.enqueue(await c.job("complete"))
    await c.client.wait(done, 15)
    waiting = await c.client.enqueue(await c.job("requires_action"))
    await first_event(c.client, waiting, RequiresActionEvent)
    await c.client.enqueue(await c.job("never_ends"))
    await c.dead_letter("bad", b"not json")  # a job no run can be tied to
    later = int(time.time() * 1000) + 3_600_000  # a deferred job: due in an hour
    await c.redis.zadd(f"{c.namespace}:queue", {"run:due-later": later})
    page = await page_at(c.browser, await c.dashboard())
    metric = lambda name: page.locator(f'[data-metric="{name}"]')  # noqa: E731
    await expect(metric("live-workers")).to_have_text("1")
    await expect(metric("in-flight")).to_have_text("2")
    await expect(metric("polling")).to_have_text("1")
    await expect(metric("awaiting-outputs")).to_have_text("1")
    await expect(metric("cancelling")).to_have_text("0")
    await expect(metric("ready")).to_have_text("0")
    await expect(metric("deferred")).to_have_text("1")
    await expect(metric("next-deferred")).to_have_text(re.compile(r"^(59|60) min$"))
    await expect(metric("ended-index")).to_have_text("1")
    await expect(metric("dead-letters")).to_have_text("1")
    version = importlib.metadata.version("runpoller")
    await expect(page.locator("tr[data-worker] td").last).to_have_text(version)
    await expect(page.locator("#outcomes-chart")).to_be_visible()
    # The chart's numbers, as a table: this minute's one completed run.
    await page.get_by_text("The chart's numbers as a table").click()
    table = page.locator("details table")
    await expect(table.locator("thead")).to_contain_text("completed")
    await expect(table.locator("tbody tr")).to_have_count(1)
    await expect(table.locator("tbody td").nth(1)).to_have_text("1")
    await page.get_by_text("The chart's numbers as a table").click()
    await shot(page, "dashboard-overview.png")
    phone = await page_at(c.browser, await c.dashboard(), PHONE)
    await expect(phone.locator('[data-metric="awaiting-outputs"]')).to_have_text("1")
    wide = await phone.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not wide, "the overview scrolls sideways at phone width"
    await shot(phone, "dashboard-overview-phone.png")


async def test_a_runs_timeline_shows_its_tool_round_with_the_apps_outputs_redacted(
    cluster: Cluster,
) -> None:
    c = cluster
    run_id = await c.client.enqueue(
        {**await c.job("requires_action"), "metadata": {"user": "u-42"}}
    )
    ask = await first_event(c.client, run_id, RequiresActionEvent)
    call = ask.tool_calls[0]
    secret = "sk-live-abcdefghijklmnop"
    await c.client.submit_tool_outputs(run_id, 1, {call.id: f'{{"temp_c": 21, "key": "{secret}"}}'})
    final = await c.client.wait(run_id, 15)
    assert final.status == "completed"
    url = await c.dashboard()
    page = await page_at(c.browser, url + "#/runs?meta=user%3Du-42")
    row = page.locator(f'tr[data-run="{run_id}"]')
    await expect(row).to_contain_text("completed")
    await shot(page, "dashboard-runs.png")
    await row.get_by_role("link", name=run_id).click()
    await expect(page.locator('[data-field="status"]')).to_have_text("ended")
    tool = page.locator(f'[data-tool-call="{call.id}"]')
    await expect(tool).to_contain_text("get_weather")
    await expect(tool).to_contain_text('{"city": "Paris"}')
    output = page.locator(f'[data-output="{call.id}"]')
    await expect(output).to_contain_text('"temp_c": 21')
    assert secret not in await page.content()
    events = page.locator("ol.timeline > li")
    types = [await e.get_attribute("data-event") for e in await events.all()]
    assert types[0] == "accepted" and types[-1] == "final" and "requires_action" in types
    await expect(page.locator('li[data-event="final"]')).to_contain_text("completed")
    await shot(page, "dashboard-run.png")
    await page.set_viewport_size(PHONE)  # type: ignore[arg-type]
    await expect(tool).to_be_visible()
    wide = await page.evaluate("document.documentElement.scrollWidth > window.innerWidth")
    assert not wide, "the run page scrolls sideways at phone width"


async def running(c: Cluster) -> str:
    """A run that polls until it is cancelled."""
    run_id = await c.client.enqueue(await c.job("never_ends"))
    await first_event(c.client, run_id, AcceptedEvent)
    return run_id


async def test_with_the_token_the_cancel_button_cancels_the_run(cluster: Cluster) -> None:
    c = cluster
    run_id = await running(c)
    url = await c.dashboard(token=TOKEN)
    page = await page_at(c.browser, f"{url}#/runs/{run_id}")
    await expect(page.locator('[data-field="status"]')).to_have_text("in_flight")
    assert await page.locator("#cancel-run").count() == 0, "no button before signing in"
    # Keyboard only: the token field, Enter to sign in, Tab to the button, Enter, Enter.
    await page.get_by_label("Operator token").fill(TOKEN)
    await page.keyboard.press("Enter")
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    await expect(page.locator("#cancel-run")).to_be_visible()
    await page.keyboard.press("Tab")  # from the page, the first control is the button
    await expect(page.locator("#cancel-run")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#confirm-cancel")).to_be_focused()
    await shot(page, "dashboard-cancel.png")
    await page.keyboard.press("Enter")
    await expect(page.locator('[data-field="status"]')).to_have_text("ended")
    await expect(page.locator('[data-field="final-status"]')).to_have_text("cancelled")
    await expect(page.locator('li[data-event="final"]')).to_contain_text("cancelled_by_app")
    final = await c.client.result(run_id)
    assert final is not None and final.status == "cancelled"
    assert final.cancel is not None and final.cancel.app_reason == "cancelled from the dashboard"


async def test_without_the_token_there_is_no_button_and_the_post_is_refused(
    cluster: Cluster,
) -> None:
    c = cluster
    run_id = await running(c)
    url = await c.dashboard()
    page = await page_at(c.browser, f"{url}#/runs/{run_id}")
    await expect(page.locator('[data-field="status"]')).to_have_text("in_flight")
    await expect(page.locator("#session")).to_have_text("read-only")
    assert await page.get_by_role("button").count() == 0
    assert await page.get_by_label("Operator token").count() == 0
    # Keyboard: the first Tab reaches the skip link, then the pages in order.
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("link", name="Overview")).to_be_focused()
    refused = await page.request.post(f"{url}api/runs/{run_id}/cancel", data={})
    assert refused.status == 403
    assert "read-only dashboard" in (await refused.json())["error"]
    # With a token but no session, or a session without the CSRF token: refused too.
    guarded = await c.dashboard(token=TOKEN)
    async with httpx.AsyncClient(base_url=guarded) as http:
        assert (await http.post(f"api/runs/{run_id}/cancel")).status_code == 401
        wrong = await http.post("api/login", json={"token": "not-the-operator-token"})
        assert wrong.status_code == 401
        signed = await http.post("api/login", json={"token": TOKEN})
        assert signed.status_code == 200
        no_csrf = await http.post(f"api/runs/{run_id}/cancel")
        assert no_csrf.status_code == 403 and "CSRF" in no_csrf.json()["error"]
        other_site = await http.post(
            f"api/runs/{run_id}/cancel",
            headers={"X-CSRF-Token": signed.json()["csrf"], "Origin": "http://evil.example"},
        )
        assert other_site.status_code == 403
    view = await c.client.status(run_id)
    assert view is not None and view.status == "in_flight" and view.cancel_request is None


async def test_dead_letters_page_lists_and_requeues(cluster: Cluster) -> None:
    c = cluster
    job = await c.job("complete")
    now_ms = int(time.time() * 1000)
    # A run job with a keyword argument: dead-lettered, holding a job that can be requeued.
    body = serialize_job({"f": FN_RUN, "a": [job], "k": {"extra": 1}, "t": None, "et": now_ms})
    await c.dead_letter("kw", body)
    url = await c.dashboard(token=TOKEN)
    page = await page_at(c.browser, f"{url}#/dead-letters")
    await page.get_by_label("Operator token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    rows = page.locator("tr[data-letter]")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text(job["run_id"])
    await shot(page, "dashboard-dead-letters.png")
    await rows.first.get_by_role("button", name="Requeue").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Requeued as run {job['run_id']}")
    await expect(rows).to_have_count(0)
    final = await c.client.wait(job["run_id"], 15)
    assert final.status == "completed"
    # Purge asks first; "Keep them" keeps them.
    await c.dead_letter("bad", b"not json")
    await page.reload()
    await expect(rows).to_have_count(1)
    await page.get_by_role("button", name="Purge…").click()
    await expect(page.locator("#confirm-purge")).to_be_focused()
    await page.get_by_role("button", name="Keep them").click()
    assert int(await c.redis.xlen(Keys(c.namespace).dead_letters)) == 1
    await page.get_by_role("button", name="Purge…").click()
    await page.locator("#confirm-purge").click()
    await expect(page.get_by_role("status")).to_have_text("Purged 1 dead letter.")
    await expect(rows).to_have_count(0)
    assert int(await c.redis.xlen(Keys(c.namespace).dead_letters)) == 0
