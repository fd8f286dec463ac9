"""Properties of the rules (engine.rules) over random runs of answers, failures and replies.

Each example drives one run from ``new_state`` the way the driver does: it performs whatever
the engine asks for next, at (or after) the time asked, and feeds back an answer the API could
give, a failure, an app reply that arrives during the wait, or a worker restart from the last
state the driver would have persisted. After every decision the invariants below must hold.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import get_args

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runpoller import engine
from runpoller.engine import (
    MEANINGS,
    ActionRequired,
    CancelReason,
    CancelStarted,
    Decision,
    ErrorCode,
    Failure,
    Finished,
    Next,
    Observation,
    Op,
    Phase,
    Policy,
    RunState,
    Status,
    ToolCallRequest,
)
from runpoller.protocol import FinalStatus

T0 = 1_000_000.0
GRACE = 30.0
POLICIES = [
    Policy(cancel_grace_s=GRACE),
    Policy(cancel_grace_s=GRACE, allowed_models=frozenset({"gpt-4o"})),
    Policy(cancel_grace_s=GRACE, excluded_ids=frozenset({"asst_bad"})),
    Policy(cancel_grace_s=GRACE, adaptive_after_s=5.0, adaptive_max_s=8.0),
]
FINAL_STATUSES = set(get_args(FinalStatus))
MAX_STEPS = 60

# ---------------------------------------------------------------------------- strategies

lateness = st.one_of(st.just(0.0), st.floats(0, 45, allow_nan=False))


def failures(op: Op) -> st.SearchStrategy[Failure]:
    """What the API client reports; a race only for a cancel or submit the run outran."""
    retry_after = st.one_of(st.none(), st.floats(0, 200, allow_nan=False))
    kinds = [
        st.builds(Failure, st.just("HTTP 503"), st.just(503), retryable=st.just(True)),
        st.builds(
            Failure,
            st.just("HTTP 429"),
            st.just(429),
            retryable=st.just(True),
            retry_after_s=retry_after,
        ),
        st.builds(Failure, st.just("connection error"), retryable=st.just(True)),
        st.builds(
            Failure, st.just("HTTP 4xx: refused"), st.sampled_from([400, 401, 403, 404, None])
        ),
    ]
    if op in (Op.CANCEL, Op.SUBMIT):
        kinds.append(
            st.builds(Failure, st.just("HTTP 400: Cannot cancel"), st.just(400), race=st.just(True))
        )
    return st.one_of(kinds)


@st.composite
def observations(draw: st.DrawFn, state: RunState, op: Op) -> Observation:
    # Weighted towards the statuses a run spends its life in.
    status = draw(st.sampled_from([*Status, Status.IN_PROGRESS, *[Status.REQUIRES_ACTION] * 3]))
    calls: tuple[ToolCallRequest, ...] = ()
    if status is Status.REQUIRES_ACTION:
        same = tuple(ToolCallRequest(c, "f", "{}") for c in state.pending_calls)
        fresh = tuple(
            ToolCallRequest(f"call_{state.round + 1}_{i}", "f", "{}")
            for i in range(draw(st.integers(1, 2)))
        )
        # Or none at all (only other actions, a transient state): no tool round then.
        calls = draw(st.sampled_from([same or fresh, fresh, fresh, ()]))
    # A create or a continuation brings a new id; now and then a proxy answers with another
    # object's (a foreign id, or one the run already followed), which ends the run.
    creates = op is Op.CREATE or (op is Op.SUBMIT and state.answer_creates)
    object_id = f"obj_{len(state.object_ids) + 1}" if creates else state.object_id
    if draw(st.integers(0, 19)) == 0:
        object_id = draw(st.sampled_from(["obj_foreign", "", *state.object_ids]))
    if status is Status.UNKNOWN:
        api_status = draw(st.sampled_from(["thinking", "paused"]))
    else:
        api_status = status.value
    return Observation(
        status=status,
        api_status=api_status,
        object_id=object_id,
        model=draw(st.sampled_from([None, "gpt-4o", "gpt-3.5"])),
        assistant_id=draw(st.sampled_from([None, "asst_ok", "asst_bad"])),
        tool_calls=calls,
        action_expires_at=draw(st.one_of(st.none(), st.floats(T0, T0 + 700, allow_nan=False))),
        poll_after_s=draw(st.one_of(st.none(), st.floats(0, 20, allow_nan=False))),
        cancellable=draw(st.booleans()) if status is Status.REQUIRES_ACTION else True,
        answer_creates=draw(st.booleans()),
    )


@st.composite
def replies(draw: st.DrawFn, state: RunState) -> tuple[int, list[tuple[str, object]] | None]:
    # Mostly the answer the engine waits for (so submits happen), else a near miss.
    round_ = draw(st.sampled_from([state.round] * 4 + [state.round - 1, state.round + 1]))
    exact: list[tuple[str, object]] = [(c, f"out {c}") for c in state.pending_calls]
    outputs = draw(
        st.sampled_from([exact] * 4 + [exact[:-1], [*exact, ("call_x", "?")], [("c", 5)], None])
    )
    return round_, outputs


# ---------------------------------------------------------------------------- the driver


@dataclass
class Run:
    """One run driven through the rules, checking the invariants after every decision."""

    policy: Policy
    state: RunState
    now: float = T0
    nxt: Next | None = None
    persisted: RunState = field(init=False)
    finals: list[Finished] = field(default_factory=list)
    app_cancelled: bool = False

    def __post_init__(self) -> None:
        self.deadline, self.interval = self.state.deadline, self.state.interval
        self.persisted = self.state
        self.nxt = engine.resume(self.state, self.now)

    def apply(self, d: Decision, *, rule: str) -> None:
        old, new = self.state, d.state
        fins = [e for e in d.effects if isinstance(e, Finished)]
        started = [e for e in d.effects if isinstance(e, CancelStarted)]
        # A final effect ends the run, once; nothing else does.
        self.finals += fins
        assert len(self.finals) <= 1, self.finals
        if fins:
            assert d.next is None and new.phase is Phase.DONE
            fin = fins[0]
            assert fin.status in FINAL_STATUSES
            # Every end but completed has an error code, listed for its status.
            assert (fin.error is None) == (fin.status == "completed"), fin
            if fin.error is not None:
                code = ErrorCode(fin.error[0])
                assert fin.status in MEANINGS[code][0], fin
            if self.app_cancelled and fin.cancel is not None:
                assert fin.cancel.reason in (CancelReason.APP, old.cancel_reason)
        elif rule == "reply":
            assert new == old, "a reply decides a request, never a new state"
        else:
            assert d.next is not None and new.phase is not Phase.DONE, d
        # The deadline (and interval) never move.
        assert (new.deadline, new.interval) == (self.deadline, self.interval)
        # Cancel is announced exactly when its reason is first set, and never undone.
        assert bool(started) == (old.cancel_reason is None and new.cancel_reason is not None)
        if new.cancel_reason is not None:
            assert new.phase in (Phase.CANCELLING, Phase.FETCHING, Phase.DONE)
        # An answer at or past the deadline never leads to another plain poll.
        if rule == "observation" and self.now >= self.deadline:
            assert new.phase not in (Phase.POLLING, Phase.AWAITING_OUTPUTS), new
        # The state survives JSON, as the next owner reads it.
        assert RunState.from_json(new.to_json()) == new
        if d.next is not None:
            self.check_schedule(d.next, new)
        self.state = new
        if d.next is not None or rule != "reply":
            self.nxt = d.next
        # What the driver would have written (it holds FETCHING until the final event).
        if new.phase not in (Phase.FETCHING, Phase.DONE) and (
            d.effects or old.durable_changed(new)
        ):
            self.persisted = new

    def check_schedule(self, n: Next, state: RunState) -> None:
        """Nothing is scheduled in the past, nor later than the deadline but the cancel and
        what the cancel grace period bounds (a re-read at once, ``now``, may be past both)."""
        assert n.at >= self.now
        limit = state.phase_since + self.policy.cancel_grace_s
        if n.op is Op.CANCEL:
            assert state.cancellable, "no cancel for a run with nothing to cancel"
            assert state.object_id, "no cancel for an object never created"
            assert state.phase is Phase.CANCELLING and n.at <= max(limit, self.now)
        elif state.phase in (Phase.CANCELLING, Phase.FETCHING):
            assert n.at <= max(limit, self.now), (n, state)
        else:
            assert n.at <= max(self.deadline, self.now), (n, state)
        if n.op is Op.SUBMIT:
            assert state.phase is Phase.AWAITING_OUTPUTS and n.outputs
        if n.op is Op.CREATE:
            assert not state.object_id

    def step(self, data: st.DataObject) -> None:
        nxt = self.nxt
        assert nxt is not None
        kinds = ["answer", "answer", "failure", "failure", "restart", "cancel"]
        if nxt.wake_on_reply:
            kinds += ["reply", "reply"]
        kind = data.draw(st.sampled_from(kinds), label="event")
        if kind == "cancel":
            # The app asks to cancel during the wait (the driver feeds it in between requests).
            self.now = data.draw(st.floats(self.now, max(self.now, nxt.at)), label="cancel at")
            d = engine.on_cancel_request(self.state, "user pressed stop", self.now)
            if d is None:
                assert self.state.phase in (Phase.CANCELLING, Phase.FETCHING)
                return None
            self.app_cancelled = True
            assert d.state.cancel_reason is CancelReason.APP
            return self.apply(d, rule="cancel")
        if kind == "reply":
            self.now = data.draw(st.floats(self.now, max(self.now, nxt.at)), label="reply at")
            round_, outputs = data.draw(replies(self.state), label="reply")
            problem = "" if outputs is not None else "not JSON"
            d = engine.on_reply(self.state, round_, outputs, self.now, self.policy, problem)
            return self.apply(d, rule="reply")
        self.now = max(self.now, nxt.at) + data.draw(lateness, label="late by")
        if kind == "restart":
            self.state = RunState.from_json(self.persisted.to_json())
            self.nxt = engine.resume(self.state, self.now)
            assert self.nxt is not None and self.state.deadline == self.deadline
            return
        if kind == "failure":
            f = data.draw(failures(nxt.op), label="failure")
            rand = data.draw(st.floats(0, 1, exclude_max=True), label="rand")
            d = engine.on_failure(self.state, nxt.op, f, self.now, self.policy, rand, nxt.outputs)
            return self.apply(d, rule="failure")
        if nxt.op is Op.FETCH_RESULT:
            return self.apply(engine.on_result_fetched(self.state, self.now), rule="result")
        obs = data.draw(observations(self.state, nxt.op), label="observation")
        old = self.state
        d = engine.on_observation(old, nxt.op, obs, self.now, self.policy)
        # Only a request that creates an object brings a new id, never one already followed;
        # any other id ends the run as object_mismatch, never adopted.
        creates = nxt.op is Op.CREATE or (nxt.op is Op.SUBMIT and old.answer_creates)
        own = obs.object_id not in old.object_ids if creates else obs.object_id == old.object_id
        own = own and bool(obs.object_id)
        fins = [e for e in d.effects if isinstance(e, Finished)]
        mismatch = any(f.error is not None and f.error[0] == "object_mismatch" for f in fins)
        assert mismatch is not own, (nxt.op, obs.object_id, old.object_ids)
        assert d.state.object_id == (obs.object_id if own else old.object_id)
        # The app is asked only for function calls, never for an empty round.
        assert all(e.calls for e in d.effects if isinstance(e, ActionRequired))
        self.apply(d, rule="observation")

    def check_over(self) -> None:
        """After the end nothing is decided, whatever comes."""
        s = self.state
        assert s.phase is Phase.DONE and engine.resume(s, self.now) is None
        quiet = Decision(s)
        obs = Observation(Status.COMPLETED, "completed", s.object_id)
        assert engine.on_observation(s, Op.GET, obs, self.now, self.policy) == quiet
        assert engine.on_failure(s, Op.GET, Failure("x"), self.now, self.policy, 0) == quiet
        assert engine.on_result_fetched(s, self.now) == quiet
        assert engine.on_reply(s, s.round, [], self.now, self.policy) == quiet
        assert engine.on_crash(s, "RuntimeError") == quiet
        assert engine.on_cancel_request(s, "stop", self.now) is None


@st.composite
def runs(draw: st.DrawFn) -> Run:
    state = engine.new_state(
        draw(st.sampled_from(["run_1", ""]), label="object id"),
        now=T0,
        timeout_s=draw(st.sampled_from([1.0, 30.0, 120.0]), label="timeout"),
        interval_s=draw(st.sampled_from([0.5, 2.0]), label="interval"),
    )
    return Run(draw(st.sampled_from(POLICIES), label="policy"), state)


PROPERTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# ---------------------------------------------------------------------------- properties


@PROPERTY
@given(run=runs(), data=st.data())
def test_random_runs_keep_every_invariant(run: Run, data: st.DataObject) -> None:
    for _ in range(MAX_STEPS):
        if run.nxt is None:
            run.check_over()
            return
        run.step(data)


@settings(PROPERTY, max_examples=100)
@given(run=runs(), data=st.data(), prefix=st.integers(0, 25), answers=st.booleans())
def test_a_run_the_api_never_ends_is_over_by_deadline_plus_grace(
    run: Run, data: st.DataObject, prefix: int, answers: bool
) -> None:
    """After any beginning, an API that only fails (or only says in_progress) cannot keep a
    run alive: it ends by the deadline plus the cancel grace period, sent on time."""
    for _ in range(prefix):
        if run.nxt is None:
            return
        run.step(data)
    start = run.now
    for _ in range(10_000):
        nxt = run.nxt
        if nxt is None:
            break
        run.now = max(run.now, nxt.at)
        if answers and nxt.op is not Op.FETCH_RESULT:
            obs = Observation(Status.IN_PROGRESS, "in_progress", run.state.object_id or "obj_1")
            d = engine.on_observation(run.state, nxt.op, obs, run.now, run.policy)
            run.apply(d, rule="observation")
        else:
            down = Failure("HTTP 503", 503, retryable=True)
            d = engine.on_failure(run.state, nxt.op, down, run.now, run.policy, 0.0, nxt.outputs)
            run.apply(d, rule="failure")
    assert run.nxt is None and len(run.finals) == 1
    assert run.now <= max(start, run.deadline) + run.policy.cancel_grace_s
    run.check_over()
