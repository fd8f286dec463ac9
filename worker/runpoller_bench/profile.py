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


def summarize(path: Path, top: int = 25) -> dict[str, object]:
    """Share of samples by the innermost frame's package and function (idle listed apart)."""
    by_package: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    total = idle = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        leaf = stack.split(";")[-1]
        match = _FRAME.match(leaf)
        func, file = (match["func"], match["file"]) if match else (leaf, "?")
        total += count
        if func in ("select", "poll", "epoll_wait") or file.startswith("selectors"):
            idle += count
            continue
        by_package[_package(file)] += count
        by_function[f"{func} ({file})"] += count
    busy = total - idle

    def shares(counter: Counter[str]) -> dict[str, float]:
        return {k: round(v / busy, 4) for k, v in counter.most_common(top)} if busy else {}

    return {
        "samples": total,
        "idle_share": round(idle / total, 4) if total else None,
        "busy_by_package": shares(by_package),
        "busy_by_function": shares(by_function),
    }
