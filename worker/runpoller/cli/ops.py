"""Operator commands: ``runpoller stats`` (cluster view from Redis) and ``runpoller health``.

``register(subparsers)`` adds both to the ``runpoller`` parser (``runpoller.cli.main``).
``python -m runpoller.cli.ops stats|health ...`` runs them alone, with the same exit codes,
without loading the rest of the command line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

from runpoller.cli.common import quiet_stdout, redis_problem, run
from runpoller.cli.common import settings as _settings
from runpoller.config import Settings
from runpoller.redis.url import mask as mask_url

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from runpoller.cli.stats import ClusterStats

# httpx, redis and runpoller.cli.stats are imported where used: `runpoller <anything else>`
# stays quick.

DEFAULT_HEALTH_PORT = 9464

# Cursor to the start of the line N lines up, then clear to the end of the screen.
_UP_AND_CLEAR = "\x1b[{n}F\x1b[J"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``stats`` and ``health`` to the ``runpoller`` command line."""
    p = subparsers.add_parser(
        "stats",
        help="cluster view from Redis: queue, workers, in-flight runs, outcomes, dead workers",
        description="A cluster-wide snapshot read from Redis alone (REDIS_URL and the "
        "RUNPOLLER_KEY_PREFIX / RUNPOLLER_QUEUE_NAME settings of the workers).",
    )
    p.add_argument(
        "--watch", action="store_true", help="refresh in place until Ctrl-C (a live table)"
    )
    p.add_argument(
        "--interval",
        type=_positive_float,
        default=2.0,
        metavar="S",
        help="seconds between refreshes with --watch (default 2)",
    )
    p.add_argument(
        "--minutes",
        type=_positive_int,
        default=15,
        metavar="N",
        help="window for outcomes and worker events (default 15)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object (with --watch: one compact object per line)",
    )
    p.set_defaults(func=cmd_stats)

    p = subparsers.add_parser(
        "health",
        help="check a worker's /healthz (or /readyz): exit 0 ok, 1 not ok, 2 unreachable",
    )
    p.add_argument(
        "--url",
        default=None,
        help="the worker's metrics server (default http://127.0.0.1:$RUNPOLLER_METRICS_PORT, "
        f"else port {DEFAULT_HEALTH_PORT})",
    )
    p.add_argument("--ready", action="store_true", help="check /readyz instead of /healthz")
    p.add_argument(
        "--timeout",
        type=_positive_float,
        default=3.0,
        metavar="S",
        help="seconds to wait for an answer (default 3)",
    )
    p.set_defaults(func=cmd_health)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text!r}")
    return value


# ---------------------------------------------------------------------------- stats


def _redis(settings: Settings) -> Redis:
    from runpoller.redis.url import connect

    return connect(settings.redis_url, socket_connect_timeout=3, socket_timeout=5)


async def snapshot(settings: Settings, *, minutes: int = 15) -> ClusterStats:
    from runpoller.cli.stats import collect

    redis = _redis(settings)
    try:
        return await collect(redis, settings, minutes=minutes)
    finally:
        await redis.aclose()


def _fit(text: str, columns: int, rows: int) -> str:
    """Clip to the terminal so that moving the cursor up N lines lands where we started."""
    lines = [line[: max(columns - 1, 10)] for line in text.splitlines()]
    if len(lines) > rows - 1 >= 2:
        hidden = len(lines) - (rows - 2)
        lines = [*lines[: rows - 2], f"… {hidden} more lines (enlarge the terminal)"]
    return "\n".join(lines)


async def watch(
    settings: Settings,
    *,
    interval: float,
    minutes: int,
    as_json: bool,
    out: TextIO,
    tty: bool,
    iterations: int | None = None,
) -> None:
    """Refresh until cancelled (or ``iterations`` snapshots, for tests)."""
    from redis.exceptions import RedisError

    from runpoller.cli.stats import collect, render_table

    redis = _redis(settings)
    drawn = 0
    count = 0
    try:
        while iterations is None or count < iterations:
            count += 1
            problem = ""
            try:
                stats = await collect(redis, settings, minutes=minutes)
            except (RedisError, OSError) as exc:
                stats = None
                problem = f"{_redis_problem(settings, exc)}; retrying every {interval:g}s"
            if as_json:
                if stats is None:
                    print(problem, file=sys.stderr)
                else:
                    out.write(stats.model_dump_json() + "\n")
            else:
                text = problem if stats is None else render_table(stats)
                if tty:
                    size = shutil.get_terminal_size()
                    text = _fit(f"{text}\n\nrefreshing every {interval:g}s · Ctrl-C to stop", *size)
                    if drawn:
                        out.write(_UP_AND_CLEAR.format(n=drawn))
                    drawn = text.count("\n") + 1
                    out.write(text + "\n")
                else:
                    out.write(text + "\n\n")
            out.flush()
            if iterations is None or count < iterations:
                await asyncio.sleep(interval)
    finally:
        await redis.aclose()


def _redis_problem(settings: Settings, exc: BaseException) -> str:
    return redis_problem("stats", exc, settings.redis_url)


def cmd_stats(args: argparse.Namespace) -> int:
    try:
        return _stats(args)
    except BrokenPipeError:
        quiet_stdout()  # piped into `head` and the reader left: not an error
        return 0


def _stats(args: argparse.Namespace) -> int:
    from redis.exceptions import RedisError

    from runpoller.cli.stats import render_table

    settings = _settings()
    if args.watch:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                watch(
                    settings,
                    interval=args.interval,
                    minutes=args.minutes,
                    as_json=args.json,
                    out=sys.stdout,
                    tty=sys.stdout.isatty(),
                )
            )
        return 0
    try:
        stats = asyncio.run(snapshot(settings, minutes=args.minutes))
    except (RedisError, OSError) as exc:
        print(_redis_problem(settings, exc), file=sys.stderr)
        return 2
    if args.json:
        print(stats.model_dump_json(indent=2))
    else:
        print(render_table(stats))
    if not stats.workers and not stats.queue.ready + stats.queue.deferred:
        # Nothing at all under this prefix: most often a mistyped RUNPOLLER_KEY_PREFIX.
        print(
            f"runpoller stats: no worker and no queued run under prefix {settings.key_prefix!r} "
            f"and queue {settings.queue_name!r} on {mask_url(settings.redis_url)}: check "
            "RUNPOLLER_KEY_PREFIX and RUNPOLLER_QUEUE_NAME (and the DB in REDIS_URL)",
            file=sys.stderr,
        )
    return 0


# ---------------------------------------------------------------------------- health


def default_health_url() -> str:
    port = os.environ.get("RUNPOLLER_METRICS_PORT", "")
    if not (port.isdigit() and 0 < int(port) < 65536):
        port = str(DEFAULT_HEALTH_PORT)
    return f"http://127.0.0.1:{port}"


def probe_url(base: str | None, *, ready: bool) -> str:
    base = (base or default_health_url()).strip()
    if "://" not in base:
        base = "http://" + base
    path = "/readyz" if ready else "/healthz"
    return base.rstrip("/") if base.rstrip("/").endswith(path) else base.rstrip("/") + path


def check_health(url: str, timeout: float) -> tuple[int, str]:
    """GET one probe: (exit code, one-line message). 0 ok, 1 not ok, 2 unreachable."""
    import httpx

    name = url.rsplit("/", 1)[-1]
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.TimeoutException:
        return 2, f"unreachable: {url}: no answer within {timeout:g}s"
    except httpx.InvalidURL as exc:
        return 2, f"unreachable: {url}: invalid URL ({exc})"
    except httpx.HTTPError as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return 2, f"unreachable: {url}: {type(exc).__name__}{': ' + text if text else ''}"
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("ok"), bool)
        or response.status_code not in (200, 503)
    ):
        return 2, f"unreachable: {url} answered HTTP {response.status_code}, not a runpoller probe"
    reason = str(body.get("reason", ""))
    if body["ok"] and response.status_code == 200:
        return 0, f"ok ({name}): {reason}"
    return 1, f"not ok ({name}): {reason}"


def cmd_health(args: argparse.Namespace) -> int:
    url = probe_url(args.url, ready=args.ready)
    code, message = check_health(url, args.timeout)
    print(message, file=sys.stdout if code < 2 else sys.stderr)
    return code


# ---------------------------------------------------------------------------- standalone


def build_parser() -> argparse.ArgumentParser:
    """A parser with the operator commands only (``runpoller.cli.main`` adds them to its own)."""
    parser = argparse.ArgumentParser(
        prog="runpoller", description="Operator commands: cluster stats and worker health."
    )
    register(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m runpoller.cli.ops stats ...``: the same as ``runpoller stats ...``."""
    return run(build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
