"""The worker's Lua scripts: one ``<name>.lua`` file each, read once, beside this module.

Each file starts with a header naming its KEYS, its ARGV and its return values. The files are
package data (``pyproject.toml``: ``redis/scripts/*.lua``) read through
:mod:`importlib.resources`, so they load the same from a source tree and from a wheel.
"""

from __future__ import annotations

import functools
from importlib import resources
from typing import Final, Literal, get_args

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

ScriptName = Literal[
    "claim",
    "publish",
    "finalize",
    "reject",
    "heartbeat",
    "release",
    "unlock",
    "restore",
    "intake_take",
    "intake_settle",
    "intake_release",
    "ratelimit_take",
    "cancel_ended",
    "reply_unapplied",
]

NAMES: Final[tuple[ScriptName, ...]] = get_args(ScriptName)
"""Every script of the worker, by file name without ``.lua``."""


@functools.cache
def source(name: ScriptName) -> str:
    """The text of ``<name>.lua``, read from the package once per process (then shared)."""
    if name not in NAMES:
        raise ValueError(f"no Lua script named {name!r}")
    return resources.files(__name__).joinpath(f"{name}.lua").read_text(encoding="utf-8")


def register(redis: Redis, name: ScriptName) -> AsyncScript:
    """A script object for ``redis`` that runs ``<name>.lua`` by SHA (loading it if needed)."""
    return redis.register_script(source(name))
