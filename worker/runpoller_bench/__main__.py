"""``python -m runpoller_bench``: run the benchmark, print the table, write the JSON."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from runpoller_bench.config import parse_args
from runpoller_bench.harness import run_bench
from runpoller_bench.report import default_out, exit_code, summary_line, write_results


def main(argv: list[str] | None = None) -> int:
    config = parse_args(argv)
    started = time.time()
    print(f"bench: {config.describe()}", file=sys.stderr, flush=True)
    try:
        results = asyncio.run(run_bench(config))
    except KeyboardInterrupt:
        return 130
    path = write_results(results, Path(config.out) if config.out else default_out(config, started))
    print()
    code = results.get("code") or {}
    commit = f", commit {code['commit']}" if code.get("commit") else ""
    if code.get("worker_code_modified"):
        commit += " (worker code modified)"
    print(
        f"runpoller bench — {results['date']}, {results['machine']['cpus']} CPUs "
        f"({results['machine']['cpu_model']}){commit}; {config.describe()}"
    )
    print()
    if results["table"]:
        print(f"Throughput size: {config.runs} runs, {config.workers} worker(s):")
        print()
        print(results["table"])
        print()
    if results.get("redis_table"):
        print("Where ours spends its Redis commands (throughput size, per finished run):")
        print()
        print(results["redis_table"])
        print()
    if results.get("latency_table"):
        print(
            f"Latency size: {config.latency_runs} runs, {config.latency_workers} worker(s) "
            "(the latency targets are judged here):"
        )
        print()
        print(results["latency_table"])
        print()
    if results.get("capacity_table"):
        cap = results["config"]
        print(
            f"Capacity size: {cap['capacity_runs']} runs at {cap['capacity_interval_ms']} ms, "
            f"1 worker, lifetimes {cap['capacity_mix']} s (the memory target is judged here):"
        )
        print()
        print(results["capacity_table"])
        print()
    if results.get("modes_table"):
        print("How a Responses run learns its response ended (delivery modes, side by side):")
        print()
        print(results["modes_table"])
        print()
    print(summary_line(results))
    for note in results["notes"]:
        print(f"note: {note}")
    print(f"results written to {path}")
    return exit_code(results)


if __name__ == "__main__":
    sys.exit(main())
