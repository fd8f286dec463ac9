"""deploy/: every metric the Grafana dashboard and the alert rules query exists on a worker.

The integration test scrapes a running worker's /metrics; the others check the files' shape,
their label names and values against worker/runpoller/worker/metrics.py, and that
docs/operations.md covers every metric and every alert.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, get_args

import httpx
import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from runpoller.client import RunpollerClient
from runpoller.engine import CancelReason
from runpoller.protocol import FinalStatus
from runpoller.worker.metrics import Metrics
from tests.integration.conftest import WorkerHandle

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus-alerts.yaml"
OPERATIONS = ROOT / "docs" / "operations.md"

StartWorker = Callable[..., Awaitable[WorkerHandle]]

METRIC = re.compile(r"\b(runpoller_[a-zA-Z0-9_]+)\b\s*(\{[^}]*\})?")
MATCHER = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"([^"]*)"')
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
# Labels Prometheus adds at scrape time, and the histogram bucket label.
TARGET_LABELS = {"instance", "job", "le"}
KNOWN_VALUES = {
    "status": set(get_args(FinalStatus)),
    "state": {"ready", "deferred"},
    "reason": {r.value for r in CancelReason},
    "op": {"create", "get", "cancel", "submit", "fetch_result"},
    "backend": {"assistants_run", "response"},
}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def expressions() -> Iterator[tuple[str, str]]:
    """(where, PromQL) for every query of the dashboard and every alert rule."""
    board = dashboard()
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            yield f"variable {var['name']}", var["query"]["query"]
    for rule in alert_rules():
        yield f"alert {rule['alert']}", rule["expr"]


def declared_series() -> dict[str, tuple[str, set[str]]]:
    """Series name as PromQL sees it -> (family type, label names), from runpoller's metrics."""
    out: dict[str, tuple[str, set[str]]] = {}
    for metric in vars(Metrics()).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        kind, name, labels = metric._type, metric._name, set(metric._labelnames)
        if kind == "counter":
            out[f"{name}_total"] = (kind, labels)
        elif kind == "histogram":
            for suffix in ("_bucket", "_count", "_sum"):
                out[name + suffix] = (kind, labels | ({"le"} if suffix == "_bucket" else set()))
        else:
            out[name] = (kind, labels)
    return out


def exposed_series(text: str) -> set[str]:
    """Series names a /metrics page offers, from its TYPE lines (children or not)."""
    names: set[str] = set()
    for line in text.splitlines():
        if not line.startswith("# TYPE "):
            continue
        _, _, name, kind = line.split()
        if name.endswith("_created"):
            continue
        if kind == "histogram":
            names.update(name + suffix for suffix in ("_bucket", "_count", "_sum"))
        else:
            names.add(name)
    return names


def queried_metrics() -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for where, expr in expressions():
        for match in METRIC.finditer(expr):
            found.setdefault(match.group(1), set()).add(where)
    return found


@pytest.mark.integration
async def test_every_queried_metric_exists_on_a_running_worker(
    start_worker: StartWorker, client: RunpollerClient, fake_http: httpx.AsyncClient
) -> None:
    handle = await start_worker()
    body = (await fake_http.post("/_fake/runs", json={"script": "complete"})).json()
    job = {"kind": "assistants_run", "thread_id": body["thread_id"], "run_id": body["id"]}
    await client.wait(await client.enqueue(job), 10)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{handle.app.http_port}") as http:
        page = (await http.get("/metrics")).text
    exposed = exposed_series(page)
    queried = queried_metrics()
    assert len(queried) >= 15, "the dashboard and alerts query most metrics"
    missing = {name: sorted(where) for name, where in queried.items() if name not in exposed}
    assert not missing, f"queried but not on /metrics: {missing}"
    # A histogram is queried through its series, never by its bare family name.
    families = {line.split()[2] for line in page.splitlines() if line.endswith(" histogram")}
    assert not families & set(queried)


def test_labels_in_queries_exist_and_values_are_real() -> None:
    declared = declared_series()
    problems: list[str] = []
    for where, expr in expressions():
        labels_here = set(TARGET_LABELS)
        for match in METRIC.finditer(expr):
            name, selector = match.group(1), match.group(2) or ""
            if name not in declared:
                problems.append(
                    f"{where}: {name} is not a series of worker/runpoller/worker/metrics.py"
                )
                continue
            allowed = declared[name][1] | TARGET_LABELS
            labels_here |= allowed
            for label, _op, value in MATCHER.findall(selector):
                if label not in allowed:
                    problems.append(f"{where}: {name} has no label {label!r}")
                elif label in KNOWN_VALUES and _op == "=" and value not in KNOWN_VALUES[label]:
                    problems.append(f"{where}: {label}={value!r} never occurs")
        for group in GROUPING.findall(expr):
            for label in (part.strip() for part in group.split(",") if part.strip()):
                if label not in labels_here:
                    problems.append(f"{where}: grouping by unknown label {label!r}")
    assert not problems, "\n".join(problems)


def test_dashboard_shape() -> None:
    board = dashboard()
    assert board["uid"] and board["title"] == "runpoller" and board["schemaVersion"] >= 36
    ids = [panel["id"] for panel in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    variables = {var["name"] for var in board["templating"]["list"]}
    assert {"datasource", "instance"} <= variables
    titles = set()
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        titles.add(panel["title"])
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], f"{panel['title']} queries nothing"
        for target in panel["targets"]:
            assert target["expr"].count("(") == target["expr"].count(")"), panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
    for wanted in (
        "Queue depth",
        "Oldest ready job age",
        "In-flight runs per worker",
        "Runs finished by status",
        "Timeouts",
        "API requests by code",
        "API latency p50 / p99",
        "Poll lateness p50 / p99",
        "Final-event latency p99",
        "Tool-outputs wait p50 / p99",
        "Rate limits (429) and retries",
        "Recoveries",
        "Worker last activity",
    ):
        assert wanted in titles


def test_every_metric_is_on_the_dashboard() -> None:
    on_board = {
        match.group(1)
        for panel in dashboard()["panels"]
        for target in panel.get("targets", [])
        for match in METRIC.finditer(target["expr"])
    }
    families = {_family(series) for series in declared_series()}
    assert families == {_family(series) for series in on_board}


def _family(series: str) -> str:
    return re.sub(r"_(total|bucket|count|sum)$", "", series)


def test_alert_rules_shape_and_runbooks() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for wanted in (
        "RunpollerQueueBackingUp",
        "RunpollerOldestRunWaitingTooLong",
        "RunpollerWorkerDown",
        "RunpollerWorkerNoActivity",
        "RunpollerTimeoutRateHigh",
        "RunpollerRateLimited",
    ):
        assert wanted in names
    anchors = _anchors(OPERATIONS.read_text(encoding="utf-8"))
    for rule in rules:
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", "0s")))
        runbook = rule["annotations"]["runbook"]
        assert runbook.startswith("docs/operations.md#")
        assert runbook.split("#", 1)[1] in anchors, f"{rule['alert']}: no section {runbook}"


def _anchors(markdown: str) -> set[str]:
    """GitHub-style anchors of the headings."""
    anchors = set()
    for line in markdown.splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            title = re.sub(r"[^\w\- ]", "", title)
            anchors.add(title.replace(" ", "-"))
    return anchors


def test_operations_doc_lists_every_metric_and_alert() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    for series in declared_series():
        family = _family(series)
        documented = family in text or f"{family}_total" in text
        assert documented, f"docs/operations.md does not describe {family}"
    for rule in alert_rules():
        assert rule["alert"] in text, f"docs/operations.md does not mention {rule['alert']}"
