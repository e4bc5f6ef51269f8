"""A training step on more than one process: the same ``qrewrite sft``/``grpo`` under torchrun in a
Kubeflow Trainer ``TrainJob``, launched from the step's own pod.

The workers cannot see the step pod's files (its input artifacts are local to it), so the step
stages its inputs and the resolved preset on the workspace volume (``/workspace/trainjobs/...``),
the workers read them there and write the model folder beside them, and the step copies that
folder to its output when the job has completed. The workers run where and as the step runs:
its image, its MLflow settings (the ConfigMap and Secret references, never their values), the
workspace volume, its security context, its GPU node selection and tolerations, and its CPU and
memory per node, with one GPU per process on GPU nodes. Their MLflow run nests under the
pipeline's run (``$QREWRITE_PARENT_RUN_ID``) as the step's own would.

The staging folder is removed when the job has completed; after a failure it keeps the
checkpoints, and the step's retry (same inputs, same folder) resumes from them.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from qrewrite.cluster.trainjob import (
    GPU_RESOURCE,
    ClusterApi,
    TrainJobResult,
    TrainJobSpec,
    api_error,
    render_trainjob,
    run_trainjob,
    say,
)
from qrewrite.config import resolved_preset_text
from qrewrite.errors import EnvironmentProblem
from qrewrite.tracking import PARENT_RUN_ENV
from qrewrite.training.distributed import check_distributed

WORKSPACE = "/workspace"  # where a step's pod mounts the workspace volume (platform.py)
STAGING = "trainjobs"  # the steps' staging folders, under the workspace
STEP_CONTAINER = "main"  # the container of a KFP step's pod that runs the component
SHM = "/dev/shm"  # a memory-backed /dev/shm for NCCL and the data loaders, when the step has one
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# the controller stops a job this long after its timeout, should the step's pod be gone
DEADLINE_MARGIN_S = 300
LABEL_VALUE = re.compile(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?")


class ClusterStepConfig(Protocol):
    """What :func:`train_on_cluster` needs of a step's config: SFT's and GRPO's."""

    nodes: int
    processes_per_node: int
    distributed: str
    trainjob_timeout_s: int
    trainjob_runtime: str

    def process_count(self) -> int: ...

    def check(self) -> None: ...


@dataclass(frozen=True)
class StepPod:
    """What the workers take from the step's own pod (read through the API)."""

    name: str
    uid: str
    workspace: str  # where the step mounts the workspace volume; the workers mount it there too
    namespace: str
    image: str
    env: tuple[dict[str, Any], ...]  # ConfigMap and Secret references only: never a value
    resources: dict[str, dict[str, str]]  # CPU and memory requests and limits
    volumes: tuple[dict[str, Any], ...]  # the workspace volume (and a memory-backed /dev/shm)
    volume_mounts: tuple[dict[str, Any], ...]
    pod_security_context: dict[str, Any] | None
    container_security_context: dict[str, Any] | None
    node_selector: dict[str, str]
    tolerations: tuple[dict[str, Any], ...]
    image_pull_secrets: tuple[dict[str, Any], ...]
    on_gpu_nodes: bool  # the step asks for GPUs or tolerates GPU nodes (the gpu profile)

    @classmethod
    def from_pod(cls, pod: Mapping[str, Any]) -> StepPod:
        meta, spec = pod["metadata"], pod["spec"]
        containers = spec.get("containers") or []
        main = next((c for c in containers if c.get("name") == STEP_CONTAINER), None)
        main = main or (containers[0] if containers else {})
        # the workspace is the step's volume claim: at /workspace, or the only one it mounts
        claims = {v["name"] for v in spec.get("volumes") or [] if v.get("persistentVolumeClaim")}
        mounted = [m for m in main.get("volumeMounts") or [] if m.get("name") in claims]
        at_home = [m for m in mounted if m.get("mountPath") == WORKSPACE]
        if not (at_home or len(mounted) == 1):
            raise EnvironmentProblem(
                f"pod {meta['name']} mounts {len(mounted)} volume claims, none at {WORKSPACE}: "
                "the workers read the step's inputs and write its model on the workspace volume"
            )
        workspace = (at_home or mounted)[0]
        shm = [m for m in main.get("volumeMounts") or [] if m.get("mountPath") == SHM]
        mounts = [workspace, *shm]
        names = {m["name"] for m in mounts}
        refs = ("configMapKeyRef", "secretKeyRef")
        env = tuple(
            e for e in main.get("env") or [] if any(r in (e.get("valueFrom") or {}) for r in refs)
        )
        raw = main.get("resources") or {}
        resources = {
            kind: {k: str(v) for k, v in (raw.get(kind) or {}).items() if k in ("cpu", "memory")}
            for kind in ("requests", "limits")
        }
        tolerations = tuple(spec.get("tolerations") or [])
        gpus = str((raw.get("limits") or {}).get(GPU_RESOURCE, "0"))
        return cls(
            name=meta["name"],
            uid=meta.get("uid", ""),
            workspace=workspace["mountPath"],
            namespace=meta.get("namespace", ""),
            image=main.get("image", ""),
            env=env,
            resources={k: v for k, v in resources.items() if v},
            volumes=tuple(v for v in spec.get("volumes") or [] if v.get("name") in names),
            volume_mounts=tuple(mounts),
            pod_security_context=spec.get("securityContext") or None,
            container_security_context=main.get("securityContext") or None,
            node_selector=dict(spec.get("nodeSelector") or {}),
            tolerations=tolerations,
            image_pull_secrets=tuple(spec.get("imagePullSecrets") or []),
            on_gpu_nodes=gpus not in ("0", "")
            or any(t.get("key") == GPU_RESOURCE for t in tolerations),
        )


def current_namespace() -> str:
    """The namespace this step runs in: ``$NAMESPACE`` (KFP's launcher sets it), the service
    account's, the kubeconfig context's, else ``default``."""
    if os.environ.get("NAMESPACE"):
        return os.environ["NAMESPACE"]
    if SERVICE_ACCOUNT_NAMESPACE.is_file():
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip()
    try:
        from kubernetes import config

        _, context = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG"))
        return (context or {}).get("context", {}).get("namespace") or "default"
    except Exception:
        return "default"


def own_pod_name() -> str:
    """This step's pod: ``$KFP_POD_NAME`` (set by KFP in every step), else the host name."""
    name = os.environ.get("KFP_POD_NAME") or os.environ.get("HOSTNAME")
    if not name:
        raise EnvironmentProblem("cannot tell this step's pod: neither $KFP_POD_NAME nor $HOSTNAME")
    return name


@dataclass(frozen=True)
class ClusterRun:
    """A step trained by a TrainJob: the step's report (``<step>_report.json``, what the
    in-pod call returns as its result) and the job."""

    report: dict[str, Any]
    job: TrainJobResult


def worker_command(
    step: str,
    *,
    preset_file: str,
    overrides: Sequence[str],
    inputs: Mapping[str, str],
    out_dir: str,
) -> list[str]:
    """The step's CLI entry point under torchrun (which reads the node count, rank and master
    address the runtime puts in ``$PET_*``)."""
    command = ["torchrun", "-m", "qrewrite.cli", step, "--config", preset_file]
    for override in overrides:
        command += ["--set", override]
    for flag, path in inputs.items():
        command += [flag, path]
    return [*command, "--out", out_dir, "--no-progress"]


def _stage_inputs(inputs: Mapping[str, str | Path], stage: Path, workspace: Path) -> dict[str, str]:
    """Each input as a path the workers see: as it is when it is on the workspace volume, else a
    copy under ``stage/in``."""
    staged = {}
    for flag, source in inputs.items():
        source = Path(source)
        if source.resolve().is_relative_to(workspace.resolve()):
            staged[flag] = str(source)
            continue
        target = stage / "in" / flag.lstrip("-")
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / source.name)
            target = target / source.name
        staged[flag] = str(target)
    return staged


def train_on_cluster(
    config: ClusterStepConfig,
    *,
    step: str,
    preset: str,
    inputs: Mapping[str, str | Path],
    out_dir: str | Path,
    overrides: Sequence[str] = (),
    parent_run_id: str = "",
    api: ClusterApi | None = None,
    log_sink: Callable[[str], None] = say,
    poll_s: float = 15.0,
) -> ClusterRun:
    """Run ``qrewrite <step>`` on ``config.nodes`` x ``config.processes_per_node`` processes in a
    TrainJob and bring its model folder to ``out_dir``.

    ``preset`` is the pipeline's ``config`` (a shipped preset's name or a whole preset),
    ``overrides`` the step's ``--set`` values, ``inputs`` CLI flag -> path (``--datasets``,
    ``--base-model``, ...). Raises :class:`~qrewrite.cluster.trainjob.TrainJobError` (one
    line) when the job fails, never starts or times out; the job is deleted in every case.
    """
    # a wrong strategy, batch or option fails here, once, before a job takes GPUs, and not in
    # every worker; what needs the workers' machine (CUDA, FlashAttention) they check there
    config.check()
    check_distributed(step, config)
    api = api or ClusterApi.connect()
    namespace = current_namespace()
    name = own_pod_name()
    try:
        pod = StepPod.from_pod(api.read_pod(namespace, name))
    except EnvironmentProblem:
        raise
    except Exception as e:
        raise EnvironmentProblem(
            f"cannot read this step's pod {namespace}/{name} ({api_error(e)}); the workers take "
            "its image and settings, so the runner's Role needs get on pods"
        ) from None
    workspace = Path(pod.workspace)
    key = json.dumps(
        [step, parent_run_id, preset, list(overrides), sorted(map(str, inputs.values()))]
    )
    # the same task (a retry too) stages in the same folder, so it resumes from its checkpoints
    stage = workspace / STAGING / f"{step}-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    stage.mkdir(parents=True, exist_ok=True)
    preset_file = stage / "preset.yaml"
    preset_file.write_text(resolved_preset_text(preset, text=True), encoding="utf-8")
    staged = _stage_inputs(inputs, stage, workspace)
    out = stage / "out"
    report_file = out / f"{step}_report.json"
    report_file.unlink(missing_ok=True)  # an earlier attempt's report is not this job's
    env = [*pod.env, {"name": PARENT_RUN_ENV, "value": parent_run_id}]
    env.append({"name": "PYTHONUNBUFFERED", "value": "1"})  # logs as they are written
    given = {e["name"] for e in env}
    for variable in ("MLFLOW_RUN_ID", "MLFLOW_TRACKING_URI", "MLFLOW_EXPERIMENT_NAME"):
        if os.environ.get(variable) and variable not in given:  # not secrets: where, not who
            env.append({"name": variable, "value": os.environ[variable]})
    labels = {"app.kubernetes.io/part-of": "qrewrite", "app.kubernetes.io/component": step}
    if LABEL_VALUE.fullmatch(parent_run_id):
        labels["qrewrite.io/mlflow-parent-run"] = parent_run_id
    spec = TrainJobSpec(
        name=f"qrewrite-{step}-{secrets.token_hex(4)}",
        namespace=namespace,
        image=pod.image,
        command=worker_command(
            step,
            preset_file=str(preset_file),
            overrides=overrides,
            inputs=staged,
            out_dir=str(out),
        ),
        nodes=config.nodes,
        processes_per_node=config.processes_per_node,
        gpus_per_node=config.processes_per_node if pod.on_gpu_nodes else 0,
        runtime=config.trainjob_runtime,
        env=env,
        resources=pod.resources,
        volumes=pod.volumes,
        volume_mounts=pod.volume_mounts,
        pod_security_context=pod.pod_security_context,
        container_security_context=pod.container_security_context,
        node_selector=pod.node_selector,
        tolerations=pod.tolerations,
        image_pull_secrets=pod.image_pull_secrets,
        labels=labels,
        owner={"apiVersion": "v1", "kind": "Pod", "name": pod.name, "uid": pod.uid}
        if pod.uid
        else None,
        active_deadline_s=int(config.trainjob_timeout_s) + DEADLINE_MARGIN_S,
    )
    log_sink(
        f"{step}: {config.nodes} node(s) x {config.processes_per_node} process(es) "
        f"({config.distributed}) in TrainJob {spec.name}; staging in {stage}"
    )
    try:
        job = run_trainjob(
            api,
            render_trainjob(spec),
            timeout_s=config.trainjob_timeout_s,
            poll_s=poll_s,
            log_sink=log_sink,
        )
    except BaseException:
        log_sink(f"{step}: {stage} keeps the checkpoints; a retry of this step resumes from them")
        raise
    if not report_file.is_file():
        raise EnvironmentProblem(
            f"TrainJob {spec.name} completed but wrote no {report_file.name} in {out}: is the "
            "workspace volume ReadWriteMany, and the same one on every node?"
        )
    report = json.loads(report_file.read_text())
    shutil.copytree(out, out_dir, dirs_exist_ok=True, ignore=shutil.ignore_patterns("checkpoints"))
    shutil.rmtree(stage, ignore_errors=True)
    return ClusterRun(report=report, job=job)
