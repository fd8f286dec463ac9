"""Metrics: cached label children count into the same series /metrics exports."""

from __future__ import annotations

from runpoller.worker.metrics import Metrics


def test_cached_children_are_the_labelled_series() -> None:
    m = Metrics()
    for _ in range(3):
        m.api_requests_of("assistants_run", "get", "200").inc()
    m.api_requests.labels("assistants_run", "get", "200").inc()
    m.api_requests_of("response", "get", "429").inc()
    m.api_latency_of("assistants_run", "get").observe(0.02)
    m.retries_of("response", "get").inc()
    assert m.api_requests_of("assistants_run", "get", "200") is m.api_requests.labels(
        "assistants_run", "get", "200"
    )
    text = m.render().decode()
    assert 'runpoller_api_requests_total{backend="assistants_run",code="200",op="get"} 4.0' in text
    assert 'runpoller_api_requests_total{backend="response",code="429",op="get"} 1.0' in text
    assert 'runpoller_api_retries_total{backend="response",op="get"} 1.0' in text
    assert (
        'runpoller_api_request_duration_seconds_count{backend="assistants_run",op="get"} 1.0'
        in text
    )
