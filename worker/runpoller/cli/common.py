"""What every ``runpoller`` subcommand shares: the settings it loads, and its exit codes.

``main`` (the whole command line) and ``ops`` (stats, health) both use this; neither imports
the other's entry point.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from runpoller.config import ConfigError, Settings, load_settings


def settings() -> Settings:
    """The effective settings, with each warning printed to stderr."""
    loaded, warnings = load_settings()
    for warning in warnings:
        print(f"runpoller: warning: {warning}", file=sys.stderr)
    return loaded


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> int:
    """Parse ``argv`` and run the chosen command: its exit code, 2 for a configuration
    error (one line), 130 on Ctrl-C."""
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"runpoller: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code
