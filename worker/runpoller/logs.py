"""Logging: structlog configured once, JSON in containers, console on a TTY, secrets redacted."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from runpoller.config import Settings
from runpoller.secrets import MASK, is_secret_name, scrub_value


def redact_secrets(
    _logger: Any, _name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """Blank secrets in any field: secret-named fields whole, keys and tokens inside values."""
    for key, value in list(event_dict.items()):
        event_dict[key] = MASK if is_secret_name(key) else scrub_value(value)
    return event_dict


class _StderrLogger:
    """Writes each line to whatever ``sys.stderr`` is now (not the stream at configure time)."""

    def msg(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    log = debug = info = warning = warn = error = critical = exception = fatal = msg


class _StderrLoggerFactory:
    def __call__(self, *args: Any) -> _StderrLogger:
        return _StderrLogger()


def configure_logging(settings: Settings) -> None:
    fmt = settings.log_format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer() if fmt == "console" else structlog.processors.JSONRenderer()
    )
    level = logging.getLevelName(settings.log_level.upper())
    # Tracebacks are formatted before redaction so that the redactor sees their text too.
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            redact_secrets,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            level if isinstance(level, int) else 20
        ),
        logger_factory=_StderrLoggerFactory(),
        cache_logger_on_first_use=True,
    )
    # arq logs every job start with its arguments; we log what matters ourselves.
    logging.getLogger("arq").setLevel(logging.WARNING)
