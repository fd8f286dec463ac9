"""Exact Redis accounting per process, on a Redis other clients use too (``MONITOR``).

``INFO commandstats`` counts every client's commands, so on a shared development Redis the
other users' tests land in our figures. ``MONITOR`` names the client of every command
(``[db 127.0.0.1:port]``) and marks the commands a Lua script runs (``[db lua]``, printed
right after the ``EVALSHA`` that ran them). The benchmark maps each client port to a process
through ``/proc/<pid>/fd`` and ``/proc/net/tcp`` and so counts, per process and only inside
the measurement window, client commands and the commands their scripts ran. The cost:
Redis formats each command once more for the monitor (a microsecond or two).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import os
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from runpoller.redis import scripts


def client_ports(pid: int, server_port: int) -> set[int]:
    """Local ports of the TCP connections process ``pid`` holds to ``server_port``."""
    inodes: set[str] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return set()
    for fd in fds:
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) < 10 or parts[9] not in inodes:
                continue
            if int(parts[2].rsplit(":", 1)[1], 16) == server_port:
                ports.add(int(parts[1].rsplit(":", 1)[1], 16))
    return ports


class RedisMonitor:
    """Counts ``MONITOR`` lines by (client port, command, ran-inside-Lua) within a window."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        self.host = parsed.hostname or "127.0.0.1"
        self.port = parsed.port or 6379
        self.username = unquote(parsed.username) if parsed.username else None
        self.password = unquote(parsed.password) if parsed.password else None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._last_client = 0
        self._last_script = ""  # the SHA of the last EVALSHA: the script the Lua lines are in
        self.lo = float("inf")
        self.hi = float("inf")
        self.counts: Counter[tuple[int, str, bool]] = Counter()
        # (client port, script SHA) -> commands: the EVALSHA and the commands its script ran.
        self.script_commands: Counter[tuple[int, str]] = Counter()
        self.script_calls: Counter[tuple[int, str]] = Counter()
        self.lines = 0
        self.unparsed = 0
        self._after = asyncio.Event()  # a line stamped after the window has arrived
        self.error: str | None = None  # set when the feed broke; figures are then unusable

    async def start(self) -> None:
        # MONITOR echoes whole commands: lines can be megabytes long (a big MGET, say).
        reader, writer = await asyncio.open_connection(self.host, self.port, limit=2**28)
        self._reader, self._writer = reader, writer
        if self.password is not None:
            args = ["AUTH", self.password] if self.username is None else ["AUTH", self.username]
            if self.username is not None:
                args.append(self.password)
            writer.write(_resp(args))
            reply = await reader.readline()
            if not reply.startswith(b"+"):
                raise RuntimeError("MONITOR connection: AUTH refused")
        writer.write(_resp(["MONITOR"]))
        reply = await reader.readline()
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"MONITOR refused: {reply.decode(errors='replace').strip()}")
        self._task = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()

    def window(self, lo: float, hi: float = float("inf")) -> None:
        """Count only commands Redis ran between ``lo`` and ``hi`` (Unix seconds)."""
        if lo != self.lo:
            self.counts.clear()
            self.script_commands.clear()
            self.script_calls.clear()
        self.lo, self.hi = lo, hi
        self._after.clear()

    async def drain(self) -> None:
        """Wait until a line stamped after the window arrives: the window's lines are all in."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._after.wait(), 5.0)

    async def _read(self) -> None:
        assert self._reader is not None
        try:
            while True:
                line = await self._reader.readline()
                if not line:
                    self.error = "the MONITOR connection was closed"
                    return
                self.feed(line)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.error = f"MONITOR feed failed: {type(exc).__name__}: {exc}"
        finally:
            self._after.set()  # nothing more will come: never make drain() wait

    def feed(self, line: bytes) -> None:
        """One ``MONITOR`` line: ``+1700000000.123456 [0 127.0.0.1:5555] "GET" "key"``."""
        self.lines += 1
        try:
            space = line.index(b" ", 1)
            ts = float(line[1:space] if line[:1] == b"+" else line[:space])
            close = line.index(b"]", space)
            source = line[space + 2 : close].split(b" ", 1)[1]
            start = close + 3
            command = line[start : line.index(b'"', start)].decode().lower()
        except (ValueError, IndexError):
            self.unparsed += 1
            return
        script = ""
        if source == b"lua":
            client, in_lua, script = self._last_client, True, self._last_script
        else:
            try:
                client = int(source.rsplit(b":", 1)[1])
            except (ValueError, IndexError):
                client = 0  # a unix socket client: never one of ours
            self._last_client, in_lua = client, False
            if command == "evalsha":
                sha_at = line.index(b'"', start + len(command) + 2) + 1
                script = line[sha_at : line.index(b'"', sha_at)].decode().lower()
            self._last_script = script
        if ts > self.hi:
            self._after.set()
            return
        if ts >= self.lo:
            self.counts[(client, command, in_lua)] += 1
            if script:
                self.script_commands[(client, script)] += 1
                if not in_lua:
                    self.script_calls[(client, script)] += 1

    def tally(self, ports: set[int], names: Mapping[str, str] | None = None) -> dict[str, Any]:
        """Commands of the clients on ``ports``: total, client-issued, inside Lua, by name,
        and by script (``names``: script SHA -> name): its calls and the commands they cost,
        the EVALSHA included."""
        names = names or {}
        by_script: dict[str, dict[str, int]] = {}
        for (port, sha), n in self.script_commands.items():
            if port in ports:
                entry = by_script.setdefault(names.get(sha, sha[:12]), {"calls": 0, "commands": 0})
                entry["commands"] += n
                entry["calls"] += self.script_calls[(port, sha)]
        by_name: Counter[str] = Counter()
        client = lua = 0
        for (port, command, in_lua), n in self.counts.items():
            if port not in ports:
                continue
            if in_lua:
                lua += n
                by_name[f"lua:{command}"] += n
            else:
                client += n
                by_name[command] += n
        return {
            "total": client + lua,
            "client": client,
            "lua": lua,
            "by_name": dict(by_name.most_common(20)),
            "by_script": dict(sorted(by_script.items(), key=lambda kv: -kv[1]["commands"])),
        }

    def others(self, ours: set[int]) -> int:
        return sum(n for (port, _, _), n in self.counts.items() if port not in ours)


@functools.cache
def script_names() -> dict[str, str]:
    """The SHA1 of each of the worker's Lua scripts (what EVALSHA names) -> its name."""
    return {
        hashlib.sha1(scripts.source(name).encode(), usedforsecurity=False).hexdigest(): name
        for name in scripts.NAMES
    }


def _resp(args: list[str]) -> bytes:
    out = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(out)
