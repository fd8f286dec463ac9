"""Which event loop a process runs: uvloop where installed (faster), else asyncio's own."""

from __future__ import annotations

import asyncio

from runpoller.config import ConfigError


def new_event_loop(choice: str) -> asyncio.AbstractEventLoop:
    """The worker's loop: uvloop when chosen or (``auto``) installed, else asyncio's.

    uvloop runs the same asyncio code on libuv; see docs/performance.md for what it saves.
    """
    if choice in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError(
                    "RUNPOLLER_EVENT_LOOP=uvloop, but uvloop is not installed "
                    "(pip install uvloop, or use auto or asyncio)"
                ) from None
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()
