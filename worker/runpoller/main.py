"""``arq runpoller.main.WorkerSettings`` starts the same worker as ``runpoller worker``.

Settings are read from the environment when this module is imported; a configuration error
prints one line and exits with status 2.
"""

from __future__ import annotations

import sys
from typing import Any

from runpoller.config import ConfigError, Settings, load_settings
from runpoller.worker.app import worker_options


def _load() -> Settings:
    try:
        settings, warnings = load_settings()
    except ConfigError as exc:
        print(f"runpoller: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    for warning in warnings:
        print(f"runpoller: warning: {warning}", file=sys.stderr)
    return settings


# arq reads the class __dict__, so plain attributes (not methods) are what it needs.
WorkerSettings: type[Any] = type(
    "WorkerSettings",
    (),
    {"__doc__": "arq settings for a runpoller worker.", **worker_options(_load())},
)
