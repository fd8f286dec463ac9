"""The ``runpoller`` command line: worker, fake-openai, enqueue, demo, config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import textwrap
from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import ValidationError

from runpoller.cli.common import UsageError, run
from runpoller.cli.common import settings as _settings
from runpoller.cli.ops import register as register_ops
from runpoller.cli.runs import register as register_runs
from runpoller.cli.webhooks import register as register_webhooks
from runpoller.protocol import describe_validation_error
from runpoller_actions.cli import register as register_actions


def _cmd_config(args: argparse.Namespace) -> int:
    from runpoller.cli.common import print_config

    return print_config(listing=args.list, strict=args.strict)


def _cmd_worker(args: argparse.Namespace) -> int:
    from runpoller.logs import configure_logging
    from runpoller.worker.arqworker import build_worker
    from runpoller.worker.loops import new_event_loop

    settings = _settings()
    configure_logging(settings)
    asyncio.set_event_loop(new_event_loop(settings.event_loop))
    # SIGTERM cancels arq's tasks; a cancellation that reaches us here is that stop, not a
    # failure (the hand-off already ran in on_shutdown).
    with contextlib.suppress(asyncio.CancelledError):
        build_worker(settings).run()
    return 0


# What the `fake` extra installs (pyproject.toml); the worker itself needs neither.
_FAKE_EXTRA = frozenset({"fakeredis", "jsonschema", "referencing", "lupa"})


@contextlib.contextmanager
def _needs_fake_extra(command: str) -> Iterator[None]:
    """A one-line exit instead of a traceback when the `fake` extra is not installed."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").split(".")[0] not in _FAKE_EXTRA:
            raise
        raise SystemExit(
            f"runpoller {command}: needs the fake extra ({exc.name} is not installed): "
            "pip install 'runpoller[fake]'"
        ) from None


def _cmd_fake_openai(args: argparse.Namespace) -> int:
    with _needs_fake_extra("fake-openai"):
        from runpoller_fake import serve
        from runpoller_fake.webhooks import check_secret, check_url

    keys = set(args.api_key) if args.api_key else None
    url, secret = args.webhook_url, args.webhook_secret
    if (url is None) != (secret is None):
        raise SystemExit("runpoller fake-openai: give --webhook-url and --webhook-secret together")
    try:
        if url is not None and secret is not None:
            check_url(url)
            check_secret(secret)
    except ValueError as exc:
        raise SystemExit(f"runpoller fake-openai: {exc}") from None
    serve(args.host, args.port, keys, webhook_url=url, webhook_secret=secret)
    return 0


class _FakeHelp(argparse.Action):
    """``fake-openai --help`` with the built-in scenarios, read from the fake only when asked
    (importing it needs the `fake` extra and its schemas, which other commands never load)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show this help message and exit")

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        lines = [
            "Script a run or response with metadata.fake_scenario on create: a built-in name "
            "below, a name registered with POST /_fake/scenarios, or a JSON script "
            "(docs/fake-server.md).",
        ]
        with _needs_fake_extra("fake-openai"):
            from runpoller_fake import BUILTIN_SCENARIOS

        for label, names in (
            ("runs", BUILTIN_SCENARIOS["run"]),
            ("responses", BUILTIN_SCENARIOS["response"]),
        ):
            lines.append(f"built-in scenarios for {label}: {', '.join(names)}")
        parser.epilog = "\n".join(textwrap.fill(line, 79) for line in lines)
        parser.formatter_class = argparse.RawDescriptionHelpFormatter
        parser.print_help()
        parser.exit()


def _job_from_args(args: argparse.Namespace) -> dict[str, Any]:
    job: dict[str, Any]
    if args.response_id and (args.thread_id or args.run_id):
        raise UsageError(
            "--response-id is a Responses run; --thread-id and --run-id an Assistants run: "
            "give one or the other"
        )
    if args.response_id:
        job = {"kind": "response", "response_id": args.response_id}
    elif args.thread_id and args.run_id:
        job = {"kind": "assistants_run", "thread_id": args.thread_id, "run_id": args.run_id}
    elif args.session_id and args.turn_id:
        job = {"kind": "agent_turn", "session_id": args.session_id, "turn_id": args.turn_id}
    else:
        raise UsageError(
            "give --thread-id and --run-id, --response-id, or --session-id and --turn-id"
        )
    for name in ("id", "poll_interval_ms", "timeout_ms"):
        value = getattr(args, name)
        if value is not None:
            job[name] = value
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise UsageError(f"environment variable {args.api_key_env} is empty")
        job["api_key"] = key
    return job


def _settings_epilog() -> str:
    """Every setting's environment variable, wrapped: what `worker --help` can list."""
    import textwrap

    from runpoller.config import env_names

    names = ", ".join(sorted(env_names()))
    return (
        "settings (environment variables; `runpoller config --list` shows each with its "
        "default, current value and source):\n"
        + textwrap.fill(names, 78, initial_indent="  ", subsequent_indent="  ")
    )


def _positive_ms(text: str) -> int:
    """An argparse type: a whole number of milliseconds above 0 (else one plain sentence)."""
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"a whole number of milliseconds above 0, not {text!r}")
    return int(text)


def _cmd_enqueue(args: argparse.Namespace) -> int:
    from runpoller.cli.follow import enqueue_and_follow

    settings = _settings()
    job = _job_from_args(args)
    try:
        return asyncio.run(
            enqueue_and_follow(settings, job, wait=args.wait or args.json, as_json=args.json)
        )
    except ValidationError as exc:
        print(f"runpoller enqueue: invalid job: {describe_validation_error(exc)}", file=sys.stderr)
        return 2


def _cmd_demo(args: argparse.Namespace) -> int:
    with _needs_fake_extra("demo"):
        from runpoller_dev.demo import run_demo

        return asyncio.run(run_demo(fast=args.fast))


def _cmd_dashboard(args: argparse.Namespace) -> int:
    from runpoller.dashboard.cli import run as run_dashboard

    return run_dashboard(_settings(), args)


def _add_dashboard(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from runpoller.dashboard.cli import add_arguments

    p = sub.add_parser(
        "dashboard",
        help="the operators' web dashboard (reads Redis; actions with RUNPOLLER_DASHBOARD_TOKEN)",
    )
    add_arguments(p)
    p.set_defaults(func=_cmd_dashboard)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="runpoller", description="Run-polling workers for OpenAI-style APIs."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "config",
        help="validate and print the effective configuration (secrets hidden)",
        description="Validate the settings (environment > librechat.yaml > defaults) and print "
        "them, secrets hidden. Exit 2 with one line when a value is invalid.",
    )
    p.add_argument(
        "--list",
        action="store_true",
        help="every setting with its environment variable, default, current value and source",
    )
    p.add_argument(
        "--strict",
        action="store_true",
        help="unknown RUNPOLLER_* variables and unknown or duplicate librechat.yaml keys are "
        "errors (as RUNPOLLER_STRICT_CONFIG=true)",
    )
    p.set_defaults(func=_cmd_config)

    p = sub.add_parser(
        "worker",
        help="start a worker",
        description="Start a worker: it takes runs from the queue and polls them until they "
        "end. Configured by environment variables (and librechat.yaml), not flags.",
        epilog=_settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.set_defaults(func=_cmd_worker)

    p = sub.add_parser("fake-openai", help="serve the bundled fake OpenAI API", add_help=False)
    p.add_argument("-h", "--help", action=_FakeHelp)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8011, help="port to listen on (default 8011)")
    p.add_argument(
        "--api-key", action="append", help="accepted bearer key (repeatable; default: any)"
    )
    p.add_argument(
        "--webhook-url", help="POST webhooks of ended responses here (with --webhook-secret)"
    )
    p.add_argument("--webhook-secret", help="the whsec_<base64> secret signing the webhooks")
    p.set_defaults(func=_cmd_fake_openai)

    p = sub.add_parser(
        "enqueue",
        help="enqueue a run from the shell",
        description="Put one run on the queue: an Assistants run (--thread-id and --run-id), "
        "a background Responses run (--response-id) or an Agents API session turn "
        "(--session-id and --turn-id), created beforehand by your app.",
    )
    p.add_argument("--thread-id", help="the Assistants thread (thread_...), with --run-id")
    p.add_argument("--run-id", help="the Assistants run (run_...), with --thread-id")
    p.add_argument("--response-id", help="a background Responses run (resp_...)")
    p.add_argument("--session-id", help="an Agents API session (with --turn-id)")
    p.add_argument("--turn-id", help="the session's turn to follow (kind agent_turn)")
    p.add_argument("--id", help="logical run id (default: the run, response or turn id)")
    p.add_argument(
        "--poll-interval-ms",
        type=_positive_ms,
        metavar="MS",
        help="poll this run every MS milliseconds (default: RUNPOLLER_POLL_INTERVAL_MS)",
    )
    p.add_argument(
        "--timeout-ms",
        type=_positive_ms,
        metavar="MS",
        help="cancel the run after MS milliseconds (default: RUNPOLLER_TIMEOUT_MS)",
    )
    p.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="read a per-run API key from this environment variable (never from argv)",
    )
    p.add_argument("--wait", action="store_true", help="follow the run's events until it ends")
    p.add_argument("--json", action="store_true", help="print the final result as one JSON object")
    p.set_defaults(func=_cmd_enqueue)

    p = sub.add_parser("demo", help="fake server + worker + sample runs, with live progress")
    p.add_argument("--fast", action="store_true", help="shorter timeouts (used by the tests)")
    p.set_defaults(func=_cmd_demo)

    register_actions(sub)
    register_ops(sub)
    register_runs(sub)
    register_webhooks(sub)
    _add_dashboard(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run(build_parser(), argv)
