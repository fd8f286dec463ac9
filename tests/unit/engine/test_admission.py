"""Admission (engine.admission): a job's bounds, its metadata size, and the outcome of refusing
it."""

from __future__ import annotations

import pytest

from runpoller import engine
from runpoller.engine import Bounds, Finished, Limits, Refusal, job_bounds, refused
from runpoller.engine.admission import metadata_refusal

LIMITS = Limits(
    poll_interval_ms=2000,
    timeout_ms=180_000,
    max_poll_interval_ms=60_000,
    max_timeout_ms=86_400_000,
)


def test_a_job_without_bounds_gets_the_worker_defaults() -> None:
    assert job_bounds(None, None, LIMITS) == Bounds(timeout_s=180.0, interval_s=2.0)


def test_zero_means_the_default_too() -> None:
    assert job_bounds(0, 0, LIMITS) == Bounds(timeout_s=180.0, interval_s=2.0)


def test_a_job_may_choose_its_bounds_within_the_maxima() -> None:
    assert job_bounds(60_000, 86_400_000, LIMITS) == Bounds(timeout_s=86_400.0, interval_s=60.0)
    assert job_bounds(100, 101, LIMITS) == Bounds(timeout_s=0.101, interval_s=0.1)


@pytest.mark.parametrize(
    ("interval", "timeout", "message"),
    [
        (60_001, None, "poll_interval_ms 60001 exceeds the maximum 60000"),
        (None, 86_400_001, "timeout_ms 86400001 exceeds the maximum 86400000"),
        (5000, 5000, "timeout_ms 5000 must be larger than poll_interval_ms 5000"),
        (None, 1500, "timeout_ms 1500 must be larger than poll_interval_ms 2000"),
        (3000, 2000, "timeout_ms 2000 must be larger than poll_interval_ms 3000"),
        # The interval is checked first, then the timeout, then the two together.
        (60_001, 86_400_001, "poll_interval_ms 60001 exceeds the maximum 60000"),
        (50_000, 86_400_001, "timeout_ms 86400001 exceeds the maximum 86400000"),
    ],
)
def test_out_of_range_bounds_are_refused_as_invalid_jobs(
    interval: int | None, timeout: int | None, message: str
) -> None:
    assert job_bounds(interval, timeout, LIMITS) == Refusal("invalid_job", message)
    assert engine.INVALID_JOB == "invalid_job"


def test_a_refused_job_ends_with_an_error_naming_its_code() -> None:
    fin = refused("missing_api_key", "no API key")
    assert fin == Finished(
        status="error",
        reason="the job was refused: no API key",
        api_status=None,
        error=("missing_api_key", "no API key"),
    )


def test_metadata_up_to_the_limit_is_accepted() -> None:
    assert metadata_refusal(0, 16_384) is None
    assert metadata_refusal(16_384, 16_384) is None


def test_metadata_over_the_limit_is_an_invalid_job() -> None:
    assert metadata_refusal(16_385, 16_384) == Refusal(
        "invalid_job", "metadata is 16385 bytes as JSON; the maximum is 16384"
    )
