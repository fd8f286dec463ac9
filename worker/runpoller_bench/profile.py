"""Optional py-spy profiles of the workers during the window (``--profile DIR``).

py-spy comes with the ``bench`` extra (``make install`` installs it); where it cannot attach
(a container without ``SYS_PTRACE``) the results say so instead of a profile.
Profiles are written in py-spy's collapsed-stack ("raw") format, one file per worker, and
summarised into the results: where the samples' innermost frames are (by package and by
function), and how much of the time the event loop sat idle in ``select``.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import sys
from collections import Counter
from pathlib import Path

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]*)(?::\d+)?\)$")


def py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


async def record(pid: int, out: Path, duration_s: float) -> asyncio.subprocess.Process | None:
    binary = py_spy()
    if binary is None:
        return None
    return await asyncio.create_subprocess_exec(
        binary,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(duration_s))),
        "--rate",
        "100",
        "--format",
        "raw",
        "--nonblocking",
        "--idle",
        "--output",
        str(out),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


def _package(path: str) -> str:
    """``runpoller/worker/driver.py`` → ``runpoller.worker.driver`` (our modules by name);
    ``aiohttp/client.py`` → ``aiohttp``."""
    parts = path.replace("\\", "/").removesuffix(".py").split("/")
    if parts[0].startswith("runpoller") and len(parts) > 1:
        return ".".join(parts)
    return parts[0] or "?"


# Innermost frames in which a thread waits rather than works: the selector's poll, and
# threading's waits (the heartbeat thread between beats).
_WAITING = frozenset({"select", "poll", "epoll_wait"})
# Innermost frames that only run the event loop: with uvloop its whole loop is C code under
# them, so a sample there is uvloop waiting for I/O or running its own C callbacks, which
# py-spy (sampling with --idle) cannot tell apart. Counted apart, not as anyone's work.
_LOOP_RUNNERS = frozenset({"run_until_complete", "Worker.run", "Runner.run", "run_forever"})


def summarize(path: Path, top: int = 25) -> dict[str, object]:
    """Share of the busy samples by the innermost frame's package and function; the waiting
    ones (idle) and those in the event loop's native code listed apart."""
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = idle = native = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        leaf = stack.split(";")[-1]
        match = _FRAME.match(leaf)
        func, file = (match["func"], match["file"]) if match else (leaf, "?")
        total += count
        if (
            func in _WAITING
            or file.startswith("selectors")
            or (file.startswith("threading") and func.endswith("wait"))
        ):
            idle += count
            continue
        if func in _LOOP_RUNNERS:
            native += count
            continue
        by_package[_package(file)] += count
        by_function[f"{func} ({file})"] += count
    busy = total - idle - native

    def shares(counter: Counter[str]) -> dict[str, float]:
        return {k: round(v / busy, 4) for k, v in counter.most_common(top)} if busy else {}

    return {
        "samples": total,
        "idle_share": round(idle / total, 4) if total else None,
        "loop_native_share": round(native / total, 4) if total else None,
        "busy_by_package": shares(by_package),
        "busy_by_function": shares(by_function),
    }
