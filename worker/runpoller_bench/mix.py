"""Run lifetimes and the fake server's scripts for them.

A mix is a set of buckets (share, shortest, longest lifetime in seconds); a run's lifetime is
drawn uniformly inside a bucket chosen by share. To start the benchmark in steady state with
K runs in flight, the first K runs are the population a steady stream would have in flight
at any instant: lifetimes drawn length-biased (long runs are more likely to be in flight),
each with a uniformly random part already elapsed. New runs then arrive at
K / (mean lifetime) per second (Little's law), which keeps about K in flight.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

QUEUED_MS = 50.0


@dataclass(frozen=True)
class Bucket:
    share: float
    low_s: float
    high_s: float


@dataclass(frozen=True)
class Mix:
    buckets: tuple[Bucket, ...]

    @property
    def mean_s(self) -> float:
        total = sum(b.share for b in self.buckets)
        return sum(b.share * (b.low_s + b.high_s) / 2 for b in self.buckets) / total

    @property
    def max_s(self) -> float:
        return max(b.high_s for b in self.buckets)

    def describe(self) -> str:
        return ",".join(f"{b.share:g}:{b.low_s:g}-{b.high_s:g}" for b in self.buckets)

    def draw(self, rng: random.Random) -> float:
        """One lifetime, in seconds, as new runs arrive."""
        pick = rng.random() * sum(b.share for b in self.buckets)
        for bucket in self.buckets:
            pick -= bucket.share
            if pick <= 0:
                return rng.uniform(bucket.low_s, bucket.high_s)
        last = self.buckets[-1]
        return rng.uniform(last.low_s, last.high_s)

    def draw_in_flight(self, rng: random.Random) -> float:
        """The remaining lifetime of a run caught in flight (length-biased, then a residual)."""
        while True:
            lifetime = self.draw(rng)
            if rng.random() * self.max_s <= lifetime:
                return lifetime * rng.random()


def parse_mix(text: str, *, option: str = "--mix") -> Mix:
    """``"0.4:5-15,0.4:15-60,0.2:60-180"`` (share:min-max seconds)."""
    buckets = []
    for part in text.split(","):
        try:
            share_s, span = part.split(":")
            low_s, high_s = span.split("-")
            bucket = Bucket(float(share_s), float(low_s), float(high_s))
        except ValueError:
            raise SystemExit(f"{option}: cannot read {part!r}; expected share:min-max") from None
        if bucket.share <= 0 or bucket.low_s <= 0 or bucket.high_s < bucket.low_s:
            raise SystemExit(f"{option}: {part!r} needs share > 0 and 0 < min <= max")
        buckets.append(bucket)
    if not buckets:
        raise SystemExit(f"{option}: no buckets")
    return Mix(tuple(buckets))


# Realistic Assistants runs: most take seconds to a minute, some a few minutes.
DEFAULT_MIX = Mix((Bucket(0.4, 5, 15), Bucket(0.4, 15, 60), Bucket(0.2, 60, 180)))
SMOKE_MIX = Mix((Bucket(1.0, 0.4, 1.6),))
# The capacity size holds runs: 10 to 15 minutes each, so what it measures is what a held run
# costs (memory, a poll every interval), not intake and final writes.
CAPACITY_MIX = Mix((Bucket(1.0, 600, 900),))
# Background responses for the delivery-modes section: short, minutes, and a few minutes
# (the long ones show what a mode's request count does with a run's length).
MODES_MIX = Mix((Bucket(0.4, 2, 15), Bucket(0.4, 15, 60), Bucket(0.2, 60, 180)))
SMOKE_MODES_MIX = Mix((Bucket(0.5, 0.5, 1.0), Bucket(0.5, 1.0, 2.0)))


def run_script(lifetime_s: float, *, function_call: bool) -> dict[str, Any]:
    """A lifecycle lasting ``lifetime_s`` (plus the app's reply time for a tool call)."""
    work_ms = max(lifetime_s * 1000 - QUEUED_MS, 1.0)
    done = {"status": "completed", "messages": ["Benchmark answer."]}
    if not function_call:
        steps: list[dict[str, Any]] = [
            {"status": "queued", "ms": QUEUED_MS},
            {"status": "in_progress", "ms": work_ms},
            done,
        ]
    else:
        steps = [
            {"status": "queued", "ms": QUEUED_MS},
            {"status": "in_progress", "ms": work_ms / 2},
            {
                "status": "requires_action",
                "tool_calls": [{"name": "get_weather", "arguments": '{"city": "Paris"}'}],
            },
            {"status": "in_progress", "ms": work_ms / 2},
            done,
        ]
    return {"steps": steps}


def agent_script(lifetime_s: float, *, function_call: bool) -> dict[str, Any]:
    """:func:`run_script` for an agent session turn (the fake's agent script format)."""
    steps = run_script(lifetime_s, function_call=function_call)["steps"]
    for step in steps:
        if step["status"] == "requires_action":
            step.clear()
            step.update(
                status="waiting",
                actions=[{"type": "function_call", "name": "get_weather", "arguments": {}}],
            )
    return {"steps": steps}


NEVER_ENDING_SCRIPT: dict[str, Any] = {
    "steps": [{"status": "queued", "ms": QUEUED_MS}, {"status": "in_progress"}]
}
