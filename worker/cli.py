"""The ``runpoller`` command line: worker, fake-openai, enqueue, demo."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from worker.config import ConfigError, load_settings


def _cmd_config(args: argparse.Namespace) -> int:
    settings, warnings = load_settings()
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    shown = settings.model_dump(mode="json")
    if settings.assistants_api_key is not None:
        shown["assistants_api_key"] = (
            "user_provided" if settings.user_provided_key else "set (hidden)"
        )
    for key in sorted(shown):
        print(f"{key} = {shown[key]}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="runpoller", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("config", help="validate and print the effective configuration")
    p.set_defaults(func=_cmd_config)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"runpoller: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
