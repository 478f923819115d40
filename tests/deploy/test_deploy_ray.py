"""deploy/k8s/overlays/ray: the cluster overlay plus a KubeRay RayCluster the gateways run
jobs on, rendered offline like the other overlays (test_deploy_k8s.py validates every
other object against the Kubernetes schemas).

The RayCluster (ray.io/v1) is a CRD that kubernetes-validate has no schema for, so it gets
a structural check: a schema written here for the fields we use, with the types of the
KubeRay CRD (rayStartParams values are strings; replicas are integers), unknown fields
rejected; and each of its pod templates is checked as a real Pod against the Kubernetes
schemas. Then the wiring: the gateways' PARETO_RAY_ADDRESS is the head's Ray Client port
behind the service KubeRay names `<cluster>-head-svc`, the Ray pods run the gateways'
image (the GPU group the gpu image, with an NVIDIA GPU) with the same settings and the
same data volume at the same path, the network policies let the gateways and workers
reach the head, and rayVersion is the Ray the project pins. Not applied to a real cluster
(none is reachable from these machines), so the operator itself was not exercised.
"""

from __future__ import annotations

import copy
import re

import jsonschema
import kubernetes_validate
import pytest

from tests.helpers.deploy_tools import ROOT, containers, matches, objects, render

K8S_VERSION = "1.37.0"
CLIENT_PORT = 10001  # Ray Client's default port on the head
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_TEMPLATE = {
    "type": "object",
    "required": ["spec"],
    "properties": {"metadata": {"type": "object"}, "spec": {"type": "object"}},
    "additionalProperties": False,
}
_REPLICAS = {"type": "integer", "minimum": 0}
RAY_CLUSTER_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "ray.io/v1"},
        "kind": {"const": "RayCluster"},
        "metadata": {
            "type": "object",
            "required": ["name", "namespace"],
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
        },
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["headGroupSpec"],
            "properties": {
                "rayVersion": {"type": "string"},
                "enableInTreeAutoscaling": {"type": "boolean"},
                "headGroupSpec": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["template"],
                    "properties": {"rayStartParams": _STRINGS, "template": _TEMPLATE},
                },
                "workerGroupSpecs": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["groupName", "minReplicas", "maxReplicas", "template"],
                        "properties": {
                            "groupName": {"type": "string", "minLength": 1},
                            "replicas": _REPLICAS,
                            "minReplicas": _REPLICAS,
                            "maxReplicas": _REPLICAS,
                            "rayStartParams": _STRINGS,
                            "template": _TEMPLATE,
                        },
                    },
                },
            },
        },
    },
}


@pytest.fixture(scope="module")
def docs() -> list[dict]:
    return render("ray")


@pytest.fixture(scope="module")
def cluster(docs) -> dict:
    (found,) = objects(docs, "RayCluster").values()
    return found


def pod_templates(cluster: dict) -> dict[str, dict]:
    groups = {g["groupName"]: g["template"] for g in cluster["spec"]["workerGroupSpecs"]}
    return {"head": cluster["spec"]["headGroupSpec"]["template"], **groups}


def settings(docs: list[dict]) -> dict[str, str]:
    (cm,) = objects(docs, "ConfigMap").values()
    return cm["data"]


def test_the_raycluster_has_the_crds_shape(cluster):
    jsonschema.validate(cluster, RAY_CLUSTER_SCHEMA)
    typo = copy.deepcopy(cluster)
    typo["spec"]["workerGroupSpecs"][0]["minReplica"] = 1
    with pytest.raises(jsonschema.ValidationError):  # the structural check rejects typos
        jsonschema.validate(typo, RAY_CLUSTER_SCHEMA)
    number = copy.deepcopy(cluster)
    number["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] = 0
    with pytest.raises(jsonschema.ValidationError):  # KubeRay wants strings there
        jsonschema.validate(number, RAY_CLUSTER_SCHEMA)


def test_every_ray_pod_template_is_a_valid_pod(cluster):
    for group, template in pod_templates(cluster).items():
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"pareto-ray-{group}", "namespace": "pareto"},
            "spec": template["spec"],
        }
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


def test_the_gateways_reach_the_heads_ray_client_port(docs, cluster):
    address = settings(docs)["PARETO_RAY_ADDRESS"]
    assert address == f"ray://{cluster['metadata']['name']}-head-svc:{CLIENT_PORT}"
    head = cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert CLIENT_PORT in {p["containerPort"] for p in head["ports"]}
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["num-cpus"] == "0"  # no work
    head_labels = {"ray.io/cluster": cluster["metadata"]["name"], "ray.io/node-type": "head"}
    policies = objects(docs, "NetworkPolicy")
    for name in ("pareto-gateway", "pareto-worker"):
        egress = policies[name]["spec"]["egress"]
        assert any(
            CLIENT_PORT in {p["port"] for p in rule["ports"]}
            and any(matches(t["podSelector"]["matchLabels"], head_labels) for t in rule["to"])
            for rule in egress
        ), name
    ray_policy = policies["pareto-ray"]["spec"]
    assert ray_policy["podSelector"]["matchLabels"] == {"ray.io/cluster": "pareto-ray"}
    assert 5432 in {p["port"] for r in ray_policy["egress"] for p in r.get("ports", [])}


def test_ray_pods_share_the_gateways_image_settings_and_data(docs, cluster):
    gateway = objects(docs, "Deployment")["pareto-gateway"]
    image = containers(gateway)[0]["image"]
    (cm,) = objects(docs, "ConfigMap").values()
    data_dir = cm["data"]["PARETO_DATA_DIR"]
    for group, template in pod_templates(cluster).items():
        (container,) = template["spec"]["containers"]
        expected = image.replace("-cpu", "-gpu") if group == "gpu" else image
        assert container["image"] == expected, group
        refs = [e["configMapRef"]["name"] for e in container["envFrom"]]
        assert refs == [cm["metadata"]["name"]], group  # the generated (hashed) name
        volumes = {v["name"]: v for v in template["spec"]["volumes"]}
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        claim = volumes[mounts[data_dir]]["persistentVolumeClaim"]["claimName"]
        assert claim == "pareto-data", group
        assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"  # object store
        assert container["securityContext"]["readOnlyRootFilesystem"] and "/tmp" in mounts
        assert template["spec"]["securityContext"]["runAsNonRoot"] is True


def test_the_gpu_group_asks_for_a_gpu_and_starts_empty(cluster):
    groups = {g["groupName"]: g for g in cluster["spec"]["workerGroupSpecs"]}
    assert set(groups) == {"cpu", "gpu"}
    gpu = groups["gpu"]
    (container,) = gpu["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    toleration = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    assert toleration in gpu["template"]["spec"]["tolerations"]
    assert gpu["minReplicas"] == gpu["replicas"] == 0 < gpu["maxReplicas"]
    assert cluster["spec"]["enableInTreeAutoscaling"] is True  # adds GPU pods on demand
    cpu = groups["cpu"]
    assert 1 <= cpu["minReplicas"] <= cpu["replicas"] <= cpu["maxReplicas"]
    assert "nvidia.com/gpu" not in cpu["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_ray_version_is_the_pinned_one(cluster):
    pinned = re.search(r'"ray==([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert pinned and cluster["spec"]["rayVersion"] == pinned.group(1)


def test_the_cluster_overlay_underneath_is_kept(docs):
    deployments = objects(docs, "Deployment")
    for name in ("pareto-gateway", "pareto-worker"):
        env = {e["name"]: e for e in containers(deployments[name])[0].get("env", [])}
        assert env["PARETO_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "pareto-database"
    (pvc,) = objects(docs, "PersistentVolumeClaim").values()
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
