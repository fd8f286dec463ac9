"""``runpoller demo``: fake OpenAI server, Redis, a real worker process, sample runs, live.

Everything it starts, it stops. Redis: ``REDIS_URL`` if set, else 127.0.0.1:6379 if it
answers, else fakeredis' embedded server (announced as a stand-in). ``make demo`` starts a
real ``redis-server`` on a free port before falling back to the stand-in.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from redis.asyncio import Redis

from runpoller.cli.follow import describe
from runpoller.cli.stats import collect, render_table
from runpoller.client import RunpollerClient
from runpoller.config import load_settings
from runpoller.protocol import FinalEvent, ProgressEvent, RequiresActionEvent, StatusEvent
from runpoller_dev.devredis import _ping, free_port
from runpoller_dev.node_example import run_node_example
from runpoller_fake import FakeServer, FakeState, start_fake_server

DEMO_KEY = "sk-demo-not-a-real-key"
STREAMED_TEXT = (
    "Streamed background responses reach the app word by word, and a worker that dies "
    "mid-stream is resumed by another after the last word it wrote."
)
LOCAL_DB = 15
ALLOWED_ASSISTANT = "asst_demo"
ALLOWED_AGENT = "agent_demo"
"""supportedIds apply to agent ids too (the Agents API's agent_turn jobs)."""


@dataclass
class DemoRun:
    label: str
    expect: str
    script: dict[str, Any] | str
    assistant_id: str = ALLOWED_ASSISTANT
    kind: str = "assistants_run"
    job_extra: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    line: str = "enqueued"
    final: FinalEvent | None = None
    stop_after_s: float | None = None
    """The app presses "stop" this long after the run is first seen in progress."""
    stream: bool = False
    """The worker creates the response as a stream and relays its text (progress events)."""
    streamed: str = ""
    progress_events: int = 0


def demo_runs(fast: bool) -> list[DemoRun]:
    work = 300 if fast else 1500
    return [
        DemoRun(
            "completes with an answer",
            "completed",
            {
                "steps": [
                    {"status": "queued", "ms": 200},
                    {"status": "in_progress", "ms": work},
                    {
                        "status": "completed",
                        "messages": ["Paris is the capital of France."],
                        "usage": {"prompt_tokens": 42, "completion_tokens": 8},
                    },
                ]
            },
        ),
        DemoRun(
            "fails with last_error",
            "failed",
            {
                "steps": [
                    {"status": "queued", "ms": 200},
                    {"status": "in_progress", "ms": work // 2},
                    {
                        "status": "failed",
                        "last_error": {
                            "code": "rate_limit_exceeded",
                            "message": "You exceeded your current quota.",
                        },
                    },
                ]
            },
        ),
        DemoRun(
            "never ends: cancelled at its timeout",
            "timed_out",
            "slow_cancel",
            job_extra={"timeout_ms": 1500 if fast else 4000},
        ),
        DemoRun(
            "the user presses stop: cancelled",
            "cancelled",
            "never_ends",
            stop_after_s=0.5 if fast else 2.0,
        ),
        DemoRun(
            "assistant not in supportedIds: refused",
            "refused",
            "never_ends",
            assistant_id="asst_intruder",
        ),
        DemoRun(
            "calls a function, the app answers",
            "completed",
            {
                "steps": [
                    {"status": "queued", "ms": 100},
                    {"status": "in_progress", "ms": work // 2},
                    {
                        "status": "requires_action",
                        "tool_calls": [{"name": "get_weather", "arguments": '{"city": "Paris"}'}],
                    },
                    {"status": "in_progress", "ms": work // 2},
                    {
                        "status": "completed",
                        "messages": ["It is 21 °C and sunny in Paris."],
                        "usage": {"prompt_tokens": 80, "completion_tokens": 12},
                    },
                ]
            },
        ),
        DemoRun(
            "background response (Responses API)",
            "completed",
            {
                "steps": [
                    {"status": "queued", "ms": 200},
                    {"status": "in_progress", "ms": work},
                    {
                        "status": "completed",
                        "messages": ["Background mode is how OpenAI runs long jobs today."],
                    },
                ]
            },
            kind="response",
        ),
        DemoRun(
            "streams its answer as it is written",
            "completed",
            {
                "steps": [
                    {"status": "queued", "ms": 200},
                    {"status": "in_progress", "ms": 2 * work},
                    {"status": "completed", "messages": [STREAMED_TEXT]},
                ]
            },
            kind="response",
            stream=True,
        ),
        DemoRun(
            "background response calls a function",
            "completed",
            "requires_action",
            kind="response",
            job_extra={"continuation": {"model": "gpt-4o"}},
        ),
        DemoRun(
            "agent turn calls a function (Agents API)",
            "completed",
            {
                "steps": [
                    {"status": "queued", "ms": 100},
                    {"status": "in_progress", "ms": work // 2},
                    {
                        "status": "waiting",
                        "actions": [
                            {
                                "type": "function_call",
                                "name": "get_weather",
                                "arguments": {"city": "Lyon"},
                            }
                        ],
                    },
                    {"status": "in_progress", "ms": work // 2},
                    {
                        "status": "completed",
                        "messages": ["Agents answer in session turns: 21 °C in Lyon."],
                        "usage": {"input_tokens": 64, "output_tokens": 11},
                    },
                ]
            },
            kind="agent_turn",
        ),
    ]


@contextlib.asynccontextmanager
async def demo_redis() -> AsyncIterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        print(f"redis:  {url} (REDIS_URL)")
        yield url
        return
    if _ping("127.0.0.1", 6379):
        # Not DB 0 of a server that may hold someone's data: DB 15, under the demo's own
        # prefix, deleted at the end.
        print(
            f"redis:  redis://127.0.0.1:6379/{LOCAL_DB} (the local server; DB {LOCAL_DB}, keys "
            "under the demo's own prefix, deleted at the end; REDIS_URL chooses another)"
        )
        yield f"redis://127.0.0.1:6379/{LOCAL_DB}"
        return
    from fakeredis import TcpFakeServer

    port = free_port()
    server = TcpFakeServer(("127.0.0.1", port), server_type="redis")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(
        f"redis:  STAND-IN — no Redis server was found, using fakeredis' embedded server on "
        f"port {port}. Fine for a demo, not for production."
    )
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        server.shutdown()
        server.server_close()


async def create_fake_job(http: httpx.AsyncClient, run: DemoRun) -> dict[str, Any]:
    """Create the run (or response) on the fake server, as the calling app would (a streamed
    response the worker creates itself, from the job's request)."""
    if run.stream:
        request = {
            "model": "gpt-4o",
            "input": "Tell me about streaming.",
            "metadata": {"fake_scenario": json.dumps(run.script)},
        }
        run_id = f"stream-{uuid.uuid4().hex[:8]}"
        return {"kind": "response", "id": run_id, "request": request, "stream": True}
    if run.kind == "agent_turn":
        created = await http.post(
            "/_fake/agents/sessions",
            json={
                "script": run.script,
                "model": "gpt-5",
                "agent_id": ALLOWED_AGENT,
                "input": "Weather in Lyon?",
            },
        )
        created.raise_for_status()
        body = created.json()
        turn_id = body["turn"]["id"]
        return {
            "kind": "agent_turn",
            "session_id": body["session"]["id"],
            "turn_id": turn_id,
            **run.job_extra,
        }
    if run.kind == "response":
        response = await http.post("/_fake/responses", json={"script": run.script})
        response.raise_for_status()
        return {"kind": "response", "response_id": response.json()["id"], **run.job_extra}
    response = await http.post(
        "/_fake/runs",
        json={"script": run.script, "assistant_id": run.assistant_id, "model": "gpt-4o"},
    )
    response.raise_for_status()
    body = response.json()
    return {
        "kind": "assistants_run",
        "thread_id": body["thread_id"],
        "run_id": body["id"],
        **run.job_extra,
    }


async def answer_tool_calls(client: RunpollerClient, event: RequiresActionEvent) -> None:
    """The calling app's side of a function call: compute outputs, reply through Redis."""
    outputs = {}
    for call in event.tool_calls:
        args = call.parsed_arguments if isinstance(call.parsed_arguments, dict) else {}
        city = args.get("city", "?")
        outputs[call.id] = f'{{"city": "{city}", "temperature_c": 21, "sky": "sunny"}}'
    await client.submit_tool_outputs(event.run_id, event.round, outputs)


async def follow(client: RunpollerClient, run: DemoRun, redraw: asyncio.Event) -> None:
    stop: asyncio.Task[None] | None = None
    async for item in client.events(run.run_id):
        event = item.event
        run.line = describe(event)
        if isinstance(event, ProgressEvent):
            run.streamed += event.delta
            run.progress_events += 1
            run.line = f"writing ({len(run.streamed)} chars): …{run.streamed[-40:]}"
        if isinstance(event, RequiresActionEvent):
            await answer_tool_calls(client, event)
            run.line += " → answered"
        if (
            isinstance(event, StatusEvent)
            and event.status == "in_progress"
            and run.stop_after_s is not None
            and stop is None
        ):
            stop = asyncio.create_task(press_stop(client, run, redraw))
        if isinstance(event, FinalEvent):
            run.final = event
        redraw.set()


async def press_stop(client: RunpollerClient, run: DemoRun, redraw: asyncio.Event) -> None:
    """The app's stop button: one cancel request through Redis (docs/protocol.md, 5.)."""
    assert run.stop_after_s is not None
    await asyncio.sleep(run.stop_after_s)
    await client.cancel(run.run_id, reason="the user pressed stop")
    run.line += " → stop pressed"
    redraw.set()


def render(runs: list[DemoRun], started: float, tty: bool) -> str:
    lines = [f"  {r.label:<40} {r.line[:70]}" for r in runs]
    header = f"live progress ({time.monotonic() - started:4.1f}s)"
    text = header + "\n" + "\n".join(lines)
    if tty:
        return text
    return text


async def run_demo(*, fast: bool = False) -> int:
    tty = sys.stdout.isatty()
    started = time.monotonic()
    print("runpoller demo: fake OpenAI server + Redis + one worker process + sample runs\n")
    async with demo_redis() as redis_url, contextlib.AsyncExitStack() as stack:
        # OpenAI signs a webhook when a background response ends; the fake does too, to the
        # demo's receiver, which wakes the run at once (polling is the fallback).
        webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
        webhook_port = free_port()
        fake: FakeServer = await start_fake_server(
            port=0,
            state=FakeState(api_keys={DEMO_KEY}),
            webhook_url=f"http://127.0.0.1:{webhook_port}/webhooks/openai",
            webhook_secret=webhook_secret,
        )
        stack.push_async_callback(fake.close)
        print(f"api:    {fake.base_url} (bundled fake OpenAI server, sends signed webhooks)")
        namespace = f"runpoller-demo-{uuid.uuid4().hex[:8]}"
        metrics_port = free_port()
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "ASSISTANTS_BASE_URL": fake.base_url,
            "ASSISTANTS_API_KEY": DEMO_KEY,
            "RUNPOLLER_KEY_PREFIX": namespace,
            "RUNPOLLER_QUEUE_NAME": f"{namespace}:queue",
            "RUNPOLLER_POLL_INTERVAL_MS": "250",
            "RUNPOLLER_TIMEOUT_MS": "30000",
            "RUNPOLLER_CANCEL_GRACE_MS": "5000",
            "RUNPOLLER_SUPPORTED_IDS": f"{ALLOWED_ASSISTANT},{ALLOWED_AGENT}",
            "RUNPOLLER_LOG_LEVEL": "WARNING",
            "RUNPOLLER_LOG_FORMAT": "console",
            "RUNPOLLER_METRICS_HOST": "127.0.0.1",
            "RUNPOLLER_METRICS_PORT": str(metrics_port),
            # Responses runs poll every 20 s only: what finishes them early is the webhook.
            "RUNPOLLER_WEBHOOK_FALLBACK_INTERVAL_MS": "20000",
            "RUNPOLLER_MAX_POLL_INTERVAL_MS": "20000",
        }
        env.pop("RUNPOLLER_LIBRECHAT_CONFIG", None)
        # Registered before the processes start, so it runs after they stopped: the worker
        # writes its hand-off to <prefix>:worker-events as it stops (a stream without TTL).
        redis: Redis = Redis.from_url(redis_url)
        stack.push_async_callback(redis.aclose)
        stack.push_async_callback(_delete_namespace, redis, namespace)
        receiver = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "runpoller",
            "webhooks",
            env={
                **env,
                "RUNPOLLER_WEBHOOK_SECRETS": webhook_secret,
                "RUNPOLLER_WEBHOOK_PORT": str(webhook_port),
            },
        )
        stack.push_async_callback(_stop, receiver)
        await _wait_ready(f"http://127.0.0.1:{webhook_port}/readyz", receiver)
        print(
            f"hooks:  http://127.0.0.1:{webhook_port}/webhooks/openai (runpoller webhooks; "
            "Responses runs poll every 20 s, a webhook wakes them)"
        )
        worker = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runpoller", "worker", env=env
        )
        stack.push_async_callback(_stop, worker)
        print(
            f"worker: pid {worker.pid} (runpoller worker, "
            f"supportedIds={ALLOWED_ASSISTANT},{ALLOWED_AGENT})"
        )
        print(
            f"ops:    http://127.0.0.1:{metrics_port}/metrics  "
            f"/healthz  /readyz  (Prometheus metrics and probes)"
        )
        dashboard_port = free_port()
        dashboard = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "runpoller", "dashboard", "--port", str(dashboard_port)),
            env=env, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        stack.push_async_callback(_stop, dashboard)
        await _wait_ready(f"http://127.0.0.1:{dashboard_port}/readyz", dashboard)
        print(f"web:    http://127.0.0.1:{dashboard_port}/ (runpoller dashboard, read-only)\n")

        client = RunpollerClient(redis, queue_name=f"{namespace}:queue", key_prefix=namespace)
        runs = demo_runs(fast)
        root = fake.base_url.removesuffix("/v1")
        async with httpx.AsyncClient(base_url=root, timeout=10) as http:
            for run in runs:
                run.run_id = await client.enqueue(await create_fake_job(http, run))
        redraw = asyncio.Event()
        followers = [asyncio.create_task(follow(client, run, redraw)) for run in runs]
        lines_drawn = 0
        budget = 60.0
        while not all(f.done() for f in followers):
            if time.monotonic() - started > budget or worker.returncode is not None:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(redraw.wait(), 0.25)
            redraw.clear()
            text = render(runs, started, tty)
            if tty:
                if lines_drawn:
                    sys.stdout.write(f"\x1b[{lines_drawn}F\x1b[J")
                sys.stdout.write(text + "\n")
                lines_drawn = text.count("\n") + 1
            sys.stdout.flush()
        if not tty:
            print(render(runs, started, tty))
        for task in followers:
            task.cancel()
        print("\noutcomes:")
        ok = True
        for run in runs:
            final = run.final
            status = final.status if final else "no final event"
            mark = "ok " if status == run.expect else "!! "
            ok = ok and status == run.expect
            print(f"  {mark}{run.label:<40} → {status}")
            if final is not None:
                print(f"       {final.reason}")
                if final.output_text:
                    print(f"       output: {final.output_text}")
                if run.stream:
                    same = "the same as" if run.streamed == final.output_text else "NOT"
                    ok = ok and run.streamed == final.output_text
                    print(
                        f"       streamed: {run.progress_events} progress events while it was "
                        f"written, joined {same} the final text"
                    )
                if final.error:
                    print(f"       error: {final.error.code}: {final.error.message}")
        await print_wakes(metrics_port, runs)
        example_ok = await run_example_app(env)
        example_ok = await run_node_example(env) and example_ok  # issue 21: examples/node
        await print_stats(redis, redis_url, namespace)
        elapsed = time.monotonic() - started
        print(f"\ndone in {elapsed:.1f}s; stopping the worker and the fake server")
        return 0 if ok and example_ok else 1


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "weather_app.py"


async def run_example_app(env: dict[str, str]) -> bool:
    """Run examples/weather_app.py: a separate app process doing the function-call round trip."""
    if not EXAMPLE.exists():
        print("\n(examples/weather_app.py is not here: installed without the source tree)")
        return True
    print("\nexample app (examples/weather_app.py), a separate process:")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(EXAMPLE), "What's the weather in Paris?", env=env
    )
    try:
        code = await asyncio.wait_for(proc.wait(), 30)
    except TimeoutError:
        proc.kill()
        code = -1
    return code == 0


async def print_wakes(metrics_port: int, runs: list[DemoRun]) -> None:
    """Which path ended the Responses runs: the worker's count of webhook wake-ups."""
    try:
        async with httpx.AsyncClient(timeout=5) as http:
            text = (await http.get(f"http://127.0.0.1:{metrics_port}/metrics")).text
    except httpx.HTTPError:
        return
    woken = 0
    for result in ("woken", "woken_late"):
        pattern = rf'^runpoller_wakes_total\{{result="{result}"\}} (\S+)$'
        match = re.search(pattern, text, re.M)
        woken += int(float(match.group(1))) if match else 0
    print(
        f"\nwebhooks: {woken} poll(s) of the background responses brought forward by a signed "
        "webhook (runpoller_wakes_total: woken, woken_late); without one they poll every 20 s"
    )


async def print_stats(redis: Redis, redis_url: str, namespace: str) -> None:
    """End with the cluster view an operator gets from ``runpoller stats``."""
    settings, _ = load_settings(
        redis_url=redis_url, key_prefix=namespace, queue_name=f"{namespace}:queue"
    )
    print("\n$ runpoller stats\n" + render_table(await collect(redis, settings)))


async def _delete_namespace(redis: Redis, namespace: str) -> None:
    """Leave the Redis as we found it: remove every key under the demo's own prefix."""
    with contextlib.suppress(Exception):
        keys = [key async for key in redis.scan_iter(match=f"{namespace}*", count=1000)]
        if keys:
            await redis.delete(*keys)


async def _wait_ready(url: str, proc: asyncio.subprocess.Process) -> None:
    """Until the receiver answers ready (the fake gives up on a delivery after a few tries)."""
    async with httpx.AsyncClient(timeout=1) as http:
        for _ in range(200):
            if proc.returncode is not None:
                return
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get(url)).status_code == 200:
                    return
            await asyncio.sleep(0.05)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
