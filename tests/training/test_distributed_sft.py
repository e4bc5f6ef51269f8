"""The distributed SFT path on the CPU: the command a TrainJob's workers run (the step's CLI entry
point under torchrun, as ``qrewrite.cluster.launch`` writes it), with the environment the
Trainer's torch runtime gives them (``PET_NNODES``, ``PET_NPROC_PER_NODE``, ...), two processes
over gloo on the tiny model, against one process with the same global batch (8 = 2 x 4): the
same loss at every step, one MLflow run, one model folder.

About 35 s for DDP on two cores (each worker imports torch and transformers; training is a
few steps). FSDP, the only test of the gather-and-save path, costs as much again: ``make
test-distributed`` runs it (CI does, after ``make test``).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from qrewrite.cluster.launch import worker_command
from qrewrite.training.sft import SFTStepConfig, sft

pytestmark = pytest.mark.slow

STEPS = 6
SCHEDULE = {
    "max_steps": STEPS,
    "learning_rate": 0.002,
    "warmup_steps": 0,
    "logging_steps": 1,
    "save_steps": 100,
    "tagging_eval_pairs": 8,
}
TASKS = "rewrite,tag"  # the same data for both runs: the curves must match step for step
TOLERANCE = 1e-3  # relative, per step: float sums in another order, nothing more


def _losses(tracking: str, run_id: str) -> list[float]:
    import mlflow

    history = mlflow.MlflowClient(tracking).get_metric_history(run_id, "sft/loss")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


@pytest.fixture(scope="module")
def tracking(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def one_process(tiny_model, tiny_datasets, tracking, tmp_path_factory) -> list[float]:
    """The loss curve of one process with the global batch."""
    cfg = SFTStepConfig(
        base_model=str(tiny_model), tasks=TASKS, batch_size=8, tracking_uri=tracking, **SCHEDULE
    )
    out = tmp_path_factory.mktemp("one_process")
    result = sft(cfg, datasets_dir=tiny_datasets, out_dir=out, progress=False)
    losses = _losses(tracking, result.mlflow_run_id)
    assert len(losses) == STEPS and losses[-1] < losses[0]
    return losses


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _two_processes(
    distributed: str, tiny_model: Path, tiny_datasets: Path, tracking: str, tmp_path: Path
) -> dict[str, Any]:
    """The workers' command, run as the torch runtime runs it; the step's report."""
    preset = tmp_path / "preset.yaml"
    sft_section = {
        **SCHEDULE,
        "batch_size": 4,
        "processes_per_node": 2,
        "distributed": distributed,
        "tracking_uri": tracking,
    }
    preset.write_text(yaml.safe_dump({"sft": sft_section}))
    out = tmp_path / "out"
    command = worker_command(
        "sft",
        preset_file=str(preset),
        overrides=[f"tasks={TASKS}"],
        inputs={"--datasets": str(tiny_datasets), "--base-model": str(tiny_model)},
        out_dir=str(out),
    )
    assert command[0] == "torchrun"
    command[0] = str(Path(sys.executable).with_name("torchrun"))
    # what the Trainer's torch plugin puts in every node's environment (torchrun reads PET_*)
    env = {
        **os.environ,
        "PET_NNODES": "1",
        "PET_NPROC_PER_NODE": "2",
        "PET_NODE_RANK": "0",
        "PET_MASTER_ADDR": "127.0.0.1",
        "PET_MASTER_PORT": str(_free_port()),
    }
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    # the main process speaks for both
    assert done.stdout.count("sft: MLflow run ") == 1, done.stdout
    return json.loads((out / "sft_report.json").read_text())


FSDP = pytest.param(
    "fsdp",
    marks=pytest.mark.skipif(
        os.environ.get("QREWRITE_TEST_FSDP") != "1", reason="make test-distributed runs it"
    ),
)


@pytest.mark.parametrize("distributed", ["ddp", FSDP])
def test_two_processes_follow_the_loss_curve_of_one(
    distributed, one_process, tiny_model, tiny_datasets, tracking, tmp_path
) -> None:
    import mlflow

    report = _two_processes(distributed, tiny_model, tiny_datasets, tracking, tmp_path)
    assert report["steps"] == STEPS and report["config"]["distributed"] == distributed
    assert report["tagging"]["pairs"] == 8  # evaluated once, by the main process
    losses = _losses(tracking, report["mlflow_run_id"])
    assert losses == pytest.approx(one_process, rel=TOLERANCE)
    # one run per training, not one per process
    runs = mlflow.MlflowClient(tracking).search_runs(
        [mlflow.MlflowClient(tracking).get_experiment_by_name("qrewrite").experiment_id]
    )
    assert report["mlflow_run_id"] in {r.info.run_id for r in runs}
    assert sum(r.data.params.get("sft.distributed") == distributed for r in runs) == 1
