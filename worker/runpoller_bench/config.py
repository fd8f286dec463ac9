"""The benchmark's settings and command line (``python -m runpoller_bench --help``)."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from runpoller_bench.mix import (
    CAPACITY_MIX,
    DEFAULT_MIX,
    MODES_MIX,
    SMOKE_MIX,
    SMOKE_MODES_MIX,
    Mix,
    parse_mix,
)

Transport = Literal["aiohttp", "httpx"]
Backend = Literal["assistants_run", "agent_turn"]
DESIGNS = ("floor", "naive", "sdk", "ours", "modes")
MODES = ("fixed", "adaptive", "webhooks", "streamed")


@dataclass(frozen=True)
class BenchConfig:
    runs: int = 2000
    interval_ms: int = 1000
    duration_s: float = 30.0
    workers: int = 2
    function_call_share: float = 0.1
    # What "ours" drives: Assistants runs, or Agents API session turns (floor and naive poll
    # Assistants runs either way).
    backend: Backend = "assistants_run"
    transport: Transport = "aiohttp"
    # The event loop of our workers and of the floor (the same, so the ratio is ours alone).
    event_loop: str = "auto"
    mix: Mix = field(default_factory=lambda: DEFAULT_MIX)
    smoke: bool = False
    out: str | None = None
    redis_url: str = "redis://127.0.0.1:6379/0"
    private_redis: bool = False
    designs: tuple[str, ...] = DESIGNS
    # The latency size (issue 22): floor and ours again with fewer runs and workers, where
    # the floor keeps its own tail small; 0 runs: none.
    latency_runs: int = 500
    latency_workers: int = 1
    # The capacity size (issue 22): ours alone, many long runs at a long interval in one
    # worker process (memory per run, polls attained, the heartbeat); 0 runs: none.
    capacity_runs: int = 20_000
    capacity_interval_ms: int = 10_000
    capacity_mix: Mix = field(default_factory=lambda: CAPACITY_MIX)
    seed: int = 1
    log_level: str = "INFO"
    keep_logs: bool = False
    # Wait at the end until every run of ours has its final event (smoke runs are short).
    drain: bool = False
    # Longest wait for intake before the window starts anyway (seconds).
    ramp_timeout_s: float = 120.0
    # Print progress lines to stderr.
    verbose: bool = True
    # Write py-spy profiles of the workers (taken during the window) into this directory.
    profile: str | None = None
    # Before each window, wait up to this long for other processes to leave the CPUs alone.
    wait_quiet_s: float = 0.0
    # The delivery-modes section (modes.py): which modes, runs per mode, their lifetimes,
    # the arrival spread, the idle measurement before; adaptive's schedule (0: 5x and 2x
    # the base interval) and the webhooks mode's fallback poll.
    modes: tuple[str, ...] = MODES
    modes_runs: int = 200
    modes_mix: Mix = field(default_factory=lambda: MODES_MIX)
    modes_arrival_s: float = 20.0
    modes_idle_s: float = 10.0
    adaptive_after_ms: int = 0
    adaptive_max_ms: int = 0
    webhook_fallback_ms: int = 300_000

    @property
    def interval_s(self) -> float:
        return self.interval_ms / 1000

    def describe(self) -> str:
        modes = (
            f"modes {','.join(self.modes)}: {self.modes_runs} runs each at base interval "
            f"{self.interval_ms} ms, mix {self.modes_mix.describe()}"
        )
        if self.designs == ("modes",):
            return modes
        return (
            f"K={self.runs} runs, interval {self.interval_ms} ms, window {self.duration_s:g} s, "
            f"{self.workers} worker(s), transport {self.transport}, loop {self.event_loop}, "
            f"function-call share {self.function_call_share:g}, mix {self.mix.describe()}"
            + (f", ours drives {self.backend}" if self.backend != "assistants_run" else "")
            + (
                f"; latency size {self.latency_runs} runs, {self.latency_workers} worker(s)"
                if self.latency_runs and {"floor", "ours"} & set(self.designs)
                else ""
            )
            + (
                f"; capacity size {self.capacity_runs} runs at {self.capacity_interval_ms} ms, "
                f"1 worker, mix {self.capacity_mix.describe()}"
                if self.capacity_runs and "ours" in self.designs
                else ""
            )
            + (f"; {modes}" if "modes" in self.designs else "")
        )


def smoke_config(**overrides: object) -> BenchConfig:
    """Tiny sizes for the smoke test (tests/integration/test_bench_smoke.py): seconds, not
    minutes; the same code paths."""
    base = BenchConfig(
        runs=20,
        interval_ms=200,
        duration_s=2.0,
        workers=2,
        function_call_share=0.25,
        mix=SMOKE_MIX,
        smoke=True,
        drain=True,
        ramp_timeout_s=20.0,
        modes_runs=6,
        latency_runs=10,
        capacity_runs=10,
        capacity_interval_ms=500,
        capacity_mix=SMOKE_MIX,
        modes_mix=SMOKE_MODES_MIX,
        modes_arrival_s=1.0,
        modes_idle_s=1.0,
        webhook_fallback_ms=5000,
    )
    return replace(base, **overrides)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m runpoller_bench",
        description="Benchmark runpoller against the floor (bare aiohttp loop), the naive "
        "design (one arq job per poll) and the official SDK (one task per run), on the bundled "
        "fake OpenAI server.",
    )
    p.add_argument("--runs", type=int, help="K: runs in flight (default 2000; smoke 20)")
    p.add_argument("--interval-ms", type=int, help="poll interval (default 1000; smoke 200)")
    p.add_argument("--duration-s", type=float, help="measurement window (default 30; smoke 2)")
    p.add_argument("--workers", type=int, help="worker processes for ours (default 2)")
    p.add_argument(
        "--latency-runs",
        type=int,
        help="runs of the latency size: floor and ours again (default 500; 0: none)",
    )
    p.add_argument(
        "--latency-workers", type=int, help="worker processes at the latency size (default 1)"
    )
    p.add_argument(
        "--capacity-runs",
        type=int,
        help="runs of the capacity size: ours alone in one worker (default 20000; 0: none)",
    )
    p.add_argument(
        "--capacity-interval-ms",
        type=int,
        help="poll interval at the capacity size (default 10000)",
    )
    p.add_argument(
        "--function-call-share",
        type=float,
        help="share of runs that ask for one tool call the harness answers (default 0.1)",
    )
    p.add_argument("--transport", choices=["aiohttp", "httpx"], help="RUNPOLLER_HTTP_TRANSPORT")
    p.add_argument(
        "--backend",
        choices=["assistants_run", "agent_turn"],
        help="what ours drives: Assistants runs (default) or Agents API session turns",
    )
    p.add_argument(
        "--event-loop",
        choices=["auto", "uvloop", "asyncio"],
        help="RUNPOLLER_EVENT_LOOP for the workers, and the floor's loop (default auto)",
    )
    p.add_argument(
        "--mix",
        help="run lifetimes as 'share:min-max' seconds, comma-separated "
        f"(default {DEFAULT_MIX.describe()})",
    )
    p.add_argument("--smoke", action="store_true", help="tiny sizes (what the tests run)")
    p.add_argument("--out", help="JSON output path (default bench/results/<stamp>-....json)")
    p.add_argument("--redis-url", help="Redis to use (default: REDIS_URL, else 127.0.0.1:6379)")
    p.add_argument(
        "--private-redis",
        action="store_true",
        help="start a throw-away redis-server for exact Redis figures (no other clients)",
    )
    p.add_argument(
        "--designs",
        help="comma-separated subset of floor,naive,sdk,ours,modes (default: all)",
    )
    p.add_argument("--seed", type=int, help="random seed for the run mix (default 1)")
    p.add_argument("--log-level", help="RUNPOLLER_LOG_LEVEL for the workers (default INFO)")
    p.add_argument("--keep-logs", action="store_true", help="keep the processes' log files")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument(
        "--ramp-timeout-s",
        type=float,
        help="longest wait for the workers to take the first K runs (default 120)",
    )
    p.add_argument(
        "--wait-quiet",
        type=float,
        metavar="S",
        help="before each window, wait up to S seconds until other processes use < 0.15 "
        "cores (a shared machine); the load seen is reported either way",
    )
    p.add_argument(
        "--modes",
        help="comma-separated subset of fixed,adaptive,webhooks,streamed for the delivery-modes "
        "section (default: all four)",
    )
    p.add_argument("--modes-runs", type=int, help="runs per mode (default 200; smoke 6)")
    p.add_argument(
        "--modes-mix",
        help=f"response lifetimes of the modes section (default {MODES_MIX.describe()})",
    )
    p.add_argument(
        "--modes-arrival-s", type=float, help="spread of the modes' arrivals (default 20)"
    )
    p.add_argument(
        "--adaptive-after-ms",
        type=int,
        help="RUNPOLLER_ADAPTIVE_POLL_AFTER_MS of the adaptive mode (default 5x --interval-ms)",
    )
    p.add_argument(
        "--adaptive-max-ms",
        type=int,
        help="RUNPOLLER_ADAPTIVE_POLL_MAX_MS of the adaptive mode (default 2x --interval-ms)",
    )
    p.add_argument(
        "--webhook-fallback-ms",
        type=int,
        help="RUNPOLLER_WEBHOOK_FALLBACK_INTERVAL_MS of the webhooks mode (default 300000)",
    )
    p.add_argument(
        "--profile",
        metavar="DIR",
        help="py-spy profiles of ours' workers during the window, into DIR",
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> BenchConfig:
    args = build_parser().parse_args(argv)
    config = smoke_config() if args.smoke else BenchConfig()
    updates: dict[str, object] = {}
    for name in ("runs", "interval_ms", "duration_s", "workers", "function_call_share"):
        value = getattr(args, name)
        if value is not None:
            updates[name] = value
    names = (
        "transport",
        "backend",
        "event_loop",
        "out",
        "seed",
        "log_level",
        "profile",
        "ramp_timeout_s",
        "latency_runs",
        "latency_workers",
        "capacity_runs",
        "capacity_interval_ms",
        "modes_runs",
        "modes_arrival_s",
        "adaptive_after_ms",
        "adaptive_max_ms",
        "webhook_fallback_ms",
    )
    for name in names:
        value = getattr(args, name)
        if value is not None:
            updates[name] = value
    if args.mix:
        updates["mix"] = parse_mix(args.mix)
    if args.modes_mix:
        updates["modes_mix"] = parse_mix(args.modes_mix, option="--modes-mix")
    if args.modes:
        updates["modes"] = _subset(args.modes, MODES, "--modes")
    updates["redis_url"] = (
        args.redis_url or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    )
    updates["private_redis"] = args.private_redis
    if args.wait_quiet is not None:
        updates["wait_quiet_s"] = args.wait_quiet
    updates["keep_logs"] = args.keep_logs
    updates["verbose"] = not args.quiet
    if args.designs:
        updates["designs"] = _subset(args.designs, DESIGNS, "--designs")
    config = replace(config, **updates)  # type: ignore[arg-type]
    check(config)
    return config


def _subset(text: str, choices: tuple[str, ...], option: str) -> tuple[str, ...]:
    """A comma-separated subset of ``choices``, in their order; SystemExit naming the rest."""
    picked = tuple(d.strip() for d in text.split(",") if d.strip())
    unknown = [d for d in picked if d not in choices]
    if unknown or not picked:
        raise SystemExit(f"{option}: unknown {unknown}; choose from {', '.join(choices)}")
    return tuple(d for d in choices if d in picked)


def check(config: BenchConfig) -> None:
    problems = []
    if config.runs < 1:
        problems.append("--runs must be at least 1")
    if config.interval_ms < 100:
        problems.append("--interval-ms must be at least 100 (the workers' minimum)")
    if config.duration_s <= 0:
        problems.append("--duration-s must be positive")
    if config.workers < 1:
        problems.append("--workers must be at least 1")
    if config.latency_runs < 0 or config.latency_workers < 1:
        problems.append("--latency-runs must not be negative, --latency-workers at least 1")
    if config.capacity_runs < 0 or config.capacity_interval_ms < 100:
        problems.append("--capacity-runs must not be negative, --capacity-interval-ms >= 100")
    if not 0 <= config.function_call_share <= 1:
        problems.append("--function-call-share must be between 0 and 1")
    if config.modes_runs < 1:
        problems.append("--modes-runs must be at least 1")
    if config.modes_arrival_s < 0:
        problems.append("--modes-arrival-s must not be negative")
    if config.webhook_fallback_ms < config.interval_ms:
        problems.append("--webhook-fallback-ms must be at least --interval-ms")
    for name, value in (
        ("--adaptive-after-ms", config.adaptive_after_ms),
        ("--adaptive-max-ms", config.adaptive_max_ms),
    ):
        if value < 0:
            problems.append(f"{name} must not be negative (0: the default)")
    if config.adaptive_max_ms and config.adaptive_max_ms < config.interval_ms:
        problems.append("--adaptive-max-ms must be at least --interval-ms")
    if problems:
        raise SystemExit("python -m runpoller_bench: " + "; ".join(problems))
