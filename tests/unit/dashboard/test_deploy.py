"""deploy/: the dashboard's Kubernetes component and Compose service, both off by default.

scripts/validate-deploy.sh checks the default kustomization; this renders it with
components/dashboard enabled, validates what it adds and checks that its parts fit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runpoller.dashboard.cli import DEFAULT_PORT, TOKEN_ENV

REPO = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("VENV", REPO / ".venv")) / "bin"
LABELS = {"app.kubernetes.io/name": "runpoller", "app.kubernetes.io/component": "dashboard"}


def kustomize(enable: bool, tmp: Path) -> list[dict[str, Any]]:
    work = tmp / "k8s"
    shutil.copytree(REPO / "deploy" / "k8s", work)
    kz = work / "kustomization.yaml"
    doc = yaml.safe_load(kz.read_text(encoding="utf-8"))
    if enable:
        doc["components"].append("components/dashboard")
    kz.write_text(yaml.safe_dump(doc), encoding="utf-8")
    out = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(work)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def test_the_kubernetes_component_is_off_by_default_and_valid(tmp_path: Path) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    default = kustomize(False, tmp_path / "default")
    assert not [d for d in default if d["metadata"]["labels"] == LABELS]
    ours = [d for d in kustomize(True, tmp_path / "on") if d["metadata"]["labels"] == LABELS]
    assert sorted(d["kind"] for d in ours) == ["Deployment", "Service"]
    for doc in ours:
        for version in ("1.27.0", "1.37.0"):
            kubernetes_validate.validate(doc, version, strict=True)
    dep = next(d for d in ours if d["kind"] == "Deployment")
    svc = next(d for d in ours if d["kind"] == "Service")
    pod = dep["spec"]["template"]
    assert pod["metadata"]["labels"] == LABELS == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"] == LABELS and svc["spec"]["type"] == "ClusterIP"
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["dashboard", "--host", "0.0.0.0", "--port", str(DEFAULT_PORT)]
    assert container["ports"][0]["containerPort"] == DEFAULT_PORT == svc["spec"]["ports"][0]["port"]
    token = container["envFrom"][-1]["secretRef"]
    assert token == {"name": "runpoller-dashboard", "optional": True}  # read-only without it
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


def test_the_compose_service_is_off_by_default() -> None:
    compose = pytest.importorskip("compose")
    binary = str(Path(compose.__file__).parent / "docker-compose")
    compose_file = str(REPO / "deploy" / "compose.yaml")

    def services(*profile: str) -> dict[str, Any]:
        out = subprocess.run(
            [binary, "-f", compose_file, *profile, "config", "--format", "json"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        return dict(json.loads(out)["services"])

    assert "dashboard" not in services()
    service = services("--profile", "dashboard")["dashboard"]
    assert service["command"] == ["dashboard", "--host", "0.0.0.0", "--port", str(DEFAULT_PORT)]
    assert [(p["host_ip"], p["target"]) for p in service["ports"]] == [("127.0.0.1", DEFAULT_PORT)]
    assert TOKEN_ENV not in service.get("environment", {})  # from local.env, never committed
    assert "--ready --url http://127.0.0.1:8070" in " ".join(service["healthcheck"]["test"])
