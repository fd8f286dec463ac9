"""Dead letters: jobs no run could be tied to, kept on a stream for inspection."""

from __future__ import annotations

from pydantic import BaseModel, Field


class DeadLetter(BaseModel):
    """A job that could not be tied to any run: kept for inspection, never retried."""

    reason: str
    raw: str = Field(description="The job as received, truncated to 4 KiB.")
    ts: int
