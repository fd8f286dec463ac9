"""What every ``runpoller`` subcommand shares: the settings it loads, and its exit codes.

``main`` (the whole command line) and ``ops`` (stats, health) both use this; neither imports
the other's entry point.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from runpoller.config import (
    ConfigError,
    Settings,
    env_names,
    load,
    shown_default,
    shown_value,
    startup_problems,
)
from runpoller.redis.url import mask as mask_url
from runpoller.secrets import scrub


def warn(text: str) -> None:
    print(f"runpoller: warning: {text}", file=sys.stderr)


def settings() -> Settings:
    """The effective settings, with each warning printed to stderr."""
    global _redis_url
    loaded = load()
    for warning in loaded.warnings:
        warn(warning)
    _redis_url = loaded.settings.redis_url
    return loaded.settings


def print_config(*, listing: bool, strict: bool) -> int:
    """``runpoller config``: ``name = value`` lines, or (``listing``) a table of every setting
    with its environment variable, default, value and source. Secrets never shown."""
    loaded = load(strict=True if strict else None)
    for warning in [*loaded.warnings, *startup_problems(loaded.settings)]:
        warn(warning)
    names = {field: env for env, field in env_names().items()}
    fields = sorted(names, key=names.__getitem__)
    if not listing:
        for field in sorted(names):
            print(f"{field} = {shown_value(loaded.settings, field)}")
        return 0
    rows = [("ENV", "DEFAULT", "VALUE", "SOURCE")] + [
        (
            names[field],
            shown_default(field),
            shown_value(loaded.settings, field),
            loaded.sources.get(field, "default"),
        )
        for field in fields
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)), end=""
        )
        print(f"  {row[3]}")
    return 0


class UsageError(Exception):
    """Flags that do not go together (or miss one): ``runpoller <command>: <message>``, 2."""


_redis_url: str | None = None
"""The REDIS_URL of the settings this process loaded (for the one line of a Redis failure)."""


def quiet_stdout() -> None:
    """After a reader left the pipe (``| head``): send what is left to /dev/null, so that
    Python's flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def redis_problem(command: str, exc: BaseException, url: str | None = None) -> str:
    """One line for a Redis that does not answer (or answers with an error)."""
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    down = isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError)
    what = "Redis unreachable" if down else "Redis error"
    url = url or _redis_url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    reason = scrub(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
    return f"runpoller {command}: {what} at {mask_url(url)} ({reason})"


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the chosen command: its exit code; one line and 2 for a
    configuration error or a Redis that does not answer; 130 on Ctrl-C; 0 when the reader
    of a pipe left."""
    from redis.exceptions import RedisError

    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"runpoller: configuration error: {exc}", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"runpoller {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        quiet_stdout()
        return 0
    except (RedisError, OSError) as exc:
        print(redis_problem(args.command, exc), file=sys.stderr)
        return 2
    return code
