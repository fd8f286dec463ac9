"""How many runs this worker takes on: its cap, and the spreading rule across workers.

arq hands a job to whichever worker polls first, so without a rule a burst piles onto one
worker. Loads of the others come from their heartbeats (refreshed by housekeeping); the
jobs of one intake batch run concurrently, so each counts as reserved from the capacity
check until its run is adopted (or not).
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator, Mapping

from arq import Retry

# A worker more than this far above the cluster average leaves new jobs to the others.
SPREAD_FACTOR = 1.15
SPREAD_SLACK = 2


def defer_for(mine: int, cap: int, others: list[int], rand: float) -> float | None:
    """Seconds to defer a new job by, or None to take it (pure: ``rand`` in [0, 1))."""
    if mine >= cap:
        return 1.0
    if others:
        average = (sum(others) + mine) / (len(others) + 1)
        if mine > average * SPREAD_FACTOR + SPREAD_SLACK:
            return 0.05 + rand * 0.05
    return None


class Capacity:
    def __init__(
        self,
        worker_id: str,
        cap: int,
        in_flight: Callable[[], int],
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.worker_id = worker_id
        self.cap = cap
        self.in_flight = in_flight
        self.rand = rand
        self.cluster_loads: Mapping[str, int] = {}
        self._reserved = 0

    def check(self) -> None:
        """Raise arq's ``Retry`` when the job should go to another worker."""
        mine = self.in_flight() + self._reserved
        others = [n for wid, n in self.cluster_loads.items() if wid != self.worker_id]
        defer = defer_for(mine, self.cap, others, self.rand())
        if defer is not None:
            raise Retry(defer=defer)

    @contextlib.contextmanager
    def reservation(self) -> Iterator[None]:
        """Count a job past the capacity check until its run is adopted (or not)."""
        self._reserved += 1
        try:
            yield
        finally:
            self._reserved -= 1
