"""Run and response lifecycles, computed lazily from a clock: no I/O, no timers, no tasks.

Everything that changes an object's status lives here. An object remembers the script step it
is in and when that step began; ``advance(now)`` walks forward through every step whose
duration has elapsed, entering each at the exact instant it began (so timestamps are right even
when nobody polled in between). Requests change the course only through ``cancel`` and
``submit_tool_outputs``, which splice a synthetic step (``cancelling``, ``queued``) in at
``now``. Times are monotonic seconds; ``wall`` maps them to Unix time for the API fields.
The JSON shapes are built in ``objects.py``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from runpoller_fake.errors import ApiError
from runpoller_fake.params import callable_functions
from runpoller_fake.script import (
    DEFAULT_MESSAGE,
    TERMINAL,
    ErrorSpec,
    Fault,
    FaultCounter,
    Kind,
    Script,
    Step,
    ToolCallSpec,
    UsageSpec,
)
from runpoller_fake.streaming import PlannedText, StreamLog

# Sums of float seconds must not miss a step boundary by a rounding error.
_TOLERANCE = 1e-9
# Synthetic steps, built without validation: scripts may not use them, the lifecycle does.
_COMPLETED = Step.model_construct(status="completed")
_EXPIRED = Step.model_construct(status="expired")
_CANCELLED = Step.model_construct(status="cancelled")


def new_id(prefix: str, nbytes: int = 12) -> str:
    return prefix + secrets.token_hex(nbytes)


@dataclass(slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str
    item_id: str = ""
    output: str | None = None

    @classmethod
    def from_spec(cls, spec: ToolCallSpec) -> ToolCall:
        return cls(spec.id or new_id("call_"), spec.name, spec.arguments, new_id("fc_"))


@dataclass(slots=True)
class Message:
    id: str
    thread_id: str
    created_at: int
    role: str
    text: str
    run_id: str | None = None
    assistant_id: str | None = None
    status: str = "completed"
    incomplete_reason: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class RunStep:
    id: str
    type: str
    created_at: int
    status: str = "in_progress"
    message_id: str | None = None
    tool_calls: list[ToolCall] | None = None
    completed_at: int | None = None
    cancelled_at: int | None = None
    expired_at: int | None = None
    failed_at: int | None = None
    usage: dict[str, int] | None = None

    def close(self, status: str, at: int) -> None:
        """End an in-progress step with the run's outcome."""
        if self.status != "in_progress":
            return
        if status == "completed":
            self.status, self.completed_at = "completed", at
            self.usage = _run_usage(UsageSpec(prompt_tokens=40, completion_tokens=18))
        elif status == "expired":
            self.status, self.expired_at = "expired", at
        elif status == "failed":
            self.status, self.failed_at = "failed", at
        else:
            self.status, self.cancelled_at = "cancelled", at


@dataclass(slots=True)
class Thread:
    id: str
    created_at: int
    metadata: dict[str, str] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    def active_run(self, now: float) -> Run | None:
        """The run holding the thread's lock, if any (only the newest can be active)."""
        if not self.runs:
            return None
        run = self.runs[-1]
        run.advance(now)
        return None if run.terminal else run


def _run_usage(spec: UsageSpec) -> dict[str, int]:
    return {
        "prompt_tokens": spec.prompt_tokens,
        "completion_tokens": spec.completion_tokens,
        "total_tokens": spec.prompt_tokens + spec.completion_tokens,
    }


class Lifecycle:
    """Walks a script's steps lazily; subclasses say what entering a status does."""

    kind: ClassVar[Kind]

    def __init__(self, object_id: str, script: Script, now: float, wall_now: float) -> None:
        self.id = object_id
        self.script = script
        self.created_at = int(wall_now)
        self.faults: list[FaultCounter[Fault]] = [FaultCounter(f) for f in script.faults]
        self.log: list[dict[str, Any]] = []
        self._mono0 = now
        self._wall0 = wall_now
        self._next = 0
        self.status = ""
        self.step = _COMPLETED
        self.phase_start = now
        self._enter(self._take(), now)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    def unix(self, t: float) -> float:
        """Unix time of monotonic instant ``t``."""
        return self._wall0 + (t - self._mono0)

    def wall(self, t: float) -> int:
        """Unix seconds of monotonic instant ``t``, as the API's timestamps are."""
        return int(self.unix(t))

    def advance(self, now: float) -> None:
        """Enter every step whose predecessor's time is up, each at the instant it began."""
        while self.status not in TERMINAL:
            duration = self._duration()
            if duration is None:
                return
            end = self.phase_start + duration
            if now + _TOLERANCE < end:
                return
            self._enter(self._following(), end)

    def _duration(self) -> float | None:
        ms = self.step.ms
        return None if ms is None else ms / 1000.0

    def _following(self) -> Step:
        return self._take()

    def _take(self) -> Step:
        steps = self.script.steps
        if self._next < len(steps):
            step = steps[self._next]
            self._next += 1
            return step
        return _COMPLETED

    def _enter(self, step: Step, t: float) -> None:
        self.status = step.status
        self.step = step
        self.phase_start = t
        self._on_enter(step, t)

    def _on_enter(self, step: Step, t: float) -> None:
        raise NotImplementedError


class Run(Lifecycle):
    """An Assistants run: requires_action rounds, expiry, cancelling, messages and steps."""

    kind = "run"

    def __init__(
        self,
        *,
        run_id: str,
        thread: Thread,
        assistant_id: str,
        params: dict[str, Any],
        script: Script,
        now: float,
        wall_now: float,
    ) -> None:
        self.thread = thread
        self.assistant_id = assistant_id
        self.params = params
        self.started_at: int | None = None
        self.completed_at: int | None = None
        self.failed_at: int | None = None
        self.cancelled_at: int | None = None
        # Fixed at creation, as the real API's: re-entering requires_action or a poll does
        # not move it (only ``objects.run_object`` hides it, null, once the run is terminal).
        expires_in = script.run_expires_in_s
        self.expires_at = int(wall_now + expires_in)
        self._expires_mono = now + expires_in
        self.last_error: dict[str, str] | None = None
        self.incomplete_reason: str | None = None
        self.usage: dict[str, int] | None = None
        self.pending_calls: list[ToolCall] = []
        self.steps: list[RunStep] = []
        self._tool_step: RunStep | None = None
        super().__init__(run_id, script, now, wall_now)

    def _duration(self) -> float | None:
        if self.status == "requires_action":  # waits until the run's expires_at, no longer
            return max(self._expires_mono - self.phase_start, 0.0)
        return super()._duration()

    def _following(self) -> Step:
        if self.status == "requires_action":
            return _EXPIRED
        if self.status == "cancelling":
            if self.script.cancel_outcome == "completed":
                done = [step for step in self.script.steps if step.status == "completed"]
                return done[-1] if done else _COMPLETED
            return _CANCELLED
        return self._take()

    def _on_enter(self, step: Step, t: float) -> None:
        at = self.wall(t)
        status = step.status
        if status == "in_progress" and self.started_at is None:
            self.started_at = at
        elif status == "requires_action":
            self._ask_for_tools(step, at)
        elif status == "completed":
            self.completed_at = at
            self._write_messages(step, at, incomplete_reason=None)
        elif status == "incomplete":
            self.incomplete_reason = step.reason or "max_completion_tokens"
            self._write_messages(step, at, incomplete_reason="max_tokens")
        elif status == "failed":
            self.failed_at = at
            self.last_error = (step.last_error or ErrorSpec()).model_dump()
        elif status == "cancelled":
            self.cancelled_at = at
        if status in TERMINAL:
            if step.usage is not None:
                usage = step.usage
            elif status in ("completed", "incomplete"):
                usage = UsageSpec()
            else:  # the prompt was read, nothing was written
                usage = UsageSpec(completion_tokens=0)
            self.usage = _run_usage(usage)
            self.pending_calls = []
            if self._tool_step is not None:
                self._tool_step.close(status, at)

    def _ask_for_tools(self, step: Step, at: int) -> None:
        calls = [ToolCall.from_spec(spec) for spec in step.tool_calls or ()]
        self.pending_calls = calls
        self._tool_step = RunStep(new_id("step_"), "tool_calls", at, tool_calls=calls)
        self.steps.append(self._tool_step)

    def _write_messages(self, step: Step, at: int, *, incomplete_reason: str | None) -> None:
        texts = step.messages if step.messages is not None else [DEFAULT_MESSAGE]
        for text in texts:
            message = Message(
                new_id("msg_"),
                self.thread.id,
                at,
                "assistant",
                text,
                run_id=self.id,
                assistant_id=self.assistant_id,
                status="incomplete" if incomplete_reason else "completed",
                incomplete_reason=incomplete_reason,
            )
            self.thread.messages.append(message)
            self.steps.append(
                RunStep(
                    new_id("step_"),
                    "message_creation",
                    at,
                    status="completed",
                    message_id=message.id,
                    completed_at=at,
                    usage=_run_usage(step.usage or UsageSpec()),
                )
            )

    def cancel(self, now: float) -> None:
        """Start cancelling; refused once the run is terminal or already cancelling."""
        self.advance(now)
        if self.terminal or self.status == "cancelling":
            raise ApiError(400, f"Cannot cancel run with status '{self.status}'.")
        self._enter(Step.model_construct(status="cancelling", ms=self.script.cancel_ms), now)

    def submit_tool_outputs(self, now: float, outputs: list[dict[str, Any]]) -> None:
        """Accept exactly one output per pending call; the run goes back to ``queued``."""
        self.advance(now)
        if self.status != "requires_action":
            raise ApiError(400, f'Runs in status "{self.status}" do not accept tool outputs.')
        pending = {call.id: call for call in self.pending_calls}
        given = [output.get("tool_call_id") for output in outputs]
        unknown = [call_id for call_id in given if call_id not in pending]
        duplicated = sorted({str(i) for i in given if i in pending and given.count(i) > 1})
        if unknown or duplicated:
            problem = f"unknown tool_call_id {unknown}" if unknown else f"duplicated {duplicated}"
            raise ApiError(
                400,
                f"Invalid tool outputs ({problem}); the run is waiting for {list(pending)}.",
                param="tool_outputs",
            )
        missing = [call_id for call_id in pending if call_id not in given]
        if missing:
            raise ApiError(
                400,
                f"Expected tool outputs for call_ids {list(pending)}, got {given}. "
                f"Missing: {missing}.",
                param="tool_outputs",
            )
        for output in outputs:
            pending[output["tool_call_id"]].output = str(output.get("output", ""))
        if self._tool_step is not None:
            self._tool_step.close("completed", self.wall(now))
            self._tool_step = None
        self.pending_calls = []
        self._enter(Step.model_construct(status="queued", ms=self.script.requeue_ms), now)


@dataclass(slots=True)
class OutputMessage:
    id: str
    text: str
    status: str = "completed"


class Response(Lifecycle):
    """A Responses API background response; function calls end it ``completed``.

    ``on_end(response, t)`` is called once, when it enters its end status at instant ``t``
    (the webhook sender's hook: the lifecycle itself does no I/O).
    """

    kind = "response"

    def __init__(
        self,
        *,
        response_id: str,
        params: dict[str, Any],
        script: Script,
        now: float,
        wall_now: float,
        on_end: Callable[[Response, float], None] | None = None,
        snapshot: Callable[[Response], dict[str, Any]] | None = None,
    ) -> None:
        """``snapshot`` (how GET shows a response): given, the response streams (it was
        created with ``stream: true``) and keeps its events in :attr:`stream`."""
        self.on_end = on_end
        self.stream: StreamLog | None = None
        if snapshot is not None:
            self.stream = StreamLog(lambda: snapshot(self))
        self._planned: list[OutputMessage] = []
        self._entered = False
        self.params = params
        self.functions = callable_functions(params)
        self.completed_at: int | None = None
        self.error: dict[str, str] | None = None
        self.incomplete_reason: str | None = None
        self.usage: dict[str, Any] | None = None
        self.output: list[OutputMessage | ToolCall] = []
        super().__init__(response_id, script, now, wall_now)

    @property
    def function_calls(self) -> list[ToolCall]:
        return [item for item in self.output if isinstance(item, ToolCall)]

    def terminal_at(self) -> float | None:
        """The instant this response ends if nothing else happens (None: it never does)."""
        if self.terminal:
            return self.phase_start
        t, step, following = self.phase_start, self.step, self._next
        steps = self.script.steps
        while step.status not in TERMINAL:
            if step.ms is None:
                return None
            t += step.ms / 1000.0
            step = steps[following] if following < len(steps) else _COMPLETED
            following += 1
        return t

    def continuation_script(self) -> Script:
        """What a response continuing this one plays: the steps after this one's end."""
        return self.script.continuation(self._next)

    def _on_enter(self, step: Step, t: float) -> None:
        status = step.status
        if status == "completed":
            self.completed_at = self.wall(t)
            if step.function_calls:
                self._call_functions(step.function_calls)
            else:
                self._write_messages(step, "completed")
        elif status == "incomplete":
            self.incomplete_reason = step.reason or "max_output_tokens"
            self._write_messages(step, "incomplete")
        elif status == "failed":
            self.error = (step.last_error or ErrorSpec()).model_dump()
        if status in ("completed", "incomplete"):
            usage = step.usage or UsageSpec()
            self.usage = {
                "input_tokens": usage.prompt_tokens,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens": usage.completion_tokens,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": usage.prompt_tokens + usage.completion_tokens,
            }
        if self.stream is not None:
            self.stream.entered(status, t, first=not self._entered)
            if status == "in_progress":
                self._plan_text(step, t)
        self._entered = True
        if status in TERMINAL and self.on_end is not None:
            self.on_end(self, t)

    def _plan_text(self, step: Step, t: float) -> None:
        """Stream the text the next step writes, if it ends this one with messages."""
        steps = self.script.steps
        after = steps[self._next] if self._next < len(steps) else _COMPLETED
        if step.ms is None or self.stream is None:
            return  # an in_progress that lasts until cancelled writes nothing
        if after.status not in ("completed", "incomplete") or after.function_calls:
            return
        texts = after.messages if after.messages is not None else [DEFAULT_MESSAGE]
        self._planned = [OutputMessage(new_id("msg_", 24), text) for text in texts]
        planned = [PlannedText(m.id, i, m.text) for i, m in enumerate(self._planned)]
        self.stream.plan(planned, t, step.ms / 1000.0)

    def _write_messages(self, step: Step, status: str) -> None:
        texts = step.messages if step.messages is not None else [DEFAULT_MESSAGE]
        planned = [m.text for m in self._planned] == texts
        self.output = [
            OutputMessage(self._planned[i].id if planned else new_id("msg_", 24), text, status)
            for i, text in enumerate(texts)
        ]

    def _call_functions(self, specs: list[ToolCallSpec]) -> None:
        """Make the scripted calls this response's own request lets the model make.

        The model can only call a function in its request's ``tools`` (none is carried over
        from a previous response); the real API does not refuse such a request, the model just
        answers without the call. So the calls its tools do not declare are not made, and a
        response left with none completes with a text message (naming them, for whoever reads
        the test), as the real one would: no error, and no call the worker could answer.
        """
        made = [spec for spec in specs if spec.name in self.functions]
        if made:
            self.output = [ToolCall.from_spec(spec) for spec in made]
            return
        names = ", ".join(dict.fromkeys(spec.name for spec in specs))
        text = f"I cannot call {names}: this request gave me no such tool."
        self.output = [OutputMessage(new_id("msg_", 24), text)]

    def cancel(self, now: float) -> None:
        """Cancel at once (Responses have no ``cancelling``); idempotent once cancelled."""
        self.advance(now)
        if self.status == "cancelled":
            return
        if self.terminal:
            raise ApiError(400, f"Cannot cancel a {self.status} response.")
        self._enter(_CANCELLED, now)
