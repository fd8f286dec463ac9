"""Admission: the bounds a job may ask for, its metadata size, and the outcome of refusing one.

Decided before the run exists (before any :class:`~runpoller.engine.model.RunState`), from
the job's own numbers and the worker's limits. Which key a job runs with is not decided here:
that needs the worker's secrets.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import Finished

INVALID_JOB = "invalid_job"
"""The error code of a job whose bounds (or metadata size) are out of range."""


@dataclass(frozen=True, slots=True)
class Limits:
    """The worker's defaults and maxima for a job's bounds, in milliseconds (as configured)."""

    poll_interval_ms: int
    timeout_ms: int
    max_poll_interval_ms: int
    max_timeout_ms: int


@dataclass(frozen=True, slots=True)
class Bounds:
    """A job's accepted bounds, in seconds (what :func:`~runpoller.engine.new_state` takes)."""

    timeout_s: float
    interval_s: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a job cannot be run; :func:`refused` turns it into the run's final outcome."""

    code: str
    message: str


def job_bounds(
    poll_interval_ms: int | None, timeout_ms: int | None, limits: Limits
) -> Bounds | Refusal:
    """The job's poll interval and timeout (None or 0: the worker's default), within limits."""
    interval_ms = poll_interval_ms or limits.poll_interval_ms
    timeout = timeout_ms or limits.timeout_ms
    if interval_ms > limits.max_poll_interval_ms:
        return Refusal(
            INVALID_JOB,
            f"poll_interval_ms {interval_ms} exceeds the maximum {limits.max_poll_interval_ms}",
        )
    if timeout > limits.max_timeout_ms:
        return Refusal(
            INVALID_JOB, f"timeout_ms {timeout} exceeds the maximum {limits.max_timeout_ms}"
        )
    if timeout <= interval_ms:
        return Refusal(
            INVALID_JOB,
            f"timeout_ms {timeout} must be larger than poll_interval_ms {interval_ms}",
        )
    return Bounds(timeout_s=timeout / 1000, interval_s=interval_ms / 1000)


def refused(code: str, message: str) -> Finished:
    """The final outcome of a refused job: an ``error`` the app can tell from an API error."""
    return Finished("error", f"the job was refused: {message}", None, (code, message))


def metadata_refusal(size_bytes: int, limit_bytes: int) -> Refusal | None:
    """A job whose ``metadata`` takes ``size_bytes`` (as JSON) is refused above the limit.

    Metadata is echoed in the run's ``accepted`` and ``final`` events and kept for the
    record's lifetime, so its size is bounded like the other things a job may ask for.
    """
    if size_bytes <= limit_bytes:
        return None
    return Refusal(
        INVALID_JOB,
        f"metadata is {size_bytes} bytes as JSON; the maximum is {limit_bytes}",
    )
