"""How many runs this worker takes on: its cap, and the spreading rule across workers.

arq hands a job to whichever worker polls first, so without a rule a burst piles onto one
worker. Loads of the others come from their heartbeats (refreshed by housekeeping); the
jobs of one intake batch run concurrently, so each counts as reserved from the capacity
check until its run is adopted (or not).

A worker the rule refuses does not take from the queue at all (:meth:`Capacity.headroom` is
0), and a batch takes no more jobs than its headroom: what it leaves stays due for the
others. A worker above the average takes only jobs that have waited a little
(:meth:`Capacity.wait_s`), so those below it get the first pick. A job refused inside a
batch anyway (a resume job, say, or loads that changed) goes back due at once
(``Retry(defer=0)``), never hidden: the worker that refused it does not take from the queue
again until the rule lets it, so it cannot keep re-taking the job while a worker with room
waits (the livelock of issue 14: deferred jobs came due on the deferring worker's own poll
cadence, and it took them again first).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Literal

from arq import Retry

# A worker more than this far above the cluster average leaves new jobs to the others.
SPREAD_FACTOR = 1.15
SPREAD_SLACK = 2

Refusal = Literal["full", "spreading"]


def refusal(mine: int, cap: int, others: list[int]) -> Refusal | None:
    """Why a worker holding ``mine`` runs should not take one more, or None to take it.

    ``full`` at the cap; ``spreading`` when more than 15 % (+2) above the average of the
    cluster (``others`` are the other workers' loads). A worker at or below the average is
    never refused by spreading.
    """
    if mine >= cap:
        return "full"
    if others:
        average = (sum(others) + mine) / (len(others) + 1)
        if mine > average * SPREAD_FACTOR + SPREAD_SLACK:
            return "spreading"
    return None


def head_start_s(mine: int, others: list[int], delay_s: float) -> float:
    """How long a ready job should wait before a worker holding ``mine`` runs takes it.

    0 at or below the cluster average; ``delay_s`` above it, so that the workers below the
    average get the first pick of new jobs (arq otherwise gives each to whichever worker
    polls first: the shares follow the phases of the workers' polls, not their loads).
    """
    if others and mine > (sum(others) + mine) / (len(others) + 1):
        return delay_s
    return 0.0


def headroom(mine: int, cap: int, others: list[int], most: int) -> int:
    """How many more runs (up to ``most``) a worker holding ``mine`` may take, one by one."""
    n = 0
    while n < most and refusal(mine + n, cap, others) is None:
        n += 1
    return n


class Capacity:
    def __init__(
        self,
        worker_id: str,
        cap: int,
        in_flight: Callable[[], int],
        *,
        head_start_s: float = 0.0,
    ) -> None:
        self.worker_id = worker_id
        self.cap = cap
        self.in_flight = in_flight
        self.head_start = head_start_s
        """How long the workers below the average have new jobs to themselves."""
        self.cluster_loads: Mapping[str, int] = {}
        self.loads_at = 0.0
        """When :attr:`cluster_loads` was read (monotonic s; 0: never)."""
        self._reserved = 0

    def set_loads(self, loads: Mapping[str, int], at: float) -> None:
        self.cluster_loads, self.loads_at = loads, at

    def loads_stale(self, ready: int, now: float, max_age_s: float) -> bool:
        """Whether a batch of ``ready`` jobs should wait for fresh loads first: when it could
        take more than the spreading slack, and the view is older than ``max_age_s``. (A
        worker that had not yet seen a peer start would take a whole burst alone.)"""
        return ready > SPREAD_SLACK and now - self.loads_at > max_age_s

    def _mine_and_others(self) -> tuple[int, list[int]]:
        mine = self.in_flight() + self._reserved
        return mine, [n for wid, n in self.cluster_loads.items() if wid != self.worker_id]

    def headroom(self, most: int) -> int:
        """How many of ``most`` ready jobs this worker should take now (0: none at all)."""
        mine, others = self._mine_and_others()
        return headroom(mine, self.cap, others, most)

    def spare(self, most: int) -> int:
        """How many of ``most`` jobs fit under the cap, the spreading rule aside: what a
        worker may take of jobs no worker took while they were fresh (see intake.py)."""
        mine, _ = self._mine_and_others()
        return max(0, min(most, self.cap - mine))

    def fair_share(self, ready: int) -> int:
        """This worker's share of ``ready`` jobs: over the live workers it knows (at least 1)."""
        workers = len(self.cluster_loads.keys() | {self.worker_id})
        return max(1, -(-ready // workers))

    def wait_s(self) -> float:
        """How long a ready job should have waited before this worker takes it."""
        mine, others = self._mine_and_others()
        return head_start_s(mine, others, self.head_start)

    def check(self) -> None:
        """Raise arq's ``Retry`` (due again at once) when the worker is full.

        Spreading is decided once per batch (:meth:`headroom`, :meth:`spare`), not per job: a
        job the batch took for being overdue must not be refused again here.
        """
        mine, _ = self._mine_and_others()
        if mine >= self.cap:
            raise Retry(defer=0)

    @contextlib.contextmanager
    def reservation(self) -> Iterator[None]:
        """Count a job past the capacity check until its run is adopted (or not)."""
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1
