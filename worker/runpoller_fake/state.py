"""Everything the fake server holds: objects, scenarios, server-wide faults, config and stats.

``FakeState`` is the in-process handle tests use: they inject a clock, create objects through
HTTP (or the ``create_*`` methods), and read ``state.stats`` without going through JSON.
``state.request_log`` is every ``/v1`` request in arrival order (``GET /_fake/log``), kept by
``runpoller_fake.control``: it only observes, the API answers the same with or without it.
``state.webhooks`` sends the webhooks of ended responses (``runpoller_fake.webhooks``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from runpoller_fake.agents import Agent, AgentScript, Session, Turn
from runpoller_fake.errors import ApiError
from runpoller_fake.lifecycle import (
    Lifecycle,
    Message,
    Response,
    Run,
    Thread,
    new_id,
)
from runpoller_fake.objects import response_object
from runpoller_fake.script import Fault, FaultCounter, Script
from runpoller_fake.webhooks import WebhookSender

POLL_ENDPOINTS = frozenset({"get_run", "get_response", "get_agent_turn"})


@dataclass(slots=True)
class ObjectStats:
    """Counters for one run or response."""

    kind: str
    requests: int = 0
    polls: int = 0
    overlapping_polls: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    by_endpoint: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "requests": self.requests,
            "polls": self.polls,
            "overlapping_polls": self.overlapping_polls,
            "max_in_flight": self.max_in_flight,
            "by_endpoint": dict(self.by_endpoint),
        }


class Stats:
    """Request counts, injected faults and overlapping polls (two clients on one object)."""

    def __init__(self) -> None:
        self.requests: dict[str, dict[str, int]] = {}
        self.total = 0
        self.overlapping_polls = 0
        self.faults = {"status": 0, "drop": 0, "latency": 0, "cut": 0}
        self.created = {"thread": 0, "run": 0, "response": 0}
        self.objects: dict[str, ObjectStats] = {}

    def begin(self, object_id: str | None, endpoint: str) -> ObjectStats | None:
        """A request for ``object_id`` arrived; an overlap if another one is still in flight."""
        stats = self.count(object_id, endpoint)
        if stats is None:
            return None
        if endpoint in POLL_ENDPOINTS:
            stats.polls += 1
            if stats.in_flight > 0:
                stats.overlapping_polls += 1
                self.overlapping_polls += 1
        stats.in_flight += 1
        stats.max_in_flight = max(stats.max_in_flight, stats.in_flight)
        return stats

    def count(self, object_id: str | None, endpoint: str) -> ObjectStats | None:
        """Count a request addressed to ``object_id`` (None or unknown: nothing to count)."""
        stats = self.objects.get(object_id) if object_id is not None else None
        if stats is not None:
            stats.requests += 1
            stats.by_endpoint[endpoint] = stats.by_endpoint.get(endpoint, 0) + 1
        return stats

    def finish(self, endpoint: str, status: int | str) -> None:
        """Count a request by endpoint and outcome (an HTTP status, or ``"dropped"``)."""
        self.total += 1
        by_status = self.requests.setdefault(endpoint, {})
        key = str(status)
        by_status[key] = by_status.get(key, 0) + 1

    def status_count(self, endpoint: str, status: int | str) -> int:
        return self.requests.get(endpoint, {}).get(str(status), 0)

    def as_dict(self) -> dict[str, Any]:
        by_status: dict[str, int] = {}
        for counts in self.requests.values():
            for status, count in counts.items():
                by_status[status] = by_status.get(status, 0) + count
        return {
            "requests_total": self.total,
            "requests": {endpoint: dict(counts) for endpoint, counts in self.requests.items()},
            "by_status": by_status,
            "overlapping_polls": self.overlapping_polls,
            "faults_injected": dict(self.faults),
            "created": dict(self.created),
            "objects": {object_id: stats.as_dict() for object_id, stats in self.objects.items()},
        }


class FakeState:
    """The fake server's world. ``clock`` is monotonic seconds; inject one to drive time."""

    def __init__(
        self,
        *,
        api_keys: Iterable[str] | None = None,
        validate_requests: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        webhook_url: str | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        self.api_keys: set[str] | None = set(api_keys) if api_keys is not None else None
        self.validate_requests = validate_requests
        self.clock = clock
        self.sleep = sleep
        self._mono0 = clock()
        self._wall0 = wall_clock()
        self.threads: dict[str, Thread] = {}
        self.runs: dict[str, Run] = {}
        self.responses: dict[str, Response] = {}
        self.agents: dict[str, Agent] = {}
        self.sessions: dict[str, Session] = {}
        self.turns: dict[str, Turn] = {}
        self.scenarios: dict[str, Script] = {}
        self.faults: list[FaultCounter[Fault]] = []
        self.stats = Stats()
        self.request_log: list[dict[str, Any]] = []
        self.webhooks = WebhookSender(self, url=webhook_url, secret=webhook_secret)

    def reset(self) -> None:
        """Forget every object, scenario, fault and counter (config and clock stay)."""
        self.webhooks.reset()
        self.threads.clear()
        self.runs.clear()
        self.responses.clear()
        self.agents.clear()
        self.sessions.clear()
        self.turns.clear()
        self.scenarios.clear()
        self.faults.clear()
        self.stats = Stats()
        self.request_log = []

    def now(self) -> float:
        return self.clock()

    def wall(self, now: float) -> float:
        """Unix time for a monotonic instant, so an injected clock moves timestamps too."""
        return self._wall0 + (now - self._mono0)

    def set_faults(self, faults: Iterable[Fault]) -> None:
        self.faults = [FaultCounter(fault) for fault in faults]

    def lookup(self, object_id: str | None) -> Lifecycle | Turn | None:
        if object_id is None:
            return None
        return (
            self.runs.get(object_id) or self.responses.get(object_id) or self.turns.get(object_id)
        )

    def thread(self, thread_id: str) -> Thread:
        thread = self.threads.get(thread_id)
        if thread is None:
            raise ApiError(404, f"No thread found with id '{thread_id}'.")
        return thread

    def run(self, thread_id: str, run_id: str) -> Run:
        thread = self.thread(thread_id)
        run = self.runs.get(run_id)
        if run is None or run.thread is not thread:
            raise ApiError(404, f"No run found with id '{run_id}'.")
        return run

    def response(self, response_id: str) -> Response:
        response = self.responses.get(response_id)
        if response is None:
            raise ApiError(404, f"Response with id '{response_id}' not found.")
        return response

    def create_thread(
        self,
        *,
        messages: list[dict[str, Any]] | None = None,
        metadata: dict[str, str] | None = None,
        thread_id: str | None = None,
    ) -> Thread:
        at = int(self.wall(self.now()))
        thread = Thread(thread_id or new_id("thread_"), at, dict(metadata or {}))
        self.threads[thread.id] = thread
        self.stats.created["thread"] += 1
        self.add_user_messages(thread, messages or [])
        return thread

    def add_user_messages(self, thread: Thread, messages: list[dict[str, Any]]) -> None:
        """Store the user's messages (text only; other content parts are not modelled)."""
        at = int(self.wall(self.now()))
        for body in messages:
            thread.messages.append(
                Message(
                    new_id("msg_"),
                    thread.id,
                    at,
                    str(body.get("role", "user")),
                    _text_of(body.get("content")),
                    metadata=dict(body.get("metadata") or {}),
                )
            )

    def create_run(
        self,
        thread: Thread,
        assistant_id: str,
        params: dict[str, Any],
        script: Script,
        *,
        messages: list[dict[str, Any]] | None = None,
    ) -> Run:
        """Start a run (after adding ``messages``); refused while another run holds the thread."""
        now = self.now()
        active = thread.active_run(now)
        if active is not None:
            raise ApiError(400, f"Thread {thread.id} already has an active run {active.id}.")
        self.add_user_messages(thread, messages or [])
        run = Run(
            run_id=new_id("run_"),
            thread=thread,
            assistant_id=assistant_id,
            params=params,
            script=script,
            now=now,
            wall_now=self.wall(now),
        )
        thread.runs.append(run)
        self.runs[run.id] = run
        self.stats.created["run"] += 1
        self.stats.objects[run.id] = ObjectStats("run")
        return run

    def create_response(
        self, params: dict[str, Any], script: Script, *, streamed: bool = False
    ) -> Response:
        now = self.now()
        response = Response(
            response_id=new_id("resp_", 25),
            params=params,
            script=script,
            now=now,
            wall_now=self.wall(now),
            snapshot=response_object if streamed else None,
            on_end=self.webhooks.response_ended,
        )
        self.webhooks.watch(response)
        self.responses[response.id] = response
        self.stats.created["response"] += 1
        self.stats.objects[response.id] = ObjectStats("response")
        return response

    def session(self, session_id: str) -> Session:
        session = self.sessions.get(session_id)
        if session is None:
            raise ApiError(404, f"No session found with id '{session_id}'.")
        return session

    def agent(self, agent_id: str) -> Agent:
        agent = self.agents.get(agent_id)
        if agent is None:
            raise ApiError(404, f"No agent found with id '{agent_id}'.")
        return agent

    def create_agent(self, body: dict[str, Any], agent_id: str | None = None) -> Agent:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise ApiError(400, "Missing required parameter: 'model'.", param="model")
        tools = body.get("tools") or []
        if not isinstance(tools, list):
            raise ApiError(400, "'tools' must be an array.", param="tools")
        agent = Agent(
            agent_id or new_id("agent_"),
            int(self.wall(self.now())),
            model,
            name=body.get("name"),
            instructions=body.get("instructions"),
            tools=tools,
            metadata=dict(body.get("metadata") or {}),
        )
        self.agents[agent.id] = agent
        return agent

    def create_session(
        self, agent: Agent, script: AgentScript, metadata: dict[str, str] | None = None
    ) -> Session:
        now = self.now()
        session = Session(
            agent=agent,
            script=script,
            metadata=dict(metadata or {}),
            wall0=self.wall(now),
            mono0=now,
            on_turn=self._turn_started,
            on_step=self.webhooks.watch_turn,
            on_status=self.webhooks.session_changed,
        )
        self.sessions[session.id] = session
        self.webhooks.session_changed(session, "created", now, None)
        self.stats.created["session"] = self.stats.created.get("session", 0) + 1
        return session

    def _turn_started(self, turn: Turn) -> None:
        self.turns[turn.id] = turn
        self.stats.created["turn"] = self.stats.created.get("turn", 0) + 1
        self.stats.objects[turn.id] = ObjectStats("turn")


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [part.get("text", "") for part in content if isinstance(part, dict)]
        return "".join(part for part in parts if isinstance(part, str))
    return ""
