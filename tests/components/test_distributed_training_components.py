"""The training components' TrainJob branch, called directly: a preset asking for two processes
makes ``sft_multitask`` and ``grpo_align`` launch a Kubeflow Trainer TrainJob through the fake
Kubernetes API (tests/k8s/fake_kubernetes.py; the component finds it through ``$KUBECONFIG``, as
it finds the cluster through its service account). The fake's workers run the job's command,
the real CLI entry point, in this process on the staged inputs (one process: the two-process
path is tests/training/test_distributed_sft.py); the component then files the model the job
wrote, its figures and its MLflow run as the in-pod path does, and the job is gone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kfp.dsl import Dataset, Markdown, Metrics, Model

from qrewrite.cli import main
from qrewrite.cluster.trainjob import TrainJobFailed
from qrewrite.training.models import load_model
from qrewrite_components import grpo_align, sft_multitask
from tests.components.helpers import artifact, artifact_paths, child_runs, preset
from tests.components.test_training_components import GRPO, SFT
from tests.k8s.fake_kubernetes import FakeCluster, launcher_pod

TWO = {"processes_per_node": 2, "distributed": "ddp"}


def _workers(cluster: FakeCluster, name: str, poll: int) -> None:
    """The job's workers: its command (under torchrun on a cluster) run here, once."""
    if poll:
        return
    trainer = cluster.trainjobs[name]["spec"]["trainer"]
    command = trainer["command"]
    assert command[:3] == ["torchrun", "-m", "qrewrite.cli"]
    code = main(command[3:])
    pod = cluster.add_pod(
        name, 0, phase="Succeeded" if code == 0 else "Failed", terminated=(code, "Completed")
    )
    cluster.log(pod, f"exit {code}")
    if code == 0:
        cluster.condition(name, "Complete", "JobSetCompleted", "jobset completed")
    else:
        cluster.condition(name, "Failed", "FailedJobs", "jobset failed")


@pytest.fixture
def cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The fake cluster, the step's own pod in it (the workspace claim at ``tmp/workspace``),
    and the environment KFP gives a step (its pod's name, its namespace)."""
    with FakeCluster() as fake:
        fake.add_launcher_pod(launcher_pod("step-pod", workspace=str(tmp_path / "workspace")))
        monkeypatch.setenv("KUBECONFIG", str(fake.kubeconfig(tmp_path / "kubeconfig")))
        monkeypatch.setenv("KFP_POD_NAME", "step-pod")
        monkeypatch.setenv("NAMESPACE", fake.namespace)
        monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
        fake.script = _workers
        yield fake


def _created(cluster: FakeCluster, tmp_path: Path, parent: str) -> dict[str, Any]:
    """The one TrainJob, deleted since, with the parent run and staged paths; the staging
    folder removed."""
    (job,) = cluster.created
    assert cluster.deleted == [job["metadata"]["name"]] and not cluster.trainjobs
    trainer = job["spec"]["trainer"]
    assert (trainer["numNodes"], trainer["numProcPerNode"]) == (1, 2)
    env = {e["name"]: e.get("value") for e in trainer["env"]}
    assert env["QREWRITE_PARENT_RUN_ID"] == parent
    assert not list((tmp_path / "workspace" / "trainjobs").iterdir())
    return job


def test_sft_with_two_processes_trains_in_a_trainjob(
    cluster, tiny_model, tiny_datasets, tmp_path, parent, capsys
) -> None:
    metrics, report = artifact(Metrics, tmp_path / "m.json"), artifact(Markdown, tmp_path / "r.md")
    sft_multitask.python_func(
        config=preset(sft={**SFT, **TWO}),
        datasets=artifact(Dataset, tiny_datasets),
        base_model_path="",
        tasks="rewrite,tag",
        parent_run_id=parent,
        model=artifact(Model, tmp_path / "model"),
        metrics=metrics,
        report=report,
        pretrained=artifact(Model, tiny_model),
    )
    job = _created(cluster, tmp_path, parent)
    command = job["spec"]["trainer"]["command"]
    assert command[command.index("--set") + 1] == "tasks=rewrite,tag"
    out = tmp_path / "model"
    load_model(out, "SFT model")
    assert not (out / "checkpoints").exists()
    card = json.loads((out / "qrewrite_model.json").read_text())
    # the workers trained the pretrained input, staged on the workspace volume
    staged = Path(card["config"]["base_model"])
    assert staged.is_relative_to(tmp_path / "workspace") and staged.name == "base-model"
    assert card["config"]["processes_per_node"] == 2 and card["tasks"] == ["rewrite", "tag"]
    assert metrics.metadata["steps"] == 2 and "tagging_accuracy" in metrics.metadata
    assert (tmp_path / "r.md").read_text() == (out / "sft_report.md").read_text()
    run = child_runs(parent)["sft"]  # the workers' run, nested under the pipeline's
    assert run.info.run_id == card["mlflow_run_id"]
    assert "model/model.safetensors" in artifact_paths(run.info.run_id, "model")
    printed = capsys.readouterr().out
    assert f"TrainJob {job['metadata']['name']}" in printed and "[node 0] exit 0" in printed
    assert printed.rstrip().endswith(f"sft: MLflow run {run.info.run_id}")


def test_grpo_with_two_processes_trains_in_a_trainjob(
    cluster, tiny_model, tiny_market, tiny_datasets, tiny_labels, tmp_path, parent
) -> None:
    metrics, report = artifact(Metrics, tmp_path / "m.json"), artifact(Markdown, tmp_path / "r.md")
    grpo_align.python_func(
        config=preset(grpo={**GRPO, **TWO}),
        datasets=artifact(Dataset, tiny_datasets),
        market=artifact(Dataset, tiny_market),
        sft_model=artifact(Model, tiny_model),
        labels=artifact(Dataset, tiny_labels.parent),
        parent_run_id=parent,
        model=artifact(Model, tmp_path / "model"),
        metrics=metrics,
        report=report,
    )
    job = _created(cluster, tmp_path, parent)
    command = job["spec"]["trainer"]["command"]
    assert Path(command[command.index("--labels") + 1]).name == "labeled_pairs.parquet"
    out = tmp_path / "model"
    load_model(out, "GRPO policy")
    card = json.loads((out / "qrewrite_model.json").read_text())
    assert card["step"] == "grpo" and card["config"]["processes_per_node"] == 2
    assert metrics.metadata["steps"] == 2
    assert (tmp_path / "r.md").read_text() == (out / "grpo_report.md").read_text()
    run = child_runs(parent)["grpo"]
    assert run.info.run_id == card["mlflow_run_id"]
    assert "model/model.safetensors" in artifact_paths(run.info.run_id, "model")


def test_a_failed_trainjob_fails_the_step_in_one_line_and_keeps_the_checkpoints(
    cluster, tiny_model, tiny_datasets, tmp_path, parent
) -> None:
    """A worker that fails (here: a base model without weights) fails the component with the
    job's cause; the job is deleted, the staging folder kept for the retry, no model filed."""
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    with pytest.raises(TrainJobFailed) as caught:
        sft_multitask.python_func(
            config=preset(sft={**SFT, **TWO}),
            datasets=artifact(Dataset, tiny_datasets),
            base_model_path=str(broken),
            tasks="rewrite",
            parent_run_id=parent,
            model=artifact(Model, tmp_path / "model"),
            metrics=artifact(Metrics, tmp_path / "m.json"),
            report=artifact(Markdown, tmp_path / "r.md"),
        )
    message = str(caught.value)
    assert "\n" not in message and "failed (FailedJobs: jobset failed)" in message
    assert "exited 3" in message  # the worker's exit code: a configuration error
    (job,) = cluster.created
    assert cluster.deleted == [job["metadata"]["name"]] and not cluster.trainjobs
    assert len(list((tmp_path / "workspace" / "trainjobs").iterdir())) == 1
    assert not (tmp_path / "model").exists()
