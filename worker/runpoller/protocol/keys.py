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
    def cancels(self) -> str:
        """The app's cancel requests (fields ``run_id``, ``reason``), read by every worker."""
        return f"{self.prefix}:cancels"

    def cancel(self, run_id: str) -> str:
        """A run's durable cancel request (hash ``reason``, ``requested_at``; the worker adds
        ``outcome`` when the run had already ended): seen by whoever owns the run, now or later."""
        return f"{self.prefix}:cancel:{run_id}"

    @property
    def runs_active(self) -> str:
        """Index of runs with a record and no final event: zset run id -> accepted epoch ms."""
        return f"{self.prefix}:runs:active"

    @property
    def runs_ended(self) -> str:
        """Index of ended runs: zset run id -> end epoch ms (trimmed at the record TTL)."""
        return f"{self.prefix}:runs:ended"

    def reply_status(self, entry_id: str) -> str:
        """Why a replies-stream entry could not be applied to any run (JSON; expiring)."""
        return f"{self.prefix}:reply:{entry_id}"

    @property
    def wakes(self) -> str:
        """Webhook wake-ups (fields ``object_id``, ``type``, ``webhook_id``): the run that
        follows the object polls at once. Written by the webhook receiver."""
        return f"{self.prefix}:wakes"

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
