"""A calling app, end to end: create a run, hand it to runpoller, answer its function call.

This is what a backend does: it starts the long job itself (here an Assistants-API run whose
assistant calls ``get_weather``), enqueues the run's reference, returns to its own work, and
reads the outcome from Redis. Run it against the fake server (``make demo`` does) or against
any Assistants-compatible server:

    REDIS_URL=redis://127.0.0.1:6379/0 ASSISTANTS_BASE_URL=http://127.0.0.1:8011/v1 \\
    ASSISTANTS_API_KEY=sk-... python examples/weather_app.py "What's the weather in Paris?"
"""

from __future__ import annotations

import asyncio
import json
import os
import sys

import httpx
from redis.asyncio import Redis

from runpoller.client import RunpollerClient
from runpoller.protocol import FinalEvent, RequiresActionEvent, StatusEvent

WEATHER = {"Paris": "21 °C and sunny", "London": "14 °C and drizzle", "Tokyo": "18 °C, clear"}


def get_weather(city: str) -> str:
    """The app's own function, which the model asks it to call."""
    return json.dumps({"city": city, "weather": WEATHER.get(city, "unknown")})


async def main(question: str) -> int:
    base_url = os.environ["ASSISTANTS_BASE_URL"]
    headers = {
        "Authorization": f"Bearer {os.environ['ASSISTANTS_API_KEY']}",
        "OpenAI-Beta": "assistants=v2",
    }
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as api:
        created = await api.post(
            "/threads/runs",
            json={
                "assistant_id": os.environ.get("EXAMPLE_ASSISTANT_ID", "asst_demo"),
                "thread": {"messages": [{"role": "user", "content": question}]},
                # Only the fake server reads this; a real server just stores it.
                "metadata": {"fake_scenario": "requires_action"},
            },
        )
        created.raise_for_status()
        run = created.json()

    redis = Redis.from_url(os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0"))
    client = RunpollerClient(
        redis,
        queue_name=os.environ.get("RUNPOLLER_QUEUE_NAME", "runpoller:queue"),
        key_prefix=os.environ.get("RUNPOLLER_KEY_PREFIX", "runpoller"),
    )
    run_id = await client.enqueue(
        {"kind": "assistants_run", "thread_id": run["thread_id"], "run_id": run["id"]}
    )
    print(f"app: asked {question!r}; run {run_id} handed to runpoller")
    final: FinalEvent | None = None
    async for item in client.events(run_id):
        event = item.event
        if isinstance(event, StatusEvent):
            print(f"app: run is {event.status}")
        elif isinstance(event, RequiresActionEvent):
            outputs = {}
            for call in event.tool_calls:
                args = call.parsed_arguments if isinstance(call.parsed_arguments, dict) else {}
                outputs[call.id] = get_weather(str(args.get("city", "")))
                print(f"app: the model called {call.name}({call.arguments}) → {outputs[call.id]}")
            await client.submit_tool_outputs(run_id, event.round, outputs)
        elif isinstance(event, FinalEvent):
            final = event
    await redis.aclose()
    assert final is not None
    print(f"app: {final.status}: {final.output_text or final.reason}")
    return 0 if final.status == "completed" else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main(" ".join(sys.argv[1:]) or "What's the weather in Paris?")))
