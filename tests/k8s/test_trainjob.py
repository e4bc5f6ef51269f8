"""The training steps' Kubeflow Trainer TrainJobs, without a cluster (qrewrite.cluster):

- the job a step would create validates against the pinned v2.3.0 TrainJob CRD's schema (read
  from ``../shared/vendor/kubeflow-trainer-v2.3.0``; skipped where it is absent), with no field
  the API server would silently drop, and names a runtime that release ships;
- create, wait, stream logs and delete run against a fake Kubernetes API (tests/k8s/
  fake_kubernetes.py, through the official client): a job that completes, a worker that
  crashes, a job that never starts (image pull, no node for it), a timeout, a refused create,
  an interrupted or SIGTERMed wait, an API that stops answering. Each failure is one line with
  its cause, comes within the timeout, and leaves no job behind;
- the runner's Role allows exactly the calls the launcher makes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from qrewrite.cli.main import build_parser
from qrewrite.cluster.launch import StepPod, train_on_cluster
from qrewrite.cluster.trainjob import (
    GPU_RESOURCE,
    TRAINER_CONTAINER,
    TRAINER_JOB,
    TrainJobError,
    TrainJobFailed,
    TrainJobNeverStarted,
    TrainJobSpec,
    TrainJobTimeout,
    render_trainjob,
    run_trainjob,
)
from qrewrite.config import config_from_preset_text
from qrewrite.errors import ConfigError
from qrewrite.training.sft import SFTStepConfig
from qrewrite_pipelines.platform import RUNNER_SERVICE_ACCOUNT
from tests.k8s.fake_kubernetes import FakeCluster, launcher_pod

ROOT = Path(__file__).parents[2]
VENDOR = ROOT.parent / "shared" / "vendor" / "kubeflow-trainer-v2.3.0"
PARENT = "0123456789abcdef0123456789abcdef"  # an MLflow run id


def _vendored(name: str) -> list[dict[str, Any]]:
    path = VENDOR / name
    if not path.is_file():
        pytest.skip(f"{path} is absent: the pinned Trainer CRDs and runtimes are not vendored here")
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


@pytest.fixture(scope="module")
def trainjob_schema() -> dict[str, Any]:
    (crd,) = _vendored("trainer.kubeflow.org_trainjobs.yaml")
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    return version["schema"]["openAPIV3Schema"]


@pytest.fixture(scope="module")
def runtimes() -> dict[str, dict[str, Any]]:
    docs = _vendored("torch_distributed.yaml") + _vendored("deepspeed_distributed.yaml")
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "ClusterTrainingRuntime"}


def _unknown_fields(obj: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Fields of ``obj`` the schema does not declare: the API server prunes them silently, so a
    misspelt field (``numProcsPerNode``) would vanish instead of failing."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    if isinstance(obj, dict):
        props, extra = schema.get("properties"), schema.get("additionalProperties")
        out = []
        for key, value in obj.items():
            if props and key in props:
                out += _unknown_fields(value, props[key], f"{path}.{key}")
            elif isinstance(extra, dict):
                out += _unknown_fields(value, extra, f"{path}.{key}")
            elif props:
                out.append(f"{path}.{key}")
        return out
    if isinstance(obj, list) and isinstance(schema.get("items"), dict):
        return [
            u
            for i, v in enumerate(obj)
            for u in _unknown_fields(v, schema["items"], f"{path}[{i}]")
        ]
    return []


def _check_against_crd(job: dict[str, Any], schema: dict[str, Any]) -> None:
    import jsonschema

    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(job), key=str)
    assert not errors, "; ".join(f"{list(e.path)}: {e.message}" for e in errors[:5])
    assert not _unknown_fields(job, schema)
    # the CRD's CEL rules on the name (x-kubernetes-validations), which jsonschema cannot run
    import re

    name = job["metadata"]["name"]
    assert re.fullmatch(r"[a-z]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 63


# --- the job a step creates ------------------------------------------------------------------


def _complete(step: str, report: dict[str, Any]) -> Any:
    """A script: the workers write the step's report into the job's ``--out`` and finish."""

    def script(cluster: FakeCluster, name: str, poll: int) -> None:
        command = cluster.trainjobs[name]["spec"]["trainer"]["command"]
        out = Path(command[command.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{step}_report.json").write_text(json.dumps(report))
        (out / "model.safetensors").write_text("weights")
        pod = cluster.add_pod(name, 0, phase="Succeeded", terminated=(0, "Completed"))
        cluster.log(pod, f"{step}: done")
        cluster.condition(name, "Complete", "JobSetCompleted", "jobset completed")

    return script


def _launch(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cluster: FakeCluster,
    sft: dict[str, Any],
    *,
    gpus: int = 0,
) -> tuple[dict[str, Any], Any]:
    """``sft`` launched as the component launches it; the TrainJob it created and the run."""
    workspace = tmp_path / "workspace"
    cluster.add_launcher_pod(launcher_pod("step-pod", workspace=str(workspace), gpus=gpus))
    monkeypatch.setenv("KFP_POD_NAME", "step-pod")
    monkeypatch.setenv("NAMESPACE", cluster.namespace)
    preset = yaml.safe_dump({"sft": {"base_model": "/workspace/models/qwen", **sft}})
    config = config_from_preset_text(SFTStepConfig, preset, "sft")
    datasets = tmp_path / "artifacts" / "datasets"
    (datasets / "sft").mkdir(parents=True, exist_ok=True)
    (datasets / "sft" / "data.arrow").write_text("rows")
    cluster.script = _complete("sft", {"steps": 3})
    run = train_on_cluster(
        config,
        step="sft",
        preset=preset,
        overrides=["tasks=rewrite,tag"],
        inputs={"--datasets": str(datasets), "--base-model": str(workspace / "models" / "qwen")},
        out_dir=tmp_path / "model",
        parent_run_id=PARENT,
        api=cluster.api(),
        log_sink=lambda line: None,
        poll_s=0.01,
    )
    (created,) = cluster.created
    return created, run


PRESETS = {
    "1 node x 2 CPU processes, ddp (kind)": ({"processes_per_node": 2, "distributed": "ddp"}, 0),
    "2 nodes x 4 GPUs, ddp": ({"nodes": 2, "processes_per_node": 4, "distributed": "ddp"}, 1),
    "1 node x 8 GPUs, fsdp": ({"processes_per_node": 8, "distributed": "fsdp"}, 1),
    "2 nodes x 8 GPUs, deepspeed-zero3": (
        {"nodes": 2, "processes_per_node": 8, "distributed": "deepspeed-zero3"},
        1,
    ),
}


@pytest.mark.parametrize("preset", PRESETS)
def test_the_job_a_step_creates_validates_against_the_pinned_crd(
    preset: str, trainjob_schema, runtimes, tmp_path, monkeypatch
) -> None:
    sft, gpus = PRESETS[preset]
    if sft["distributed"].startswith("deepspeed"):  # not in this environment; in the image
        import importlib.util

        real = importlib.util.find_spec
        monkeypatch.setattr(
            importlib.util, "find_spec", lambda n, *a: object() if n == "deepspeed" else real(n, *a)
        )
    with FakeCluster() as cluster:
        job, run = _launch(tmp_path, monkeypatch, cluster, sft, gpus=gpus)
        assert cluster.deleted == [job["metadata"]["name"]] and not cluster.trainjobs
    _check_against_crd(job, trainjob_schema)
    spec = job["spec"]
    # a runtime of the pinned release, whose trainer runs in the job and container we patch
    runtime = runtimes[spec["runtimeRef"]["name"]]
    assert spec["runtimeRef"]["kind"] == runtime["kind"] == "ClusterTrainingRuntime"
    (node,) = [
        j for j in runtime["spec"]["template"]["spec"]["replicatedJobs"] if j["name"] == TRAINER_JOB
    ]
    pod = node["template"]["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == [TRAINER_CONTAINER]
    assert (
        node["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"]
        == "trainer"
    )
    trainer = spec["trainer"]
    assert trainer["numNodes"] == sft.get("nodes", 1)
    assert trainer["numProcPerNode"] == sft["processes_per_node"]
    limits = trainer["resourcesPerNode"]["limits"]
    assert limits.get(GPU_RESOURCE) == (str(sft["processes_per_node"]) if gpus else None)
    assert {"cpu", "memory"} <= set(limits)
    # the workers run the step's entry point under torchrun, on the staged inputs
    command = trainer["command"]
    assert command[:4] == ["torchrun", "-m", "qrewrite.cli", "sft"]
    args = build_parser().parse_args(command[3:])
    workspace = tmp_path / "workspace"
    assert Path(args.config).parent.parent == workspace / "trainjobs"
    assert args.overrides == ["tasks=rewrite,tag"] and args.no_progress
    assert Path(args.datasets).is_relative_to(workspace)  # copied from the artifact
    assert args.base_model == str(workspace / "models" / "qwen")  # already there: not copied
    # the MLflow parent run and settings by reference; nothing secret, nothing else copied
    env = {e["name"]: e for e in trainer["env"]}
    assert env["QREWRITE_PARENT_RUN_ID"]["value"] == PARENT
    assert env["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    assert "value" not in env["MLFLOW_TRACKING_PASSWORD"] and "SOME_PLAIN_SETTING" not in env
    # the workspace claim and the step's security context on every worker
    (patch,) = spec["runtimePatches"]
    (replicated,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    worker = replicated["template"]["spec"]["template"]["spec"]
    assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "qrewrite-workspace"}} in (
        worker["volumes"]
    )
    assert worker["containers"][0]["volumeMounts"][0]["mountPath"] == str(workspace)
    assert worker["securityContext"]["runAsNonRoot"] is True
    assert ("tolerations" in worker) == bool(gpus) == ("nodeSelector" in worker)
    # nothing outlives the step: owned by its pod, stopped by the controller after the timeout
    (owner,) = job["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"]) == ("Pod", "step-pod")
    assert spec["activeDeadlineSeconds"] > 86400
    # the model folder came back; the staging folder is gone
    assert run.report == {"steps": 3} and (tmp_path / "model" / "model.safetensors").is_file()
    assert not list((workspace / "trainjobs").iterdir())


def test_the_schema_check_catches_a_misspelt_field_and_a_wrong_type(trainjob_schema) -> None:
    job = _job()
    _check_against_crd(job, trainjob_schema)
    job["spec"]["trainer"]["numProcsPerNode"] = 2  # pruned silently by the API server
    assert _unknown_fields(job, trainjob_schema) == [".spec.trainer.numProcsPerNode"]
    job = _job()
    job["spec"]["trainer"]["numNodes"] = "2"
    with pytest.raises(AssertionError, match="numNodes"):
        _check_against_crd(job, trainjob_schema)


def test_render_refuses_what_the_trainer_would() -> None:
    base = {"name": "qrewrite-sft-1", "namespace": "kubeflow", "image": "x", "command": ["true"]}
    assert render_trainjob(TrainJobSpec(**base))["spec"]["trainer"]["numNodes"] == 1
    with pytest.raises(ValueError, match="RFC 1035"):
        render_trainjob(TrainJobSpec(**{**base, "name": "Qrewrite_SFT"}))
    with pytest.raises(ValueError, match="PET_NNODES"):
        render_trainjob(TrainJobSpec(**base, env=[{"name": "PET_NNODES", "value": "2"}]))


def test_a_preset_that_cannot_run_distributed_fails_before_anything_is_created(
    tmp_path, monkeypatch
) -> None:
    with FakeCluster() as cluster:
        for sft, message in (
            ({"processes_per_node": 2}, "need a strategy"),
            ({"processes_per_node": 2, "distributed": "zero9"}, "expected one of"),
            ({"processes_per_node": 2, "distributed": "deepspeed-zero2"}, "needs the deepspeed"),
            # the step's own config checks, not only the strategy's
            ({"processes_per_node": 2, "distributed": "ddp", "padding_free": True}, "packing"),
            ({"processes_per_node": 2, "distributed": "ddp", "attn_implementation": "x"}, "x'"),
        ):
            with pytest.raises(ConfigError, match=message):
                _launch(tmp_path, monkeypatch, cluster, sft)
        assert not cluster.created


def test_what_needs_the_workers_gpus_is_left_to_the_workers(tmp_path, monkeypatch) -> None:
    """FlashAttention needs CUDA, which the launcher's pod need not have: the job is created
    (the workers check it on their GPUs)."""
    with FakeCluster() as cluster:
        sft = {"processes_per_node": 2, "distributed": "ddp"}
        created, run = _launch(
            tmp_path, monkeypatch, cluster, {**sft, "attn_implementation": "flash_attention_2"}
        )
        assert created["metadata"]["name"].startswith("qrewrite-sft-")
        assert run.report == {"steps": 3}


def test_the_step_pod_gives_the_workers_references_never_values() -> None:
    pod = StepPod.from_pod(launcher_pod(gpus=2))
    assert pod.workspace == "/workspace" and pod.on_gpu_nodes
    assert [m["mountPath"] for m in pod.volume_mounts] == ["/workspace", "/dev/shm"]
    assert {e["name"] for e in pod.env} == {"MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_PASSWORD"}
    assert all("value" not in e for e in pod.env)
    assert pod.resources["limits"] == {"cpu": "8", "memory": "64G"}  # GPUs: one per process
    assert not StepPod.from_pod(launcher_pod(gpus=0)).on_gpu_nodes


# --- create, wait, fail, time out, clean up -----------------------------------------------------


def _job(name: str = "qrewrite-sft-test") -> dict[str, Any]:
    spec = TrainJobSpec(
        name=name,
        namespace="kubeflow",
        image="ghcr.io/qrewrite/qrewrite-training:0.1.0",
        command=["torchrun", "-m", "qrewrite.cli", "sft"],
        processes_per_node=2,
    )
    return render_trainjob(spec)


def _run(cluster: FakeCluster, *, timeout_s: float = 10.0, **kwargs: Any) -> tuple[Any, list[str]]:
    lines: list[str] = []
    kwargs.setdefault("poll_s", 0.02)
    result = run_trainjob(
        cluster.api(), _job(), timeout_s=timeout_s, log_sink=lines.append, **kwargs
    )
    return result, lines


def _fails(cluster: FakeCluster, error: type[TrainJobError], **kwargs: Any) -> tuple[str, float]:
    """The one-line message of the failure, and how long it took; the job is gone."""
    t0 = time.monotonic()
    with pytest.raises(error) as caught:
        _run(cluster, **kwargs)
    seconds = time.monotonic() - t0
    message = str(caught.value)
    assert "\n" not in message and message.startswith("trainjob qrewrite-sft-test: ")
    assert len(message) <= 400
    assert cluster.deleted == ["qrewrite-sft-test"] and not cluster.trainjobs
    return message, seconds


def test_a_job_that_completes_streams_each_log_line_once_and_is_deleted() -> None:
    def script(cluster: FakeCluster, name: str, poll: int) -> None:
        if poll == 0:
            cluster.add_pod(name, 0, phase="Pending", waiting=("ContainerCreating", ""))
            cluster.add_pod(name, 1, phase="Pending", waiting=("ContainerCreating", ""))
        elif poll == 1:
            for index in (0, 1):
                pod = cluster.add_pod(name, index)
                cluster.log(pod, f"rank {index}: step 1 loss 6.2", f"rank {index}: step 2 loss 6.1")
        elif poll == 2:
            cluster.log(f"{name}-node-0-0-abcde", "rank 0: step 3 loss 5.9")
        else:
            for index in (0, 1):
                cluster.add_pod(name, index, phase="Succeeded", terminated=(0, "Completed"))
            cluster.log(f"{name}-node-0-0-abcde", "sft: 3 steps")
            cluster.condition(name, "Complete", "JobSetCompleted", "jobset completed")

    with FakeCluster() as cluster:
        cluster.script = script
        result, lines = _run(cluster)
        assert cluster.deleted == [result.name] and not cluster.trainjobs and not cluster.pods
    streamed = [line for line in lines if line.startswith("[node")]
    assert streamed == [
        "[node 0] rank 0: step 1 loss 6.2",
        "[node 0] rank 0: step 2 loss 6.1",
        "[node 1] rank 1: step 1 loss 6.2",
        "[node 1] rank 1: step 2 loss 6.1",
        "[node 0] rank 0: step 3 loss 5.9",
        "[node 0] sft: 3 steps",
    ]
    assert result.log_lines == 6 and len(result.pods) == 2
    assert lines[-1] == "trainjob qrewrite-sft-test: deleted"


def test_a_worker_that_crashes_fails_the_step_with_its_last_words() -> None:
    def script(cluster: FakeCluster, name: str, poll: int) -> None:
        pod = f"{name}-node-0-1-abcde"
        if poll == 0:
            cluster.add_pod(name, 0)
            cluster.add_pod(name, 1)
            cluster.log(pod, "Traceback (most recent call last):", "ValueError: boom in the data")
        elif poll == 1:
            cluster.add_pod(name, 1, phase="Failed", terminated=(1, "Error"))
            cluster.condition(
                name, "Failed", "FailedJobs", "jobset failed: job node-0 has failed\nbackoff"
            )

    with FakeCluster() as cluster:
        cluster.script = script
        message, _ = _fails(cluster, TrainJobFailed)
    assert "failed (FailedJobs: jobset failed: job node-0 has failed backoff)" in message
    assert "exited 1 (Error): ValueError: boom in the data" in message


def test_a_worker_in_crash_loop_fails_without_waiting_for_the_job() -> None:
    def script(cluster: FakeCluster, name: str, poll: int) -> None:
        cluster.add_pod(name, 0, waiting=("CrashLoopBackOff", "back-off 40s restarting"))

    with FakeCluster() as cluster:
        cluster.script = script
        message, _ = _fails(cluster, TrainJobFailed)
    assert "keeps crashing" in message


def test_an_image_that_cannot_be_pulled_fails_at_once() -> None:
    def script(cluster: FakeCluster, name: str, poll: int) -> None:
        reason = "ErrImagePull" if poll == 0 else "ImagePullBackOff"  # a retry first
        cluster.add_pod(
            name, 0, phase="Pending", waiting=(reason, 'Back-off pulling image "ghcr.io/x:9"')
        )

    with FakeCluster() as cluster:
        cluster.script = script
        message, seconds = _fails(cluster, TrainJobNeverStarted, timeout_s=30)
        assert cluster.polls["qrewrite-sft-test"] == 2  # not on the first, retried, error
    assert 'cannot start: ImagePullBackOff: Back-off pulling image "ghcr.io/x:9"' in message
    assert seconds < 5


def test_a_job_no_node_can_take_fails_after_the_grace_not_the_timeout() -> None:
    def script(cluster: FakeCluster, name: str, poll: int) -> None:
        cluster.add_pod(
            name,
            0,
            phase="Pending",
            unschedulable="0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        )

    with FakeCluster() as cluster:
        cluster.script = script
        message, seconds = _fails(cluster, TrainJobNeverStarted, timeout_s=30, unschedulable_s=0.3)
    assert "unschedulable for" in message and "3 Insufficient nvidia.com/gpu." in message
    assert 0.3 <= seconds < 5


def test_a_job_that_does_not_finish_times_out_within_its_timeout() -> None:
    def script(cluster: FakeCluster, name: str, poll: int) -> None:
        cluster.add_pod(name, 0)

    with FakeCluster() as cluster:
        cluster.script = script
        message, seconds = _fails(cluster, TrainJobTimeout, timeout_s=0.5, poll_s=0.2)
    assert "not finished after 0.5 s (1 Running)" in message and "trainjob_timeout_s" in message
    assert 0.5 <= seconds < 2


def test_a_refused_job_is_one_line_and_nothing_is_left_to_delete() -> None:
    with FakeCluster() as cluster:
        cluster.refuse = (
            403,
            "Forbidden",
            'trainjobs.trainer.kubeflow.org is forbidden: User "system:serviceaccount:kubeflow:'
            'qrewrite-pipeline-runner" cannot create resource "trainjobs"',
        )
        with pytest.raises(TrainJobFailed) as caught:
            _run(cluster)
        assert not cluster.deleted and not cluster.trainjobs
    message = str(caught.value)
    assert "\n" not in message
    assert "could not be created: 403 Forbidden: trainjobs.trainer.kubeflow.org is forbidden" in (
        message
    )


def test_an_interrupted_wait_still_deletes_the_job() -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    with FakeCluster() as cluster:
        cluster.script = lambda c, name, poll: c.add_pod(name, 0)
        with pytest.raises(KeyboardInterrupt):
            _run(cluster, sleep=interrupt)
        assert cluster.deleted == ["qrewrite-sft-test"] and not cluster.trainjobs


def test_sigterm_while_waiting_deletes_the_job_before_the_step_ends() -> None:
    """Kubernetes stops a step's pod (a terminated run) with SIGTERM."""
    import os
    import signal

    def terminated(seconds: float) -> None:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)  # the handler raises during this

    with FakeCluster() as cluster:
        cluster.script = lambda c, name, poll: c.add_pod(name, 0)
        with pytest.raises(SystemExit) as caught:
            _run(cluster, sleep=terminated)
        assert caught.value.code == 128 + signal.SIGTERM
        assert cluster.deleted == ["qrewrite-sft-test"] and not cluster.trainjobs
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back


def test_an_api_that_does_not_answer_for_a_while_is_polled_again() -> None:
    def script(cluster: FakeCluster, name: str, poll: int) -> None:
        if poll == 1:
            cluster.condition(name, "Complete", "JobSetCompleted")
        else:
            cluster.unavailable = 3  # the next three polls: 503

    with FakeCluster() as cluster:
        cluster.script = script
        result, lines = _run(cluster)
        assert cluster.deleted == [result.name]
    assert sum("the API did not answer (503 Service Unavailable" in line for line in lines) == 3
    with FakeCluster() as cluster:
        cluster.script = lambda c, name, poll: setattr(c, "unavailable", 100)
        message, _ = _fails(cluster, TrainJobError)
    assert "cannot follow it: 503 Service Unavailable: the API server is restarting" in message


# --- RBAC: what the launcher calls is what the runner may do ------------------------------------


def _verb(method: str, path: str) -> tuple[str, str, str]:
    """(apiGroup, resource, verb) of one request (namespaced paths only)."""
    parts = path.strip("/").split("/")
    group, rest = ("", parts[2:]) if parts[0] == "api" else (parts[1], parts[3:])
    resource, name, sub = rest[2], rest[3] if len(rest) > 3 else None, rest[4:]
    verb = {"POST": "create", "DELETE": "delete"}.get(method, "get" if name else "list")
    return group, "/".join([resource, *sub]), verb


def test_the_runner_may_make_every_call_the_launcher_makes(tmp_path, monkeypatch) -> None:
    with FakeCluster() as cluster:
        _launch(tmp_path, monkeypatch, cluster, {"processes_per_node": 2, "distributed": "ddp"})
        calls = {_verb(m, p) for m, p in cluster.requests}
    docs = yaml.safe_load_all((ROOT / "k8s" / "base" / "pipeline" / "rbac.yaml").read_text())
    (role,) = [
        d for d in docs if d["kind"] == "Role" and d["metadata"]["name"] == RUNNER_SERVICE_ACCOUNT
    ]
    granted = {
        (group, resource, verb)
        for rule in role["rules"]
        if not rule.get("resourceNames")
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
    assert calls == {
        ("", "pods", "get"),
        ("", "pods", "list"),
        ("", "pods/log", "get"),
        ("trainer.kubeflow.org", "trainjobs", "create"),
        ("trainer.kubeflow.org", "trainjobs", "get"),
        ("trainer.kubeflow.org", "trainjobs", "delete"),
    }
    assert calls <= granted, calls - granted
