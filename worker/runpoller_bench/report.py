"""The results document (JSON), the targets of issue 22, and the tables printed at the end."""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from runpoller_bench import modestats
from runpoller_bench.analysis import ratio
from runpoller_bench.config import BenchConfig
from runpoller_bench.procs import git_state

Figures = dict[str, Any]


@dataclass
class Target:
    name: str
    target: str
    value: str
    status: str  # "pass", "FAIL" or "n/a"
    at_spec: bool  # measured under the conditions the target names
    conditions: str


def _get(figures: Figures | None, key: str, sub: str | None = None) -> float | None:
    if figures is None:
        return None
    value = figures.get(key)
    if sub is not None:
        value = value.get(sub) if isinstance(value, dict) else None
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("pass" if ok else "FAIL")


def evaluate_targets(
    config: BenchConfig,
    designs: dict[str, Figures],
    latency: dict[str, Figures] | None = None,
    capacity: dict[str, Figures] | None = None,
) -> list[Target]:
    """Issue 22's targets: CPU and Redis at the throughput size (``designs``), latency at the
    latency size (``latency``), memory at the capacity size (``capacity``); without its own
    size, a target is judged at the throughput size and marked off spec."""
    ours, floor, sdk = designs.get("ours"), designs.get("floor"), designs.get("sdk")
    k, interval, n = config.runs, config.interval_ms, config.workers
    out: list[Target] = []

    def cpu_target(name: str, other: Figures | None, limit: float, label: str) -> Target:
        value = ratio(_get(ours, "cpu_ms_per_poll"), _get(other, "cpu_ms_per_poll"))
        return Target(
            name,
            f"≤ {limit:g}x {label}",
            "n/a" if value is None else f"{value:.2f}x {label}",
            _status(None if value is None else value <= limit),
            k >= 2000,
            "2,000 runs in flight, same run",
        )

    out.append(cpu_target("CPU per poll", floor, 1.5, "floor"))
    out.append(cpu_target("CPU per poll vs sdk", sdk, 0.2, "sdk"))

    cmds = _get(ours, "redis_commands_per_poll")
    out.append(
        Target(
            "Redis commands per poll",
            "≤ 0.5",
            _num(cmds, 3),
            _status(None if cmds is None else cmds <= 0.5),
            k >= 2000,
            "2,000 runs in flight",
        )
    )

    held, held_k, held_n, held_interval = ours, k, n, interval
    if capacity and capacity.get("ours"):
        held, held_k, held_n = capacity["ours"], config.capacity_runs, 1
        held_interval = config.capacity_interval_ms
    rss = _get(held, "rss_kb_per_run")
    in_flight = _get(held, "in_flight_mean")
    attained = _get(held, "poll_rate_attained")
    lapsed = _get(held, "heartbeats_lapsed_in_window")
    holds = (
        None
        if in_flight is None or attained is None
        else in_flight >= 0.95 * held_k and attained >= 0.97 and not lapsed
    )
    out.append(
        Target(
            "RSS per in-flight run",
            "≤ 6 KB, ≥ 97 % of polls, no lapse",
            f"{_num(rss, 1)} KB; {_num(in_flight, 0)} held, {_pct(attained)} of polls",
            _status(None if rss is None or holds is None else rss <= 6 and holds),
            held_n == 1 and held_k >= 20_000 and held_interval <= 10_000,
            "20,000 runs at 10 s in one process",
        )
    )

    at_size = latency if latency else designs
    l_ours, l_floor = at_size.get("ours"), at_size.get("floor")
    at_latency_spec = bool(latency) and _get(l_floor, "poll_lateness_ms", "p99") is not None
    floor_p99 = _get(l_floor, "poll_lateness_ms", "p99")
    lateness = _get(l_ours, "poll_lateness_ms", "p99")
    late_ratio = ratio(lateness, floor_p99)
    out.append(
        Target(
            "poll lateness p99",
            "≤ 1.2x floor's",
            f"{_num(lateness, 1)} ms (floor {_num(floor_p99, 1)} ms)",
            _status(None if late_ratio is None else late_ratio <= 1.2),
            at_latency_spec and (floor_p99 or 0) < 30,
            "the latency size, floor's p99 < 30 ms",
        )
    )
    for name, key, limit in (
        ("final status → final event p99", "final_event_ms", 50),
        ("app reply → submit p99", "reply_to_submit_ms", 30),
    ):
        value = _get(l_ours, key, "p99")
        out.append(
            Target(
                name,
                f"≤ {limit} ms",
                f"{_num(value, 1)} ms",
                _status(None if value is None else value <= limit),
                at_latency_spec and (floor_p99 or 0) < 30,
                "the latency size, floor's p99 < 30 ms",
            )
        )

    overlaps = _get(ours, "overlapping_polls")
    out.append(
        Target(
            "overlapping polls",
            "0",
            _num(overlaps, 0),
            _status(None if overlaps is None else overlaps == 0),
            n >= 2,
            "2 worker processes",
        )
    )
    dev = _get(ours, "split_max_deviation")
    out.append(
        Target(
            "split between workers",
            "±20%",
            "n/a" if dev is None else f"±{dev * 100:.1f}%",
            _status(None if dev is None else dev <= 0.2),
            n >= 2,
            "2 worker processes",
        )
    )
    return out


# Targets judged on the latency size's figures (shown in its table, not the throughput one).
LATENCY_TARGETS = frozenset(
    {"poll lateness p99", "final status → final event p99", "app reply → submit p99"}
)
# Judged on the capacity size's figures, when there is one.
CAPACITY_TARGETS = frozenset({"RSS per in-flight run"})


def _num(value: float | None, digits: int) -> str:
    if value is None:
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f}%"


def _ratio(a: float | None, b: float | None) -> str:
    r = ratio(a, b)
    if r is None:
        return ""
    return f"{r:.2f}x" if r < 100 else f"{r:,.0f}x"


Row = tuple[str, Callable[[Figures | None], float | None], int, str]


def _rows() -> list[Row]:
    def g(key: str, sub: str | None = None) -> Callable[[Figures | None], float | None]:
        return lambda f: _get(f, key, sub)

    return [
        ("runs in flight (mean)", g("in_flight_mean"), 0, ""),
        ("polls/s", g("polls_per_s"), 0, ""),
        ("polls attained (% of in-flight ÷ interval)", _attained, 1, ""),
        ("CPU per poll, ms", g("cpu_ms_per_poll"), 3, "CPU per poll"),
        ("CPU busy, cores", g("cpu_cores_busy"), 2, ""),
        (
            "Redis commands per poll (incl. inside Lua)",
            g("redis_commands_per_poll"),
            3,
            "Redis commands per poll",
        ),
        ("Redis client commands per poll", g("redis_client_commands_per_poll"), 3, ""),
        ("RSS per in-flight run, KB", g("rss_kb_per_run"), 2, "RSS per in-flight run"),
        ("API requests per finished run", g("api_requests_per_run"), 1, ""),
        ("poll lateness p50, ms", g("poll_lateness_ms", "p50"), 1, ""),
        ("poll lateness p99, ms", g("poll_lateness_ms", "p99"), 1, "poll lateness p99"),
        ("final status → final event p50, ms", g("final_event_ms", "p50"), 1, ""),
        (
            "final status → final event p99, ms",
            g("final_event_ms", "p99"),
            1,
            "final status → final event p99",
        ),
        ("API's terminal answer → final event p99, ms", g("final_event_from_api_ms", "p99"), 1, ""),
        ("app reply → submit p50, ms", g("reply_to_submit_ms", "p50"), 1, ""),
        ("app reply → submit p99, ms", g("reply_to_submit_ms", "p99"), 1, "app reply → submit p99"),
        ("overlapping polls", g("overlapping_polls"), 0, "overlapping polls"),
        ("workers presumed dead in the window", _dead_workers, 0, ""),
        ("heartbeat found lapsed (1 s samples)", g("heartbeats_lapsed_in_window"), 0, ""),
        ("split between workers, max deviation %", _split, 1, "split between workers"),
        ("fake server CPU per request, ms", g("fake_server_cpu_ms_per_request"), 3, ""),
        ("other processes on the machine, cores", g("other_processes_cores"), 2, ""),
    ]


def _dead_workers(f: Figures | None) -> float | None:
    events = f.get("worker_events_in_window") if f else None
    return float(events.get("dead_worker", 0)) if isinstance(events, dict) else None


def _attained(f: Figures | None) -> float | None:
    value = _get(f, "poll_rate_attained")
    return None if value is None else value * 100


def _split(f: Figures | None) -> float | None:
    value = _get(f, "split_max_deviation")
    return None if value is None else value * 100


NO_RATIO = frozenset(
    {
        "runs in flight (mean)",
        "overlapping polls",
        "workers presumed dead in the window",
        "heartbeat found lapsed (1 s samples)",
        "other processes on the machine, cores",
        "fake server CPU per request, ms",
    }
)
THROUGHPUT_DESIGNS = ("ours", "floor", "sdk", "naive")
LATENCY_DESIGNS = ("ours", "floor")
CAPACITY_DESIGNS = ("ours",)


def _columns(names: tuple[str, ...]) -> list[str]:
    return ["figure", *names, *(f"ours/{d}" for d in names[1:]), "target", "result"]


COLUMNS = tuple(_columns(THROUGHPUT_DESIGNS))


Section = Literal["designs", "latency", "capacity"]
SECTION_DESIGNS: dict[str, tuple[str, ...]] = {
    "designs": THROUGHPUT_DESIGNS,
    "latency": LATENCY_DESIGNS,
    "capacity": CAPACITY_DESIGNS,
}


def _section_of(target_name: str, results: dict[str, Any]) -> str:
    if target_name in LATENCY_TARGETS:
        return "latency"
    if target_name in CAPACITY_TARGETS and results.get("capacity"):
        return "capacity"
    return "designs"


def table_rows(results: dict[str, Any], *, section: Section = "designs") -> list[list[str]]:
    designs: dict[str, Figures] = results.get(section) or {}
    names = SECTION_DESIGNS[section]
    targets = {
        t["name"]: t for t in results["targets"] if _section_of(t["name"], results) == section
    }
    rows: list[list[str]] = []
    for label, get, digits, target_name in _rows():
        values = {d: get(designs.get(d)) for d in names}
        if all(v is None for v in values.values()):
            continue
        target = targets.get(target_name) if target_name else None
        result = ""
        if target is not None:
            result = target["status"] + ("" if target["at_spec"] else "*")
        is_ratio_row = label not in NO_RATIO
        rows.append(
            [
                label,
                *(_num(values[d], digits) for d in names),
                *(_ratio(values["ours"], values[d]) if is_ratio_row else "" for d in names[1:]),
                target["target"] if target else "",
                result,
            ]
        )
    return rows


def render_table(
    results: dict[str, Any], *, markdown: bool = False, section: Section = "designs"
) -> str:
    rows = table_rows(results, section=section)
    columns = _columns(SECTION_DESIGNS[section])
    lines = [_grid(columns, rows, markdown)]
    off_spec = [
        t
        for t in results["targets"]
        if not t["at_spec"] and _section_of(t["name"], results) == section
    ]
    if off_spec:
        lines.append("")
        lines.append(
            "* measured off the target's conditions: "
            + "; ".join(f"{t['name']} is set for {t['conditions']}" for t in off_spec)
        )
    return "\n".join(lines)


def build_results(
    config: BenchConfig,
    designs: dict[str, Figures],
    *,
    latency: dict[str, Figures] | None = None,
    capacity: dict[str, Figures] | None = None,
    started: float,
    finished: float,
    machine: dict[str, object],
    notes: list[str],
    redis_url: str,
    key_prefix: str,
    code: dict[str, object] | None = None,
) -> dict[str, Any]:
    throughput = {k: v for k, v in designs.items() if k != "modes"}
    targets = evaluate_targets(config, throughput, latency, capacity) if throughput else []
    results: dict[str, Any] = {
        "date": dt.datetime.fromtimestamp(started, dt.UTC).isoformat(timespec="seconds"),
        "elapsed_s": round(finished - started, 1),
        "machine": machine,
        "code": code if code is not None else git_state(),
        "config": {
            "runs": config.runs,
            "interval_ms": config.interval_ms,
            "duration_s": config.duration_s,
            "workers": config.workers,
            "latency_runs": config.latency_runs if latency else 0,
            "latency_workers": config.latency_workers,
            "capacity_runs": config.capacity_runs if capacity else 0,
            "capacity_interval_ms": config.capacity_interval_ms,
            "capacity_mix": config.capacity_mix.describe(),
            "function_call_share": config.function_call_share,
            "backend": config.backend,
            "transport": config.transport,
            "event_loop": config.event_loop,
            "event_loop_used": _loop_used(config.event_loop),
            "mix": config.mix.describe(),
            "mean_lifetime_s": config.mix.mean_s,
            "smoke": config.smoke,
            "seed": config.seed,
            "designs": list(config.designs),
            "modes": list(config.modes),
            "modes_runs": config.modes_runs,
            "modes_mix": config.modes_mix.describe(),
            "modes_arrival_s": config.modes_arrival_s,
            "adaptive_after_ms": config.adaptive_after_ms or 5 * config.interval_ms,
            "adaptive_max_ms": config.adaptive_max_ms or 2 * config.interval_ms,
            "webhook_fallback_ms": config.webhook_fallback_ms,
            "redis": _hide_password(redis_url),
            "key_prefix": key_prefix,
        },
        "designs": designs,
        "latency": latency or {},
        "capacity": capacity or {},
        "targets": [asdict(t) for t in targets],
        "notes": notes,
    }
    results["table"] = render_table(results) if throughput else ""
    results["table_markdown"] = render_table(results, markdown=True) if throughput else ""
    redis_table = render_redis_table(designs.get("ours")) if throughput else ""
    if redis_table:
        results["redis_table"] = redis_table
        results["redis_table_markdown"] = render_redis_table(designs.get("ours"), markdown=True)
    for section in ("latency", "capacity"):
        if results[section]:
            results[f"{section}_table"] = render_table(results, section=section)
            results[f"{section}_table_markdown"] = render_table(
                results, markdown=True, section=section
            )
    modes = {k: v for k, v in (designs.get("modes") or {}).items() if not k.startswith("_")}
    if modes:
        targets_of_modes = modestats.evaluate_mode_targets(modes, config.interval_ms)
        results["mode_targets"] = [asdict(t) for t in targets_of_modes]
        results["modes_table"] = render_modes_table(results)
        results["modes_table_markdown"] = render_modes_table(results, markdown=True)
    return results


def render_modes_table(results: dict[str, Any], *, markdown: bool = False) -> str:
    """The delivery-modes section: one column per mode, then the targets with PASS/FAIL."""
    modes = {k: v for k, v in results["designs"]["modes"].items() if not k.startswith("_")}
    rows = modestats.mode_rows(modes)
    columns = list(modestats.MODE_COLUMNS)
    targets = [
        [t["name"], t["mode"], t["target"], t["value"], t["status"].replace("pass", "PASS")]
        for t in results["mode_targets"]
    ]
    target_columns = ["target", "mode", "limit", "measured", "result"]
    meta = results["designs"]["modes"].get("_meta") or {}
    footer = ""
    if isinstance(meta.get("other_processes_cores"), int | float):
        footer = (
            f"\n\n{meta['runs_per_mode']} runs per mode, all modes at once over "
            f"{meta['span_s']:g} s; fake server {meta['fake_server_cores']:.2f} cores, "
            f"other processes on the machine {meta['other_processes_cores']:.2f} cores"
        )
    return (
        _grid(columns, rows, markdown) + "\n\n" + _grid(target_columns, targets, markdown) + footer
    )


def render_redis_table(figures: Figures | None, *, markdown: bool = False) -> str:
    """Where ours spends its Redis commands: per script, calls and commands (the EVALSHA and
    what the script ran) per finished run (one ``finalize`` call each), then the commands
    sent outside scripts. Empty without the per-client accounting (MONITOR)."""
    by_script = (figures or {}).get("redis_commands_by_script")
    if figures is None or not isinstance(by_script, dict) or not by_script:
        return ""
    finished = (by_script.get("finalize") or {}).get("calls") or 0
    if not finished:
        return ""
    rows = [
        [name, f"{v['calls'] / finished:.2f}", f"{v['commands'] / finished:.2f}"]
        for name, v in by_script.items()
    ]
    client, total = figures.get("redis_client_commands"), figures.get("redis_commands")
    if isinstance(client, int | float):
        outside = client - sum(v["calls"] for v in by_script.values())
        rows.append(["(commands outside scripts)", "", f"{outside / finished:.2f}"])
    if isinstance(total, int | float):
        rows.append(["all", "", f"{total / finished:.2f}"])
    return _grid(["script", "calls per finished run", "commands per finished run"], rows, markdown)


def _grid(columns: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        lines += ["| " + " | ".join(cell or " " for cell in row) + " |" for row in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]

    def line(cells: list[str]) -> str:
        first = cells[0].ljust(widths[0])
        rest = [c.rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest]).rstrip()

    return "\n".join([line(columns), "  ".join("-" * w for w in widths), *map(line, rows)])


def _loop_used(choice: str) -> str:
    from runpoller.worker.loops import new_event_loop

    loop = new_event_loop(choice)
    try:
        return f"{type(loop).__module__}.{type(loop).__name__}"
    finally:
        loop.close()


def _hide_password(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


def default_out(config: BenchConfig, when: float) -> Path:
    stamp = dt.datetime.fromtimestamp(when, dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    name = f"{stamp}-k{config.runs}-i{config.interval_ms}-w{config.workers}-{config.transport}"
    if config.designs == ("modes",):
        name = f"{stamp}-modes-n{config.modes_runs}-i{config.interval_ms}"
    if config.smoke:
        name += "-smoke"
    return Path("bench") / "results" / f"{name}.json"


def write_results(results: dict[str, Any], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n")
    return path


def exit_code(results: dict[str, Any]) -> int:
    """1 when a target measured under its own conditions failed (smoke sizes included), else 0.

    A FAIL off the target's conditions (marked *, e.g. fewer runs than it names) is shown but
    proves nothing either way."""
    failed = [t for t in results["targets"] if t["status"] == "FAIL" and t["at_spec"]]
    return 1 if failed else 0


def summary_line(results: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for t in [*results["targets"], *results.get("mode_targets", [])]:
        counts[t["status"]] = counts.get(t["status"], 0) + 1
    parts = [f"{counts.get(s, 0)} {s}" for s in ("pass", "FAIL", "n/a") if counts.get(s)]
    return "targets: " + ", ".join(parts)
