"""Key names: every Redis key runpoller uses, under one prefix."""

from __future__ import annotations


class Keys:
    """Every Redis key runpoller uses, under one prefix (``runpoller`` by default)."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    def run(self, run_id: str) -> str:
        return f"{self.prefix}:run:{run_id}"

    def events(self, run_id: str) -> str:
        return f"{self.prefix}:events:{run_id}"

    def result(self, run_id: str) -> str:
        return f"{self.prefix}:result:{run_id}"

    def heartbeat(self, worker_id: str) -> str:
        return f"{self.prefix}:worker:{worker_id}"

    def owned(self, worker_id: str) -> str:
        return f"{self.prefix}:owned:{worker_id}"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def orphans(self) -> str:
        return f"{self.prefix}:orphans"

    @property
    def dead_letters(self) -> str:
        return f"{self.prefix}:dead-letters"

    @property
    def replies(self) -> str:
        return f"{self.prefix}:replies"

    @property
    def control(self) -> str:
        """Worker-to-worker messages (a 429 pause for a key, ...)."""
        return f"{self.prefix}:control"

    @property
    def worker_events(self) -> str:
        return f"{self.prefix}:worker-events"

    def outcomes(self, minute: int) -> str:
        """Per-minute counts of final statuses (hash status -> count; minute = epoch // 60)."""
        return f"{self.prefix}:outcomes:{minute}"
