"""Liveness and readiness, as ``/healthz`` and ``/readyz`` answer them (see metrics.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from runpoller.config import Settings
from runpoller.redis.connection import OutageMonitor
from runpoller.worker.driver import Runner
from runpoller.worker.housekeeping import Housekeeping
from runpoller.worker.liveness import LoopHeartbeat


class Probes:
    def __init__(
        self,
        settings: Settings,
        runner: Runner,
        housekeeping: Housekeeping,
        liveness: LoopHeartbeat,
        outage: OutageMonitor,
        housekeeping_alive: Callable[[], bool],
        ping: Callable[[], Awaitable[object]],
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.housekeeping = housekeeping
        self.liveness = liveness
        self.outage = outage
        self.housekeeping_alive = housekeeping_alive
        self.ping = ping
        self.stopping = False
        self.started = True
        """False while the worker waits for Redis at start (the app sets it)."""

    async def healthz(self) -> tuple[bool, str]:
        """Alive: the event loop answers (this handler runs), the heartbeat thread runs and
        housekeeping is still going.

        A Redis outage is not a liveness failure (restarting would not help; readiness says
        it): housekeeping then waits on Redis, and its age is reported, not judged. A loop
        saturated by its runs is late, not dead: housekeeping may lag up to the stall limit.
        """
        if not self.started:
            # Waiting for Redis at start: restarting would not help, readiness says it.
            return True, "starting (waiting for Redis)"
        if not self.housekeeping_alive():
            return False, "housekeeping has stopped"
        if not self.liveness.running:
            return False, "the heartbeat thread has stopped"
        age = time.time() - self.housekeeping.last_run
        s = self.settings
        limit = max(3 * s.heartbeat_interval_ms / 1000 + 1, s.loop_stall_limit_ms / 1000)
        if age > limit and self.runner.redis_down_since is None and not self.outage.waiting():
            return False, f"no housekeeping for {age:.1f}s (limit {limit:.1f}s)"
        return True, f"housekeeping {age:.1f}s ago"

    async def readyz(self) -> tuple[bool, str]:
        """Ready for new runs: Redis answers, not shutting down, under capacity."""
        if self.stopping:
            return False, "shutting down"
        try:
            await asyncio.wait_for(self.ping(), 1)
        except Exception as exc:
            error = self.outage.last_error if self.outage.waiting() else ""
            where = f" at {self.outage.where}" if self.outage.where else ""
            return False, f"redis unreachable{where} ({error or type(exc).__name__})"
        in_flight, cap = len(self.runner.runs), self.settings.max_runs_per_worker
        if in_flight >= cap:
            return False, f"at capacity ({in_flight}/{cap} runs)"
        return True, f"{in_flight}/{cap} runs"
