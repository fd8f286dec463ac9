"""The webhook receiver: OpenAI's signed "this background response ended" calls, turned into
wake-ups on ``<prefix>:wakes`` so that the run following the response polls at once.

- ``verify``: Standard Webhooks signatures (the ``standardwebhooks`` library), several
  secrets at once for rotation, the library's 5-minute replay window.
- ``events``: which events wake a run, read from the body once it is verified.
- ``store``: the one Redis write, de-duplicated by ``webhook-id``.
- ``metrics``: ``runpoller_webhooks_total{type,result}`` on the receiver's own registry.
- ``app``: the aiohttp application (``POST /webhooks/openai``, ``/healthz``, ``/readyz``,
  ``/metrics``) and :func:`serve`, what ``runpoller webhooks`` runs.

The receiver never calls the API: it answers within one Redis round trip.
"""

from __future__ import annotations

from runpoller.webhooks.app import WEBHOOK_PATH, Receiver, build_app, serve

__all__ = ["WEBHOOK_PATH", "Receiver", "build_app", "serve"]
