"""The Kubernetes manifests, checked offline: every overlay renders, validates strictly against the
Kubernetes schemas, lints clean, embeds no credential, runs every container non-root with limits,
and names what the pipeline's helper (pipelines/platform.py) expects."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from qrewrite import __version__
from qrewrite.config import load_config
from qrewrite.training.grpo import GRPOStepConfig
from qrewrite.training.sft import SFTStepConfig
from qrewrite_pipelines.platform import (
    MLFLOW_CONFIG_ENV,
    MLFLOW_CONFIG_MAP,
    MLFLOW_SECRET,
    MLFLOW_SECRET_ENV,
    RUNNER_SERVICE_ACCOUNT,
    WORKSPACE_PVC,
)
from qrewrite_pipelines.query_rewrite import COMPILED

ROOT = Path(__file__).parents[2]
K8S = ROOT / "k8s"
OVERLAYS = ("kind", "production")
# the oldest and the newest Kubernetes minor this project supports
K8S_VERSIONS = ("1.30.0", "1.34.0")
POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job"}


def _renderer() -> list[str]:
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    pytest.skip("neither kubectl nor kustomize is installed: cannot render the overlays")


def _render(path: Path) -> list[dict[str, Any]]:
    done = subprocess.run([*_renderer(), str(path)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{path} does not render: {done.stderr.strip()}"
    return [d for d in yaml.safe_load_all(done.stdout) if d]


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict[str, Any]]]:
    return {overlay: _render(K8S / "overlays" / overlay) for overlay in OVERLAYS}


def _find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def _pod_specs(docs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    return [
        (f"{d['kind']}/{d['metadata']['name']}", d["spec"]["template"]["spec"])
        for d in docs
        if d["kind"] in POD_TEMPLATE_KINDS
    ]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_overlay_renders_the_whole_stack(rendered, overlay: str) -> None:
    kinds = {(d["kind"], d["metadata"]["name"]) for d in rendered[overlay]}
    assert {
        ("Namespace", "mlflow"),
        ("StatefulSet", "postgres"),
        ("StatefulSet", "minio"),
        ("Job", "minio-create-bucket"),
        ("Deployment", "mlflow"),
        ("Service", "mlflow"),
        ("NetworkPolicy", "default-deny-ingress"),
        ("ConfigMap", MLFLOW_CONFIG_MAP),
        ("ServiceAccount", RUNNER_SERVICE_ACCOUNT),
        ("Role", RUNNER_SERVICE_ACCOUNT),
        ("RoleBinding", RUNNER_SERVICE_ACCOUNT),
        ("PersistentVolumeClaim", WORKSPACE_PVC),
    } <= kinds
    for doc in rendered[overlay]:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") in ("mlflow", "kubeflow"), doc["metadata"]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_manifests_validate_strictly(rendered, overlay: str, version: str) -> None:
    import kubernetes_validate

    for doc in rendered[overlay]:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']}: {e.message}")


def test_yaml_lints_clean() -> None:
    from yamllint import config, linter

    conf = config.YamlLintConfig(file=str(ROOT / ".yamllint"))
    files = sorted(K8S.rglob("*.yaml"))
    assert len(files) >= 10
    problems = [
        f"{path.relative_to(ROOT)}:{p.line}: {p.desc}"
        for path in files
        for p in linter.run(path.read_text(), conf, str(path))
    ]
    assert not problems, "\n".join(problems)


def test_no_manifest_or_pipeline_embeds_credentials(rendered) -> None:
    for overlay, docs in rendered.items():
        # Secrets are created by hand (docs/operations.md), never shipped
        assert not [d for d in docs if d["kind"] == "Secret"], overlay
        for where, pod in _pod_specs(docs):
            for c in pod.get("containers", []) + pod.get("initContainers", []):
                for env in c.get("env", []):
                    if re.search(r"(?i)password|secret|token|access_key|user", env["name"]):
                        assert "valueFrom" in env and "value" not in env, f"{where}: {env}"
    texts = {p: p.read_text() for p in [*K8S.rglob("*.yaml"), *K8S.rglob("*.sh"), COMPILED]}
    for path, text in texts.items():
        assert not re.search(r"AKIA[0-9A-Z]{16}", text), path
        assert "BEGIN PRIVATE KEY" not in text, path
        # a connection string with a literal password (variables like ${PGPASSWORD} are fine)
        assert not re.search(r"://[^\s:/@$]+:[^\s@${]+@", text), path
        assert not re.search(r"(?im)^\s*(password|secret_key|access_key)\s*:\s*\S", text), path


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_runs_non_root_with_limits(rendered, overlay: str) -> None:
    pods = _pod_specs(rendered[overlay])
    assert len(pods) == 4
    for where, pod in pods:
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["securityContext"].get("runAsUser", 0) != 0, where
        assert pod.get("automountServiceAccountToken") is False, where  # none calls the API
        for c in pod["containers"] + pod.get("initContainers", []):
            limits = c.get("resources", {}).get("limits", {})
            assert {"cpu", "memory"} <= set(limits), f"{where}/{c['name']}: no limits"
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], where
            if c["name"] != "mc":  # a one-shot Job
                assert "readinessProbe" in c and "livenessProbe" in c, f"{where}/{c['name']}"
    # the tracking server writes nothing outside /tmp
    (mlflow,) = [pod for where, pod in pods if where == "Deployment/mlflow"]
    assert mlflow["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"name": "tmp", "emptyDir": {}} in mlflow["volumes"]


def test_the_names_are_the_ones_the_pipeline_uses(rendered) -> None:
    docs = rendered["kind"]
    config_map = _find(docs, "ConfigMap", MLFLOW_CONFIG_MAP)
    assert set(config_map["data"]) == set(MLFLOW_CONFIG_ENV)
    # the cluster preset and the ConfigMap point at the same tracking server, which serves there
    uri = config_map["data"]["tracking_uri"]
    cluster = ROOT / "configs" / "cluster.yaml"
    for cls, section in ((SFTStepConfig, "sft"), (GRPOStepConfig, "grpo")):
        assert load_config(cls, cluster, section).tracking_uri == uri
    where = re.fullmatch(r"http://([^.]+)\.([^.]+)\.svc\.cluster\.local:(\d+)", uri)
    assert where, uri
    service = _find(docs, "Service", where[1])
    assert service["metadata"]["namespace"] == where[2]
    assert [p["port"] for p in service["spec"]["ports"]] == [int(where[3])]
    binding = _find(docs, "RoleBinding", RUNNER_SERVICE_ACCOUNT)
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": RUNNER_SERVICE_ACCOUNT, "namespace": "kubeflow"}
    ]


def test_the_runner_role_is_least_privilege(rendered) -> None:
    role = _find(rendered["kind"], "Role", RUNNER_SERVICE_ACCOUNT)
    assert role["metadata"]["namespace"] == "kubeflow"
    # what may be written: Argo's task results, and the training steps' TrainJobs (created and
    # deleted, never changed in place)
    allowed = {"workflowtaskresults": {"create", "patch"}, "trainjobs": {"create", "delete"}}
    for rule in role["rules"]:
        assert "*" not in rule["verbs"] and "*" not in rule["resources"], rule
        written = {"create", "delete", "update", "patch"} & set(rule["verbs"])
        assert not written or (
            len(rule["resources"]) == 1 and written <= allowed.get(rule["resources"][0], set())
        ), rule
        if rule["resources"] in (["secrets"], ["configmaps"]):
            assert rule.get("resourceNames") and rule["verbs"] == ["get"], rule
    secrets = next(r for r in role["rules"] if r["resources"] == ["secrets"])
    assert MLFLOW_SECRET in secrets["resourceNames"]
    assert not [d for d in rendered["kind"] if d["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_the_stores_accept_only_the_tracking_server(rendered) -> None:
    docs = rendered["kind"]
    deny = _find(docs, "NetworkPolicy", "default-deny-ingress")
    assert deny["spec"]["podSelector"] == {} and "ingress" not in deny["spec"]
    for name, store in (("postgres-from-mlflow", "postgres"), ("minio-from-mlflow", "minio")):
        policy = _find(docs, "NetworkPolicy", name)
        assert policy["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": store}
        sources = [f["podSelector"]["matchLabels"] for f in policy["spec"]["ingress"][0]["from"]]
        assert {"app.kubernetes.io/name": "mlflow"} in sources
        assert all("namespaceSelector" not in f for f in policy["spec"]["ingress"][0]["from"])


def test_the_overlays_differ_where_they_should(rendered) -> None:
    kind, prod = rendered["kind"], rendered["production"]
    assert _find(prod, "Deployment", "mlflow")["spec"]["replicas"] >= 2
    assert _find(prod, "PodDisruptionBudget", "mlflow")["spec"]["minAvailable"] == 1
    assert _find(prod, "PersistentVolumeClaim", WORKSPACE_PVC)["spec"]["accessModes"] == [
        "ReadWriteMany"
    ]
    small = _find(kind, "StatefulSet", "postgres")["spec"]["volumeClaimTemplates"][0]
    big = _find(prod, "StatefulSet", "postgres")["spec"]["volumeClaimTemplates"][0]
    assert small["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert big["spec"]["storageClassName"] and "storageClassName" not in small["spec"]


def test_project_images_carry_the_package_version(rendered) -> None:
    for overlay, docs in rendered.items():
        for where, pod in _pod_specs(docs):
            for c in pod["containers"]:
                if c["image"].startswith("ghcr.io/qrewrite/"):
                    assert c["image"].endswith(f":{__version__}"), f"{overlay} {where}"
                else:  # third-party images are pinned, never :latest
                    assert re.search(r":[\w.-]+$", c["image"]) and ":latest" not in c["image"]


def test_the_kfp_install_is_pinned_to_the_sdk_minor() -> None:
    import kfp

    minor = ".".join(kfp.__version__.split(".")[:2])
    refs = []
    for step in ("cluster-scoped", "platform-agnostic"):
        kustomization = yaml.safe_load((K8S / "kfp" / step / "kustomization.yaml").read_text())
        refs += [r for r in kustomization["resources"] if "kubeflow/pipelines" in r]
    assert len(refs) == 2
    for ref in refs:
        assert re.search(rf"\?ref={re.escape(minor)}\.\d+$", ref), ref
    assert refs[1].split("/manifests/kustomize/")[1].startswith("env/platform-agnostic")


def test_every_secret_the_stack_reads_is_documented(rendered) -> None:
    """Each Secret name and key the manifests and the pipeline read has a creation command."""
    wanted = {(MLFLOW_SECRET, key) for key in MLFLOW_SECRET_ENV}
    for _, pod in _pod_specs(rendered["kind"]):
        for c in pod["containers"]:
            for env in c.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    wanted.add((ref["name"], ref["key"]))
    assert {name for name, _ in wanted} == {MLFLOW_SECRET, "mlflow-postgres", "mlflow-minio"}
    docs = (ROOT / "docs" / "operations.md").read_text()
    e2e = (K8S / "kind" / "e2e.sh").read_text()
    # a command and its continuation lines: docs run kubectl, the e2e its create_secret helper
    for text, where, verb in (
        (docs, "docs/operations.md", r"kubectl[^\n]*create secret generic"),
        (e2e, "k8s/kind/e2e.sh", r"create_secret \S+"),
    ):
        for name, key in sorted(wanted):
            command = re.search(rf"{verb} {name}\b(.*\\\n)*.*", text)
            assert command, f"{where}: no command creating Secret {name}"
            assert f"--from-literal={key}=" in command.group(0), f"{where}: {name} lacks {key}"


def test_the_gpu_node_setup_matches_what_training_steps_select_and_tolerate() -> None:
    from qrewrite_pipelines.platform import GPU_NODE_LABEL, GPU_RESOURCE

    docs = (ROOT / "docs" / "operations.md").read_text()
    key, value = GPU_NODE_LABEL
    assert f"kubectl label node NODE {key}={value}" in docs
    # the steps tolerate key GPU_RESOURCE with operator Exists, effect NoSchedule
    assert re.search(rf"kubectl taint node NODE {re.escape(GPU_RESOURCE)}=\S*:NoSchedule", docs)


def test_the_serving_manifest_serves_the_champion_from_the_runtime_image() -> None:
    """k8s/serving (KServe, outside the overlays): the champion through MLflow's scoring server
    in the runtime image, non-root with limits, MLflow reached by the pipeline's names; its pod
    spec validates strictly as a Kubernetes PodSpec."""
    import kubernetes_validate

    from qrewrite_components.images import RUNTIME_IMAGE

    (service,) = _render(K8S / "serving")
    assert service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["kind"] == "InferenceService"
    predictor = service["spec"]["predictor"]
    (container,) = predictor["containers"]
    assert container["image"] == RUNTIME_IMAGE
    command = container["command"] + container["args"]
    assert command[:3] == ["mlflow", "models", "serve"]
    assert command[command.index("-m") + 1] == "models:/query-rewriter@champion"
    assert command[command.index("--env-manager") + 1] == "local"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ping"
    env = {e["name"]: e.get("valueFrom", {}) for e in container["env"]}
    for key, name in MLFLOW_CONFIG_ENV.items():
        assert env[name]["configMapKeyRef"] == {"name": MLFLOW_CONFIG_MAP, "key": key}
    for key, name in MLFLOW_SECRET_ENV.items():
        assert env[name]["secretKeyRef"] == {"name": MLFLOW_SECRET, "key": key}
    assert predictor["securityContext"]["runAsNonRoot"] is True
    assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    pod_spec = {k: v for k, v in predictor.items() if k not in ("minReplicas", "maxReplicas")}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": pod_spec}
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(pod, version, strict=True)
