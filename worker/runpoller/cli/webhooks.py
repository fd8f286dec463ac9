"""``runpoller webhooks``: serve the webhook receiver (``runpoller.webhooks``).

``register(subparsers)`` adds it to the ``runpoller`` parser (``runpoller.cli.main``). The
receiver and its dependencies are loaded only when the command runs.
"""

from __future__ import annotations

import argparse
import sys

from runpoller.cli.common import settings as _settings


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``webhooks`` to the ``runpoller`` command line."""
    p = subparsers.add_parser(
        "webhooks",
        help="receive OpenAI's signed webhooks and wake the runs they are about",
        description="Serves POST /webhooks/openai (and /healthz, /readyz, /metrics) on "
        "RUNPOLLER_WEBHOOK_HOST:RUNPOLLER_WEBHOOK_PORT; verifies each delivery with "
        "RUNPOLLER_WEBHOOK_SECRETS and appends a wake-up to <prefix>:wakes.",
    )
    p.set_defaults(func=cmd_webhooks)


def cmd_webhooks(args: argparse.Namespace) -> int:
    settings = _settings()
    if not settings.webhook_secret_list:
        print(
            "runpoller webhooks: RUNPOLLER_WEBHOOK_SECRETS is not set (the endpoint's whsec_... "
            "signing secret; several, comma-separated, while rotating)",
            file=sys.stderr,
        )
        return 2
    from runpoller.logs import configure_logging
    from runpoller.webhooks import serve
    from runpoller.worker.loops import new_event_loop

    configure_logging(settings)
    loop = new_event_loop(settings.event_loop)
    try:
        loop.run_until_complete(serve(settings))
    finally:
        loop.close()
    return 0
