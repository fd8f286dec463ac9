"""``runpoller_webhooks_total{type,result}``, on the receiver's own registry.

``result``: ``accepted``, ``duplicate``, ``unknown_type`` (answered 200, nothing written),
``bad_signature``, ``stale``, ``too_large``, ``malformed`` (refused, nothing written) and
``unavailable`` (Redis did not answer: 503, OpenAI sends it again). ``type`` is the event
type once the body is verified and read, else empty.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, generate_latest

RESULTS = (
    "accepted",
    "duplicate",
    "unknown_type",
    "bad_signature",
    "stale",
    "too_large",
    "malformed",
    "unavailable",
)


class WebhookMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.webhooks = Counter(
            "runpoller_webhooks_total",
            "Webhook deliveries by event type and what became of them.",
            ["type", "result"],
            registry=self.registry,
        )

    def count(self, event_type: str, result: str) -> None:
        self.webhooks.labels(event_type, result).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
