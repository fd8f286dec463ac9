"""Admission: arq's jobs become runs driven here, or a precise refusal.

``runpoller.run`` jobs are validated, their API key resolved and their bounds checked, the
run record is claimed in Redis (create, take over if unowned, or leave it to its live owner)
and the run handed to the driver. A run that already has a record keeps the job that created
it: a later job for it applies nothing, and one that names another object (``IDENTITY_FIELDS``)
is a dead letter saying which fields differ. ``runpoller.resume`` jobs take over runs
released by dead or stopping workers. Nothing here raises for bad input: a job that names a
run gets a final error event under that run's key, anything else becomes a dead letter.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import structlog
from pydantic import ValidationError

from runpoller import engine
from runpoller.config import Settings
from runpoller.engine.admission import Bounds, Limits, job_bounds, metadata_refusal, refused
from runpoller.protocol import (
    FN_DEAD_LETTER,
    FN_RESUME,
    FN_RUN,
    RUN_ID_PATTERN,
    AnyJob,
    ErrorInfo,
    FinalEvent,
    describe_validation_error,
    parse_job,
    stored_job,
)
from runpoller.redis.store import RunStore
from runpoller.secrets import SecretError, decrypt, is_encrypted
from runpoller.worker.capacity import Capacity
from runpoller.worker.driver import Runner, accepted_event
from runpoller.worker.intake import Handler
from runpoller.worker.metrics import Metrics

log = structlog.get_logger("runpoller.worker")

_RUN_ID_CHARS = re.compile(RUN_ID_PATTERN)


class RunRefused(Exception):
    """A job that is well-formed but cannot be run (missing key, bounds exceeded)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class Admission:
    def __init__(
        self,
        settings: Settings,
        store: RunStore,
        runner: Runner,
        capacity: Capacity,
        metrics: Metrics,
        replay: Callable[[str, engine.RunState], Awaitable[None]],
    ) -> None:
        self.settings = settings
        self.store = store
        self.runner = runner
        self.capacity = capacity
        self.metrics = metrics
        self.replay = replay
        self._key_ring = settings.key_ring
        self._limits = Limits(
            poll_interval_ms=settings.poll_interval_ms,
            timeout_ms=settings.timeout_ms,
            max_poll_interval_ms=settings.max_poll_interval_ms,
            max_timeout_ms=settings.max_timeout_ms,
        )

    async def intake(self, raw: Any, enqueue_time: float, job_try: int = 1) -> str:
        """Validate a job, claim its run and start driving it. Never raises for bad input."""
        try:
            job = parse_job(raw)
        except ValidationError as exc:
            return await self._refuse_raw(raw, "invalid_job", describe_validation_error(exc))
        run_id = job.run_key
        try:
            api_key, bounds = self._job_parameters(job)
            self._check_metadata(job)
        except RunRefused as exc:
            return await self._refuse(run_id, job.kind, exc.code, str(exc))
        self.capacity.check()
        state = engine.new_state(
            job.object_id,
            now=enqueue_time,
            timeout_s=bounds.timeout_s,
            interval_s=bounds.interval_s,
        )
        conflict: list[str] = []
        with self.capacity.reservation():
            # The app's cancel request comes with the claim, read in its atomic step: between
            # a claim and its adoption there must be no I/O (a Redis failure there would leave
            # the run owned here and never driven). A request written after the claim reaches
            # the run through the cancels stream.
            claim = await self.store.claim(
                run_id,
                stored_job(job),
                state.to_json(),
                accepted_event(run_id, job, state, time.time),
            )
            cancel = claim.cancel
            if claim.outcome in ("owned", "done"):
                # Nothing of this job is applied; if it names another object, say so.
                log.info("run.duplicate", run_id=run_id, outcome=claim.outcome, owner=claim.owner)
                first_json = await self._stored_job_json(run_id)
                conflict = _identity_conflict(_parse_stored(run_id, first_json), job)
                if conflict:
                    return await self._refuse_conflict(run_id, raw, conflict)
                return claim.outcome
            if claim.outcome == "resumed":
                # The run exists: its first job wins. This job's identity must match it; its
                # key, bounds and metadata are not applied (the stored job's are).
                first = _parse_stored(run_id, claim.job_json)
                if first is not None:
                    conflict = _identity_conflict(first, job)
                    job = first
                    try:
                        api_key, bounds = self._job_parameters(job)
                    except RunRefused as exc:
                        if claim.state_json:
                            state = engine.RunState.from_json(claim.state_json)
                        return await self._end_claimed(run_id, job, state, exc)
                if claim.state_json:
                    state = engine.RunState.from_json(claim.state_json)
                else:
                    state = engine.new_state(
                        job.object_id,
                        now=enqueue_time,
                        timeout_s=bounds.timeout_s,
                        interval_s=bounds.interval_s,
                    )
            adopted = self.runner.adopt(run_id, job, state, api_key, cancel)
        if adopted:
            self.metrics.runs_accepted.labels(job.kind, claim.outcome).inc()
            await self.replay(run_id, state)
            log.info("run.accepted", run_id=run_id, outcome=claim.outcome, job_try=job_try)
        if conflict:
            return await self._refuse_conflict(run_id, raw, conflict)
        return claim.outcome if adopted else "already_here"

    async def resume(self, run_id: str, job_try: int = 1) -> str:
        """Take over a run released by a dead or stopping worker."""
        if not isinstance(run_id, str) or not _RUN_ID_CHARS.fullmatch(run_id):
            await self.store.dead_letter("resume job with an invalid run id", repr(run_id))
            self.metrics.dead_letters.inc()
            return "invalid"
        # Claim even a run this worker still drives: after our lease lapsed, another worker
        # may have released it (owner '') and queued this job; returning without claiming
        # would leave it with no owner at all.
        if run_id not in self.runner.runs:
            self.capacity.check()
        with self.capacity.reservation():
            if not await self.store.run_exists(run_id):
                # The record expired (or never existed) before anyone resumed it.
                await self.store.dead_letter("resume of a run that has no record", run_id)
                self.metrics.dead_letters.inc()
                return "expired"
            claim = await self.store.claim(run_id, "", "", "")
            cancel = claim.cancel  # read with the claim, as above
            if claim.outcome != "resumed" or not claim.job_json or not claim.state_json:
                return claim.outcome
            if run_id in self.runner.runs:
                return "already_here"  # driven here, and owned by us again
            job = parse_job(json.loads(claim.job_json))
            state = engine.RunState.from_json(claim.state_json)
            try:
                api_key, _ = self._job_parameters(job)
            except RunRefused as exc:
                return await self._end_claimed(run_id, job, state, exc)
            if not self.runner.adopt(run_id, job, state, api_key, cancel):
                return "already_here"
        self.metrics.runs_accepted.labels(job.kind, "resumed").inc()
        self.metrics.runs_recovered.inc()
        await self.replay(run_id, state)
        log.info("run.resumed", run_id=run_id, phase=state.phase.value, job_try=job_try)
        return "resumed"

    async def dead_letter(self, raw: str, reason: str) -> str:
        await self.store.dead_letter(reason, raw)
        self.metrics.dead_letters.inc()
        log.warning("job.dead_letter", reason=reason)
        return "dead_letter"

    def handlers(self) -> dict[str, Handler]:
        """The arq functions, as :class:`~runpoller.worker.intake.BatchIntake` calls them.

        ``runpoller.run`` and ``runpoller.resume`` take exactly one positional argument; a job
        with other arguments (keyword arguments, none, several) is a dead letter saying so.
        """

        async def run(args: Sequence[Any], kwargs: Mapping[str, Any], et: float, t: int) -> Any:
            problem = _arguments_problem(FN_RUN, args, kwargs)
            if problem is not None:
                return await self.dead_letter(_dump_call(FN_RUN, args, kwargs), problem)
            return await self.intake(args[0], et, t)

        async def resume(args: Sequence[Any], kwargs: Mapping[str, Any], et: float, t: int) -> Any:
            problem = _arguments_problem(FN_RESUME, args, kwargs)
            if problem is not None:
                return await self.dead_letter(_dump_call(FN_RESUME, args, kwargs), problem)
            return await self.resume(args[0], t)

        async def dead(args: Sequence[Any], kwargs: Mapping[str, Any], et: float, t: int) -> Any:
            raw = str(args[0]) if args else ""
            reason = str(args[1]) if len(args) > 1 else "dead-letter job without a reason"
            return await self.dead_letter(raw, reason)

        return {FN_RUN: run, FN_RESUME: resume, FN_DEAD_LETTER: dead}

    # ------------------------------------------------------------------ refusals

    def _job_parameters(self, job: AnyJob) -> tuple[str, Bounds]:
        """The job's API key and bounds (the engine's rule), or RunRefused saying why not."""
        s = self.settings
        if job.api_key is not None:
            api_key = self._job_key(job.api_key.get_secret_value())
        elif s.assistants_api_key is None:
            raise RunRefused(
                "missing_api_key", "no API key: set ASSISTANTS_API_KEY or give api_key in the job"
            )
        elif s.user_provided_key:
            raise RunRefused(
                "missing_api_key",
                "ASSISTANTS_API_KEY is user_provided: the job must carry its own api_key",
            )
        else:
            api_key = s.assistants_api_key.get_secret_value()
        bounds = job_bounds(job.poll_interval_ms, job.timeout_ms, self._limits)
        if not isinstance(bounds, Bounds):
            raise RunRefused(bounds.code, bounds.message)
        fallback_s = s.webhook_fallback_interval_ms / 1000
        if job.kind == "response" and fallback_s > bounds.interval_s:
            # Webhooks wake the run when it ends; polling is the fallback for a lost one.
            bounds = Bounds(timeout_s=bounds.timeout_s, interval_s=fallback_s)
        return api_key, bounds

    def _check_metadata(self, job: AnyJob) -> None:
        """RunRefused when the job's metadata is larger than the setting allows."""
        if not job.metadata:
            return
        size = len(
            json.dumps(job.metadata, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        )
        refusal = metadata_refusal(size, self.settings.max_metadata_bytes)
        if refusal is not None:
            raise RunRefused(refusal.code, f"{refusal.message} (RUNPOLLER_MAX_METADATA_BYTES)")

    def _job_key(self, value: str) -> str:
        if is_encrypted(value):
            try:
                return decrypt(value, self._key_ring)
            except SecretError as exc:
                raise RunRefused("undecryptable_api_key", f"api_key: {exc}") from None
        if not self.settings.allow_plaintext_keys:
            raise RunRefused(
                "plaintext_api_key",
                "api_key must be encrypted (enc:v1:...): give workers and clients "
                "RUNPOLLER_SECRET_KEYS (RUNPOLLER_ALLOW_PLAINTEXT_KEYS=true allows plaintext "
                "for development only)",
            )
        return value

    async def _stored_job_json(self, run_id: str) -> str | None:
        """The job the run record keeps (the run's first job), if any."""
        raw = await self.store.redis.hget(self.store.keys.run(run_id), "job")  # type: ignore[misc]
        if raw is None:
            return None
        return raw.decode() if isinstance(raw, bytes) else str(raw)

    async def _refuse_conflict(self, run_id: str, raw: Any, fields: Sequence[str]) -> str:
        """A second job for a run that names another object: a dead letter, nothing applied."""
        names = ", ".join(fields)
        verb = "differs" if len(fields) == 1 else "differ"
        reason = (
            f"conflicting_job: a second job for run {run_id} was refused: {names} {verb} from "
            "the run's first job, which the run keeps"
        )
        await self.store.dead_letter(reason, _safe_dump(raw))
        self.metrics.dead_letters.inc()
        log.warning("job.conflict", run_id=run_id, fields=list(fields))
        return "dead_letter"

    async def _end_claimed(
        self, run_id: str, job: AnyJob, state: engine.RunState, exc: RunRefused
    ) -> str:
        """A run this worker just claimed whose stored job it cannot run (its key no longer
        decrypts: the key ring changed): end it with the refusal rather than leave it owned
        and never driven."""
        outcome = refused(exc.code, str(exc))
        assert outcome.error is not None
        final = FinalEvent(
            run_id=run_id,
            ts=int(time.time() * 1000),
            kind=job.kind,
            status=outcome.status,
            api_status=state.last_status.value if state.last_status else None,
            reason=outcome.reason,
            error=ErrorInfo(code=outcome.error[0], message=outcome.error[1]),
            metadata=job.metadata,
        ).model_dump_json()
        done = replace(state, phase=engine.Phase.DONE).to_json()
        written = await self.store.finalize(run_id, done, final, outcome.status)
        if written == 1:
            self.metrics.runs_finished.labels(job.kind, outcome.status).inc()
        log.warning("job.refused", run_id=run_id, code=exc.code, reason=str(exc), resumed=True)
        return "refused"

    async def _refuse_raw(self, raw: Any, code: str, message: str) -> str:
        run_id = _identifiable_run_id(raw)
        if run_id is not None:
            kind = raw.get("kind") if raw.get("kind") in ("assistants_run", "response") else None
            return await self._refuse(run_id, kind, code, message, _metadata_of(raw))
        await self.store.dead_letter(f"{code}: {message}", _safe_dump(raw))
        self.metrics.dead_letters.inc()
        log.warning("job.dead_letter", reason=message)
        return "dead_letter"

    async def _refuse(
        self,
        run_id: str,
        kind: str | None,
        code: str,
        message: str,
        metadata: dict[str, Any] | None = None,
    ) -> str:
        outcome = refused(code, message)
        assert outcome.error is not None
        final = FinalEvent(
            run_id=run_id,
            ts=int(time.time() * 1000),
            kind=kind,
            status=outcome.status,
            reason=outcome.reason,
            error=ErrorInfo(code=outcome.error[0], message=outcome.error[1]),
            metadata=metadata,
        ).model_dump_json()
        if await self.store.reject(run_id, final):
            self.metrics.runs_finished.labels(kind or "unknown", outcome.status).inc()
            log.warning("job.refused", run_id=run_id, code=code, reason=message)
            return "refused"
        await self.store.dead_letter(
            f"{code}: {message} (run {run_id} already exists; left untouched)", run_id
        )
        self.metrics.dead_letters.inc()
        return "dead_letter"


IDENTITY_FIELDS = (
    "kind",
    "thread_id",
    "run_id",
    "response_id",
    "request",
    "continuation",
    "session_id",
    "turn_id",
    "input",
)
"""What a job says the run *is*: the API object it follows (or creates) and continues with.

Two jobs for one run id with the same values are the same run (an idempotent re-enqueue);
different values mean the second job describes another run. ``id`` is the run id itself.
``api_key`` is not identity: it is a credential, and as ciphertext it differs on every
encryption of the same key (a fresh nonce), so it cannot be compared. ``poll_interval_ms``,
``timeout_ms`` and ``metadata`` are how the first job asked to be run; a second job's are
never applied either way.
"""


def _identity_conflict(first: AnyJob | None, second: AnyJob) -> list[str]:
    """The identity fields in which ``second`` differs from the run's first job."""
    if first is None:
        return []
    if first.kind != second.kind:
        return ["kind"]
    return [
        name
        for name in IDENTITY_FIELDS
        if getattr(first, name, None) != getattr(second, name, None)
    ]


def _parse_stored(run_id: str, job_json: str | None) -> AnyJob | None:
    """The job a run record keeps, or None when there is none (or it no longer parses)."""
    if not job_json:
        return None
    try:
        return parse_job(json.loads(job_json))
    except (ValueError, ValidationError):
        log.warning("run.stored_job_unreadable", run_id=run_id)
        return None


def _metadata_of(raw: Any) -> dict[str, Any] | None:
    """An invalid job's metadata, echoed in its final event when it is itself valid."""
    value = raw.get("metadata") if isinstance(raw, dict) else None
    try:
        return FinalEvent.model_validate(
            {"run_id": "x", "ts": 0, "status": "error", "reason": "", "metadata": value}
        ).metadata
    except ValidationError:
        return None


def _identifiable_run_id(raw: Any) -> str | None:
    """The run key the app follows for this (invalid) job, if it can be told.

    ``id`` wins when given, as for a valid job: an invalid ``id`` names no key the app could
    follow, and writing under ``run_id`` instead would leave the app waiting on ``id``.
    """
    if not isinstance(raw, dict):
        return None
    if raw.get("id") is not None:
        value = raw["id"]
        return value if isinstance(value, str) and _RUN_ID_CHARS.fullmatch(value) else None
    for name in ("run_id", "response_id"):
        value = raw.get(name)
        if isinstance(value, str) and _RUN_ID_CHARS.fullmatch(value):
            return value
    return None


def _arguments_problem(function: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str | None:
    """Why a job's arguments do not fit ``function`` (one positional argument), if they don't."""
    if kwargs:
        names = ", ".join(sorted(str(k) for k in kwargs)[:10])
        return f"{function} takes no keyword arguments, got {len(kwargs)}: {names}"[:300]
    if len(args) != 1:
        return f"{function} takes exactly one positional argument, got {len(args)}"
    return None


def _dump_call(function: str, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    """A job with the wrong arguments, for its dead letter (any api_key blanked)."""
    call = {
        "f": function,
        "a": [_without_key(a) for a in args],
        "k": {str(k): _without_key(v) for k, v in kwargs.items()},
    }
    return _safe_dump(call)


def _without_key(value: Any) -> Any:
    if isinstance(value, dict) and "api_key" in value:
        return {**value, "api_key": "**********"}
    return value


def _safe_dump(raw: Any) -> str:
    """The raw job for a dead letter, with any api_key blanked."""
    if isinstance(raw, dict) and "api_key" in raw:
        raw = {**raw, "api_key": "**********"}
    try:
        return json.dumps(raw, default=str)[:4096]
    except (TypeError, ValueError):
        return repr(raw)[:4096]
