"""The in-process driver: one lightweight task per in-flight run.

arq hands us a run once (a short intake job); from then on the run lives here, in this
process, until its final event: a task sleeps until the engine's next deadline, performs one
request through the backend, feeds the answer to the engine and writes the resulting events
to Redis. A steady poll (no status change) touches Redis not at all, so one process can hold
thousands of runs, and arq's lease and head-of-line limits never apply to long runs.

Writes never hold a run up: status events and state go out in order, in the background, so
a Redis outage does not delay a cancel at the deadline. What must be known before a request
is sent is awaited: the fenced claim of a step (a create, a submit, a cancel; see the
engine's rules) proves this worker still owns the run — except for a cancel, which goes out
after a second whether or not Redis answers. Every request is cut at the engine's time limit
for it (the deadline, or the end of the cancel grace). When Redis lost a run's record (a
restart without persistence, a FLUSHDB), the next write restores it from memory: same job,
deadline, phase and round.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from runpoller import engine
from runpoller.backends import Backend, RunResult, close_memo
from runpoller.engine import Failure, Observation, Op, RunState
from runpoller.http.api import ApiFailure
from runpoller.http.slots import PrioritySemaphore
from runpoller.protocol import (
    AcceptedEvent,
    AnyJob,
    CancelInfo,
    ErrorInfo,
    FinalEvent,
    ParsedReply,
    ProgressEvent,
    ReplyRejectedEvent,
    RequiresActionEvent,
    StatusEvent,
    ToolCall,
    stored_job,
)
from runpoller.redis.connection import OutageMonitor
from runpoller.redis.store import RunStore
from runpoller.worker.metrics import Metrics
from runpoller.worker.ratelimit import RateLimiter

log = structlog.get_logger("runpoller.runner")

Clock = Callable[[], float]


def now_ms(clock: Clock) -> int:
    return int(clock() * 1000)


@dataclass(slots=True)
class ActiveRun:
    """One run this worker drives, for as long as it is in flight: thousands at once, so
    every field counts (slots; what most runs never need is made when first needed)."""

    run_id: str
    job: AnyJob
    state: RunState
    api_key: str
    backend: Backend
    _inbox: asyncio.Queue[ParsedReply | None] | None = None
    last_obs: Observation | None = None
    result: RunResult | None = None
    terminal_seen: float | None = None
    asked_at: float | None = None
    task: asyncio.Task[None] | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    """The backend's per-run scratch space (its prepared poll request)."""
    held: tuple[tuple[str, str], ...] = ()
    """Events decided while fetching results, written by the finalize script before ``final``."""
    writes: asyncio.Task[int] | None = None
    """The last of this run's queued Redis writes (each waits for the one before)."""
    lost: bool = False
    last_failure: Failure | None = None
    """The last failed request's classification: what a request with no time left reports."""
    cancel_asked: str | None = None
    """The app's cancel request (its reason, maybe ""), until the engine has seen it."""
    sleeper: asyncio.Future[None] | None = None
    """The wait for the next request, while one runs: a cancel request ends it early."""
    woken: bool = False
    """A webhook said the run's object changed: the wait for its next poll ends now."""
    next_op: Op | None = None
    """The request the driver waits to make (a wake-up only hurries a poll)."""
    used_replies: set[str] | None = None
    """Entry ids of the replies submitted: a redelivery of one (live and replayed after a
    takeover) is dropped, not rejected. Made at the first (an empty set costs 216 bytes)."""
    progress: ProgressWriter | None = None
    """A streamed run's text on its way to the run's events (jobs with ``stream: true``)."""

    @property
    def inbox(self) -> asyncio.Queue[ParsedReply | None]:
        """The app's replies for this run (None: wake up, a cancel came). Made when first
        needed: a queue costs ~3 KB, and most runs never get a reply."""
        if self._inbox is None:
            self._inbox = asyncio.Queue()
        return self._inbox

    def used(self, entry_id: str) -> bool:
        """Whether the reply with this entry id was submitted already."""
        return self.used_replies is not None and entry_id in self.used_replies

    def wake(self) -> None:
        """End the current wait now (a cancel request came, or a webhook)."""
        if self.sleeper is not None and not self.sleeper.done():
            self.sleeper.set_result(None)
        if self._inbox is not None:
            self._inbox.put_nowait(None)


# How long a request may wait for the shared budget before the engine decides instead.
RATE_LIMIT_MAX_WAIT_S = 1.0
# How long a cancel waits for its fenced claim before it is sent anyway (Redis is down).
CANCEL_CLAIM_WAIT_S = 1.0
# Cancel requests kept for runs not driven here (see Runner.cancel_notices).
CANCEL_NOTICES_KEPT = 1000


# Progress coalescing: text waits at most this long, or until this much has come.
PROGRESS_EVERY_S = 0.1
PROGRESS_MAX_BYTES = 1024


class ProgressWriter:
    """A streamed run's text, coalesced into ``progress`` events (backends.Progress).

    The first text goes out at once, then at most one event per ``PROGRESS_EVERY_S`` (or as
    soon as ``PROGRESS_MAX_BYTES`` wait). Each event is written with the run's state, whose
    ``stream_seq`` is the last sequence number it includes, in one fenced write: a new owner
    resumes the stream after it, so no text is lost or written twice.
    """

    def __init__(self, runner: Runner, run: ActiveRun) -> None:
        self.runner = runner
        self.run = run
        self.object_id = ""
        self.parts: list[str] = []
        self.size = 0
        self.taken = -1
        self.last_sent = -PROGRESS_EVERY_S
        self.timer: asyncio.TimerHandle | None = None

    def after(self, object_id: str) -> int:
        if object_id == self.object_id:
            return self.taken
        state = self.run.state
        return state.stream_seq if state.stream_object == object_id else -1

    def text(self, object_id: str, sequence_number: int, delta: str) -> None:
        if object_id != self.object_id:
            self.flush()
            self.object_id = object_id
        if sequence_number <= self.after(object_id):
            return  # already taken (a resumed stream starts after it; this is a safeguard)
        self.taken = sequence_number
        self.parts.append(delta)
        self.size += len(delta)
        wait = self.last_sent + PROGRESS_EVERY_S - self.runner.clock()
        if wait <= 0 or self.size >= PROGRESS_MAX_BYTES:
            self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(wait, self.flush)

    def flush(self) -> None:
        """Write what waits (nothing: no write)."""
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        run, runner = self.run, self.runner
        if not self.parts or run.lost:
            return
        event = ProgressEvent(
            run_id=run.run_id,
            ts=now_ms(runner.clock),
            object_id=self.object_id,
            delta="".join(self.parts),
            sequence_number=self.taken,
        )
        self.parts, self.size = [], 0
        self.last_sent = runner.clock()
        run.state = replace(run.state, stream_object=self.object_id, stream_seq=self.taken)
        runner.metrics.progress_events.inc()
        events = [("progress", event.model_dump_json())]
        runner._queue(run, runner.store.publish, run.run_id, run.state.to_json(), events)


class Lost(Exception):
    """This worker no longer owns the run (it was presumed dead and the run moved on)."""


class Runner:
    def __init__(
        self,
        store: RunStore,
        backends: dict[str, Backend],
        policy: engine.Policy,
        *,
        http_concurrency: int,
        max_streams: int = 100,
        metrics: Metrics | None = None,
        limiter: RateLimiter | None = None,
        max_result_bytes: int = 1024 * 1024,
        clock: Clock = time.time,
        outage: OutageMonitor | None = None,
    ) -> None:
        self.max_result_bytes = max_result_bytes
        # The worker's one record of Redis outages: it logs once per quiet period, however
        # many runs' writes (and pooled connections going stale at a restart) fail.
        self.outage = outage or OutageMonitor()
        self.metrics = metrics or Metrics()
        self.limiter = limiter
        self.store = store
        self.backends = backends
        self.policy = policy
        self.clock = clock
        self.runs: dict[str, ActiveRun] = {}
        self.by_object: dict[str, ActiveRun] = {}
        """The run following each API object id (what a webhook names)."""
        self.wake_notices: dict[str, None] = {}
        """Objects a webhook named before any run here followed them (the latest
        ``CANCEL_NOTICES_KEPT``): a continuation whose response ended before its create's
        answer was applied polls at once when it is, instead of at the fallback interval."""
        self.cancel_notices: dict[str, str] = {}
        """Cancel requests read for runs not driven here (reason by run id, the latest
        ``CANCEL_NOTICES_KEPT``): one adopted just after its request was read gets it, even
        if its claim read the run's request before the app wrote it."""
        # Creates, fetches, submits and cancels go before routine polls: someone waits on them.
        self.http_slots = PrioritySemaphore(http_concurrency)
        # Streams open at once (jobs with stream: true): one beyond them is polled instead.
        self.streams_free = max_streams
        self.redis_down_since: float | None = None

    # ------------------------------------------------------------------ adoption

    def adopt(
        self,
        run_id: str,
        job: AnyJob,
        state: RunState,
        api_key: str,
        cancel: str | None = None,
    ) -> bool:
        """Start driving a run; False (and nothing done) if this worker drives it already.

        ``cancel`` is the app's cancel request read with the claim (its reason): the driver
        decides on it before its first request, so nothing the cancel forbids is sent.
        """
        if run_id in self.runs:
            return False
        run = ActiveRun(run_id, job, state, api_key, self.backends[job.kind])
        if getattr(job, "stream", False):
            run.progress = ProgressWriter(self, run)
        noticed = self.cancel_notices.pop(run_id, None)
        if cancel is None:
            cancel = noticed
        if cancel is not None and state.cancel_reason is not engine.CancelReason.APP:
            run.cancel_asked = cancel
        self.runs[run_id] = run
        if state.object_id:
            self.by_object[state.object_id] = run
            if self.wake_notices.pop(state.object_id, 0) is None:
                run.woken = True
                self.metrics.wakes.labels("woken_late").inc()
        run.task = asyncio.create_task(self._drive(run), name=f"run:{run_id}")
        return True

    async def stop_runs(self) -> None:
        runs = list(self.runs.values())
        tasks: list[asyncio.Future[Any]] = [run.task for run in runs if run.task is not None]
        tasks += [run.writes for run in runs if run.writes is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self.runs.clear()
        self.by_object.clear()

    def restore_missing(self, run_ids: list[str]) -> None:
        """Runs whose records Redis lost while this worker drives them (seen when its own
        heartbeat found itself forgotten): each next write restores the record (see _write)."""
        for run_id in run_ids:
            run = self.runs.get(run_id)
            if run is not None and not run.lost:
                self._queue(run, self.store.publish, run_id, run.state.to_json(), [])

    def deliver_reply(self, reply: ParsedReply) -> bool:
        """Hand the app's reply to the run's driver: False when this worker does not drive
        the run, or it has ended. A run waiting for outputs takes it in its wait; any other
        run cannot use it, and says so at once (a ``reply_rejected`` event)."""
        run = self.runs.get(reply.run_id)
        if run is None or run.state.phase is engine.Phase.DONE:
            return False
        if run.state.phase is engine.Phase.AWAITING_OUTPUTS:
            run.inbox.put_nowait(reply)
        elif not run.used(reply.entry_id):
            decision = engine.on_reply(
                run.state, reply.round, reply.outputs, self.clock(), self.policy, reply.problem
            )
            self._reply_effects(run, decision.effects)
        return True

    def wake_object(self, object_id: str) -> str:
        """A webhook says ``object_id`` changed (a response ended): its run polls now.
        ``woken``; ``not_here`` when no run here follows it; ``not_waiting`` when its next
        request is not a poll (a backoff, a cancel, a submit keep their own schedule)."""
        run = self.by_object.get(object_id)
        if run is None or run.state.object_id != object_id or self.runs.get(run.run_id) is not run:
            _remember(self.wake_notices, object_id, None)
            return "not_here"
        if run.next_op is not Op.GET:
            return "not_waiting"
        run.woken = True
        run.wake()
        return "woken"

    def request_cancel(self, run_id: str, app_reason: str) -> bool:
        """The app asked to cancel a run: False when this worker does not drive it. The run's
        driver feeds it to the engine before its next request (at once, if it is waiting);
        asked again, it changes nothing."""
        run = self.runs.get(run_id)
        if run is None:
            _remember(self.cancel_notices, run_id, app_reason)
            return False
        if run.cancel_asked is None and run.state.cancel_reason is not engine.CancelReason.APP:
            run.cancel_asked = app_reason
            run.wake()
        return True

    # ------------------------------------------------------------------ the loop

    def _log(self, run: ActiveRun) -> Any:
        """The run's logger, bound when a line is written: a bound logger kept for each run
        would cost ~370 bytes of every run in flight, for a few lines per run."""
        return log.bind(
            run_id=run.run_id,
            object_id=run.state.object_id,
            thread_id=getattr(run.job, "thread_id", None),
            kind=run.job.kind,
            worker_id=self.store.worker_id,
        )

    async def _drive(self, run: ActiveRun) -> None:
        loop = asyncio.get_running_loop()
        try:
            first = engine.start(run.state, self.clock())
            await self._apply(run, first)
            nxt = first.next
            while nxt is not None:
                if run.cancel_asked is not None:
                    asked, run.cancel_asked = run.cancel_asked, None
                    cancelled = engine.on_cancel_request(run.state, asked, self.clock())
                    if cancelled is not None:
                        await self._apply(run, cancelled)
                        nxt = cancelled.next
                        continue
                run.next_op = nxt.op
                decision = None
                if run.woken and nxt.op is Op.GET:
                    pass  # a webhook said the object changed: poll now
                elif nxt.wake_on_reply:
                    decision = await self._wait(run, nxt)
                else:
                    delay = nxt.at - self.clock()
                    if delay > 0:
                        # The sleep of nearly every run in flight, in this frame: one future
                        # and one timer, no coroutine of its own (asyncio.sleep's, or a helper's,
                        # would cost each sleeping run a frame). ActiveRun.wake ends it early.
                        run.sleeper = sleeper = loop.create_future()
                        timer = loop.call_later(delay, _wake_up, sleeper)
                        try:
                            await sleeper
                        finally:
                            timer.cancel()
                            run.sleeper = None
                run.next_op, run.woken = None, False
                if decision is None:
                    if run.cancel_asked is not None:
                        continue  # woken by the app's cancel: the engine decides first
                    decision = await self._perform(run, nxt)
                    if decision is None:
                        continue  # a stream read cut short by the app's cancel
                await self._apply(run, decision)
                nxt = decision.next
            if run.writes is not None:
                await run.writes
        except Lost:
            self._log(run).warning("run.lost", reason="another worker owns it now")
        except asyncio.CancelledError:
            if not run.lost:
                raise
            self._log(run).warning("run.lost", reason="another worker owns it now")
        except Exception as exc:
            self._log(run).exception("run.crashed")
            await self._finish_after_crash(run, exc)
        finally:
            with contextlib.suppress(Exception):
                await close_memo(run.memo)  # a stream held open for the next read
            # Only this driver's entry: a newer one for the same run may have replaced it.
            if self.runs.get(run.run_id) is run:
                del self.runs[run.run_id]
            for object_id in run.state.object_ids:
                if self.by_object.get(object_id) is run:
                    del self.by_object[object_id]

    async def _finish_after_crash(self, run: ActiveRun, exc: Exception) -> None:
        """A bug must not strand a run: the engine ends it with an error (never retried)."""
        decision = engine.on_crash(run.state, type(exc).__name__)
        ts = now_ms(self.clock)
        try:
            for effect in decision.effects:
                if isinstance(effect, engine.Finished):
                    await self._finish(run, decision.state, effect, run.held, ts)
        except Exception:
            self._log(run).exception("run.finalize_failed")

    async def _wait(self, run: ActiveRun, nxt: engine.Next) -> engine.Decision | None:
        """Wait until ``nxt.at`` for the app's reply (a ``wake_on_reply`` request): a reply
        the engine acts on cuts the wait short with its decision."""
        delay = nxt.at - self.clock()
        while True:
            try:
                reply = await asyncio.wait_for(run.inbox.get(), max(delay, 0))
            except TimeoutError:
                return None
            if reply is None or run.used(reply.entry_id):
                if reply is None and (run.cancel_asked is not None or run.woken):
                    return None
                delay = nxt.at - self.clock()
                continue
            decision = engine.on_reply(
                run.state, reply.round, reply.outputs, self.clock(), self.policy, reply.problem
            )
            if decision.next is not None:
                if reply.entry_id:
                    if run.used_replies is None:
                        run.used_replies = set()
                    run.used_replies.add(reply.entry_id)
                if run.asked_at is not None:
                    self.metrics.tool_wait.observe(max(self.clock() - run.asked_at, 0))
                return decision
            self._reply_effects(run, decision.effects)
            delay = nxt.at - self.clock()

    async def _perform(self, run: ActiveRun, nxt: engine.Next) -> engine.Decision | None:
        m, kind, op = self.metrics, run.job.kind, nxt.op.value
        started = self.clock()
        if nxt.op is Op.GET:
            m.poll_lateness.observe(max(started - nxt.at, 0.0))
        decision = await self._request(run, nxt)
        m.api_latency_of(kind, op).observe(max(self.clock() - started, 0.0))
        return decision

    async def _request(self, run: ActiveRun, nxt: engine.Next) -> engine.Decision | None:
        step = engine.step_for(run.state, nxt.op)
        if step:
            await self._claim(run, engine.sending(run.state, step), urgent=nxt.op is Op.CANCEL)
        limit = engine.request_deadline(run.state, nxt.op, self.policy)
        budget = limit - self.clock()
        if budget <= 0:
            # Nothing is sent; the engine ends the wait with what is known (the last error).
            failure = run.last_failure or Failure(
                "no time was left to send it before its time limit", code="deadline"
            )
            return self._failed(
                run, run.state, nxt, replace(failure, retryable=True, ambiguous=False)
            )
        sent: list[bool] = []
        try:
            async with asyncio.timeout(budget):
                return await self._send(run, nxt, sent)
        except TimeoutError:
            what = "the deadline" if limit == run.state.deadline else "the end of the cancel grace"
            failure = Failure(
                f"no answer before {what}", code="deadline", retryable=True, ambiguous=bool(sent)
            )
            self.metrics.api_requests_of(run.job.kind, nxt.op.value, "timeout").inc()
            return self._failed(run, run.state, nxt, failure)

    async def _claim(self, run: ActiveRun, claimed: RunState, *, urgent: bool) -> None:
        """Record the step, fenced by ownership, before its request goes out (raises Lost).

        A cancel waits at most CANCEL_CLAIM_WAIT_S: sent at the deadline whether or not Redis
        answers (a zombie's cancel is harmless: the deadline is the same for every owner).
        """
        write = self._queue(run, self.store.publish, run.run_id, claimed.to_json(), [])
        run.state = claimed
        if urgent:
            try:
                code = await asyncio.wait_for(asyncio.shield(write), CANCEL_CLAIM_WAIT_S)
            except TimeoutError:
                return
        else:
            code = await asyncio.shield(write)
        if code != 1:
            raise Lost

    async def _send(
        self, run: ActiveRun, nxt: engine.Next, sent: list[bool]
    ) -> engine.Decision | None:
        """One request and the engine's decision on its answer; None: a stream read the
        app's cancel cut short (nothing observed, the engine decides on the cancel)."""
        backend, job, state, key = run.backend, run.job, run.state, run.api_key
        m, kind, op = self.metrics, job.kind, nxt.op.value
        if self.limiter is not None:
            slot = await self.limiter.acquire(key, max_wait=RATE_LIMIT_MAX_WAIT_S)
            if slot.waited > 0:
                m.rate_limit_wait.observe(slot.waited)
            if not slot.granted:
                failure = Failure(
                    f"rate limited before sending: {slot.why}",
                    code="rate_limited",
                    retryable=True,
                    retry_after_s=slot.retry_after,
                )
                return self._failed(run, state, nxt, failure)
        if nxt.op is Op.GET and run.progress is not None and self.streams_free > 0:
            sent.append(True)
            return await self._follow(run, nxt)
        slots = self.http_slots
        async with slots.routine if nxt.op is Op.GET else slots.urgent:
            sent.append(True)
            try:
                if nxt.op is Op.FETCH_RESULT:
                    run.result = await backend.fetch_result(job, state, key, run.last_obs)
                    m.api_requests_of(kind, op, "200").inc()
                    return engine.on_result_fetched(state, self.clock())
                if nxt.op is Op.GET:
                    obs = await backend.get(job, state, key, run.memo)
                elif nxt.op is Op.CREATE:
                    obs = await backend.create(job, key, self._stream_memo(run))
                elif nxt.op is Op.CANCEL:
                    obs = await backend.cancel(job, state, key)
                else:
                    obs = await backend.submit(job, state, key, nxt.outputs, self._stream_memo(run))
            except (ApiFailure, ValueError) as exc:
                return await self._request_failed(run, nxt, exc)
        return self._observed(run, nxt, obs)

    def _stream_memo(self, run: ActiveRun) -> dict[str, Any] | None:
        """Where a create may keep the stream it opens: none (it creates without streaming)
        when the worker holds RUNPOLLER_MAX_STREAMS streams already."""
        return run.memo if self.streams_free > 0 else None

    async def _request_failed(
        self, run: ActiveRun, nxt: engine.Next, exc: ApiFailure | ValueError
    ) -> engine.Decision:
        """The engine's call on a request that failed: the API client's classification, or an
        answer the backend could not read (never retried)."""
        if not isinstance(exc, ApiFailure):
            failure = Failure(f"unexpected API response: {exc}", retryable=False)
            return self._failed(run, run.state, nxt, failure)
        failure = exc.failure
        m, kind, op = self.metrics, run.job.kind, nxt.op.value
        m.api_requests_of(kind, op, str(failure.status_code or "error")).inc()
        if failure.status_code == 429:
            m.rate_limited.labels(kind).inc()
            if self.limiter is not None and failure.retry_after_s:
                await self.limiter.pause(run.api_key, failure.retry_after_s)
        if failure.retryable:
            m.retries_of(kind, op).inc()
        return self._failed(run, run.state, nxt, failure)

    async def _follow(self, run: ActiveRun, nxt: engine.Next) -> engine.Decision | None:
        """Read a streamed run's stream (not in an HTTP slot: it may stay open for minutes)
        until the response ends; the app's cancel cuts it short (None)."""
        writer = run.progress
        assert writer is not None
        self.streams_free -= 1
        loop = asyncio.get_running_loop()
        read = asyncio.ensure_future(
            run.backend.get(run.job, run.state, run.api_key, run.memo, writer)
        )
        stop: asyncio.Future[None] = loop.create_future()
        run.sleeper = stop  # what ActiveRun.wake ends: a cancel request cuts the read short
        try:
            await asyncio.wait((read, stop), return_when=asyncio.FIRST_COMPLETED)
            if not read.done():
                await suppress_cancel(read)
                return None
            obs = read.result()
        except (ApiFailure, ValueError) as exc:
            return await self._request_failed(run, nxt, exc)
        finally:
            await suppress_cancel(read)  # the deadline cut the wait: the read goes too
            run.sleeper = None
            self.streams_free += 1
            writer.flush()  # the text so far goes out before what the answer decides
        return self._observed(run, nxt, obs)

    def _observed(self, run: ActiveRun, nxt: engine.Next, obs: Observation) -> engine.Decision:
        """The engine's decision on an answer, from the run's state as it is now (a stream
        read moves its progress cursor meanwhile)."""
        self.metrics.api_requests_of(run.job.kind, nxt.op.value, "200").inc()
        run.last_failure = None
        state = run.state
        decision = engine.on_observation(state, nxt.op, obs, self.clock(), self.policy)
        if decision.state.object_id == obs.object_id:
            # Not another object's answer (the engine ends the run on those): its usage, model
            # and output may describe this run.
            run.last_obs = obs
        return decision

    def _failed(
        self, run: ActiveRun, state: RunState, nxt: engine.Next, failure: Failure
    ) -> engine.Decision:
        """The engine's call on a failed request (a retried submit carries its outputs)."""
        if failure.code != "deadline":
            run.last_failure = failure
        return engine.on_failure(
            state, nxt.op, failure, self.clock(), self.policy, random.random(), nxt.outputs
        )

    # ------------------------------------------------------------------ effects

    async def _apply(self, run: ActiveRun, decision: engine.Decision) -> None:
        old, new = run.state, decision.state
        if new.object_id != old.object_id and new.object_id:
            self.by_object[new.object_id] = run
            if self.wake_notices.pop(new.object_id, 0) is None:
                run.woken = True  # its webhook came first: the next poll is now
                self.metrics.wakes.labels("woken_late").inc()
        if run.last_obs is not None and run.last_obs.status is not new.last_status:
            # The engine overruled the last answer (it let go of a run with nothing left to
            # cancel): that answer no longer describes how the run ended.
            run.last_obs = None
        if run.terminal_seen is None and new.last_status is not None and new.last_status.terminal:
            run.terminal_seen = self.clock()
        events: list[tuple[str, str]] = []
        ts = now_ms(self.clock)
        finished: engine.Finished | None = None
        for effect in decision.effects:
            if isinstance(effect, engine.Finished):
                finished = effect
                continue
            if isinstance(effect, engine.StatusChanged):
                event = StatusEvent(
                    run_id=run.run_id,
                    ts=ts,
                    status=effect.api_status,
                    object_id=effect.object_id,
                )
                self._log(run).info("run.status", status=effect.api_status)
                events.append(("status", event.model_dump_json()))
            elif isinstance(effect, engine.ActionRequired):
                run.asked_at = self.clock()
                action = RequiresActionEvent(
                    run_id=run.run_id,
                    ts=ts,
                    round=effect.round,
                    object_id=effect.object_id,
                    tool_calls=[_tool_call(call) for call in effect.calls],
                    deadline=int(effect.deadline * 1000),
                )
                events.append(("requires_action", action.model_dump_json()))
            elif isinstance(effect, engine.ReplyRejected):
                events.append(self._rejected(run, effect, ts))
            elif isinstance(effect, engine.UnknownStatusSeen):
                self.metrics.unknown_statuses.labels(run.job.kind).inc()
                self._log(run).warning(
                    "run.unknown_status", status=effect.api_status, object_id=effect.object_id
                )
            elif isinstance(effect, engine.CancelStarted):
                self.metrics.cancels.labels(effect.reason.value).inc()
                self._log(run).info(
                    "run.cancelling", reason=effect.reason.value, detail=effect.detail
                )
        if finished is not None:
            # Events decided with the end (a status seen on the answer that ended the run)
            # go out with the final event, after those held while the results were fetched.
            # The state is the run's only once that is written: a crash meanwhile leaves the
            # run open for the engine to end.
            await self._finish(run, new, finished, (*run.held, *events), ts)
            run.state = new
            return
        run.state = new
        if new.phase is engine.Phase.FETCHING:
            # The terminal status is known, the results are not: hold its events (and the
            # state) for the finalize script, one Redis round trip instead of two. A worker
            # that dies meanwhile leaves the last durable state, whose owner polls again and
            # sees the terminal status anew.
            if events:
                run.held += tuple(events)
            return
        if events or old.durable_changed(new):
            # In the background, in order: the run goes on (a cancel at the deadline is not
            # held up by a Redis outage); a write that finds the run lost stops the run.
            self._queue(run, self.store.publish, run.run_id, new.to_json(), events)

    def _rejected(self, run: ActiveRun, effect: engine.ReplyRejected, ts: int) -> tuple[str, str]:
        log.warning(
            "reply.rejected", run_id=run.run_id, round=effect.round, problems=effect.problems
        )
        self.metrics.replies_rejected.inc()
        rejected = ReplyRejectedEvent(
            run_id=run.run_id, ts=ts, round=effect.round, problems=list(effect.problems)
        )
        return ("reply_rejected", rejected.model_dump_json())

    def _reply_effects(self, run: ActiveRun, effects: tuple[engine.Effect, ...]) -> None:
        """A reply that decided no request: its rejection, written in order with the run's
        other writes (the state is written as it is)."""
        ts = now_ms(self.clock)
        events = [
            self._rejected(run, e, ts) for e in effects if isinstance(e, engine.ReplyRejected)
        ]
        if events:
            self._queue(run, self.store.publish, run.run_id, run.state.to_json(), events)

    async def _finish(
        self,
        run: ActiveRun,
        state: RunState,
        fin: engine.Finished,
        events: tuple[tuple[str, str], ...],
        ts: int,
    ) -> None:
        final = self._final_event(run, state, fin, ts)
        write = self._queue(
            run, self.store.finalize, run.run_id, state.to_json(), final, fin.status, events
        )
        written = await asyncio.shield(write)
        self._log(run).info("run.final", status=fin.status, reason=fin.reason)
        if written == -1:
            raise Lost
        self.metrics.runs_finished.labels(run.job.kind, fin.status).inc()
        if run.terminal_seen is not None:
            self.metrics.final_latency.observe(max(self.clock() - run.terminal_seen, 0))

    def _final_event(self, run: ActiveRun, state: RunState, fin: engine.Finished, ts: int) -> str:
        obs = run.last_obs
        result = run.result or RunResult()
        error = None
        if fin.error is not None:
            code, message = fin.error
            api_code = fin.api_code
            if obs is not None and obs.error is not None and fin.status == "failed":
                # The API's own words on why the run failed (its last_error).
                # (The backends say "error" when the API gave no code.)
                api_code = obs.error[0] if obs.error[0] != "error" else None
                message = obs.error[1] or message
            error = ErrorInfo(
                code=code, message=message, api_code=api_code, http_status=fin.http_status
            )
        cancel = None
        if fin.cancel is not None:
            cancel = CancelInfo(
                reason=_CANCEL_REASONS[fin.cancel.reason],
                outcome=fin.cancel.outcome,
                app_reason=fin.cancel.app_reason or None,
            )
        detail = dict(result.detail)
        if len(state.object_ids) > 1:
            detail.setdefault("object_ids", list(state.object_ids))
        event = FinalEvent(
            run_id=run.run_id,
            ts=ts,
            kind=run.job.kind,
            status=fin.status,
            api_status=fin.api_status,
            reason=fin.reason,
            error=error,
            incomplete_details=dict(obs.incomplete_details)
            if obs and obs.incomplete_details
            else None,
            output_text=result.output_text,
            usage=dict(obs.usage) if obs and obs.usage else None,
            model=obs.model if obs else None,
            metadata=run.job.metadata,
            cancel=cancel,
            detail=detail,
        )
        text = event.model_dump_json()
        if len(text) <= self.max_result_bytes:
            return text
        # Too large to store as one event: keep ids and status, cut the bulk, say so.
        kept = {k: v for k, v in detail.items() if k not in ("messages", "output", "items")}
        budget = max(self.max_result_bytes // 2, 1)
        output = (result.output_text or "")[:budget]
        event = event.model_copy(
            update={"detail": {**kept, "truncated": True}, "output_text": output or None}
        )
        return event.model_dump_json()

    def _queue(
        self, run: ActiveRun, call: Callable[..., Awaitable[int]], *args: Any
    ) -> asyncio.Task[int]:
        """Queue a fenced write of this run (``publish``/``finalize``) after those before it."""
        task = asyncio.ensure_future(self._write(run, run.writes, call, args))
        run.writes = task
        return task

    async def _write(
        self,
        run: ActiveRun,
        before: asyncio.Task[int] | None,
        call: Callable[..., Awaitable[int]],
        args: tuple[Any, ...],
    ) -> int:
        """One write: waits out an outage; restores a record Redis lost; a write refused
        because another worker owns the run now stops this run's driver."""
        if before is not None:
            with contextlib.suppress(Exception):
                await before
        if run.lost:
            return 0
        code: int = await self._redis(call, *args)
        if code == -2:
            # args[1] is the state being written: the restored record resumes from it, with
            # the job as the record kept it (the same text the claim wrote, rebuilt from the
            # parsed job: not kept for the rare restore, ~220 bytes of every run in flight).
            job_json = stored_job(run.job)
            restored = await self._redis(self.store.restore, run.run_id, job_json, args[1])
            log.warning("run.restored", run_id=run.run_id, restored=restored)
            if restored:
                self.metrics.runs_recovered.inc()
            code = await self._redis(call, *args)
        if code == -1 or (code == 0 and call == self.store.publish):
            run.lost = True
            task = run.task
            if task is not None and task is not asyncio.current_task() and not task.done():
                task.cancel()
        return code

    async def _redis(self, call: Callable[..., Awaitable[Any]], *args: Any) -> Any:
        """Run a Redis call, waiting out an outage with backoff (logged once per outage)."""
        delay = 0.1
        while True:
            try:
                result = await call(*args)
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                if self.redis_down_since is None:
                    self.redis_down_since = self.clock()
                    self.metrics.redis_outages.inc()
                self.outage.note_failure(exc)
                await asyncio.sleep(delay * (0.75 + random.random() / 2))
                delay = min(delay * 2, 5.0)
                continue
            if self.redis_down_since is not None:
                log.info("redis.back", down_s=round(self.clock() - self.redis_down_since, 1))
                self.redis_down_since = None
            return result


# The engine's reasons for a cancel, as the protocol names them (CancelInfo.reason).
_CANCEL_REASONS: dict[engine.CancelReason, Any] = {
    engine.CancelReason.TIMEOUT: "deadline",
    engine.CancelReason.TOOL_TIMEOUT: "tool_outputs_timeout",
    engine.CancelReason.APP: "app",
    engine.CancelReason.REFUSED: "refused_assistant",
    engine.CancelReason.REFUSED_MODEL: "refused_model",
    engine.CancelReason.UNSUPPORTED_ACTION: "unsupported_action",
}


def _remember(notices: dict[str, Any], key: str, value: Any) -> None:
    """Keep ``key`` as the newest notice, the oldest dropped beyond CANCEL_NOTICES_KEPT."""
    notices.pop(key, None)
    notices[key] = value
    while len(notices) > CANCEL_NOTICES_KEPT:
        del notices[next(iter(notices))]


def _wake_up(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _tool_call(call: engine.ToolCallRequest) -> ToolCall:
    try:
        parsed = json.loads(call.arguments)
        valid = True
    except (json.JSONDecodeError, TypeError):
        parsed, valid = None, False
    return ToolCall(
        id=call.id,
        type=call.kind,  # a backend names one of the protocol's
        turn_id=call.turn_id or None,
        request=dict(call.request) if call.request is not None else None,
        name=call.name,
        arguments=call.arguments,
        parsed_arguments=parsed,
        arguments_valid=valid,
    )


def accepted_event(run_id: str, job: AnyJob, state: RunState, clock: Clock) -> str:
    return AcceptedEvent(
        run_id=run_id,
        ts=now_ms(clock),
        kind=job.kind,
        deadline=int(state.deadline * 1000),
        poll_interval_ms=int(state.interval * 1000),
        metadata=job.metadata,
    ).model_dump_json()


async def suppress_cancel(task: asyncio.Task[Any] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
