"""``runpoller dashboard``: its arguments, and one line instead of a traceback.

Loads no aiohttp or redis until the command runs: every ``runpoller`` command builds this
parser.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from runpoller.config import Settings
from runpoller.dashboard.auth import TokenError, check_token

DEFAULT_PORT = 8070
TOKEN_ENV = "RUNPOLLER_DASHBOARD_TOKEN"  # noqa: S105 (a variable name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; 0.0.0.0 exposes it: set a token and "
        "put TLS in front)",
    )
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"(default {DEFAULT_PORT})")


def run(settings: Settings, args: argparse.Namespace) -> int:
    token = os.environ.get(TOKEN_ENV) or None
    try:
        if token is not None:
            check_token(token)
    except TokenError as exc:
        print(f"runpoller dashboard: {exc}", file=sys.stderr)
        return 2
    from runpoller.dashboard.server import serve  # aiohttp and redis load only here

    try:
        asyncio.run(serve(settings, host=args.host, port=args.port, token=token))
    except OSError as exc:  # the port is taken, the address is not ours
        print(f"runpoller dashboard: cannot listen on {args.host}:{args.port}: {exc.strerror}",
              file=sys.stderr)  # fmt: skip
        return 2
    return 0
