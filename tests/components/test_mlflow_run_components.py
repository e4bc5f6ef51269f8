"""The components that open and close the pipeline's MLflow run, called directly: one run per KFP
run (found again on a retry), in the store and experiment the preset's ``registry:`` section
names, closed with KFP's final status by the exit handler."""

from __future__ import annotations

import shutil

import pytest
from kfp import dsl

from qrewrite_components import end_mlflow_run, start_mlflow_run
from tests.components.helpers import client, preset


def _start(config: str, kfp_run_id: str, base_model: str = "") -> str:
    return start_mlflow_run.python_func(
        config=config,
        kfp_run_id=kfp_run_id,
        kfp_run_name=f"name of {kfp_run_id}",
        data_source="synth",
        base_model=base_model,
    )


def _end(config: str, kfp_run_id: str, state: str) -> None:
    status = dsl.PipelineTaskFinalStatus(
        state=state,
        pipeline_job_resource_name=f"projects/p/pipelineJobs/{kfp_run_id}",
        pipeline_task_name="exit-handler",
        error_code=None,
        error_message=None,
    )
    end_mlflow_run.python_func(config=config, kfp_run_id=kfp_run_id, status=status)


def test_start_opens_one_run_per_kfp_run_and_finds_it_on_a_retry(store) -> None:
    """The run is tagged with the KFP run, records where data and base model came from, stays
    open for the steps, and a retried start returns the same run."""
    config = preset()
    run_id = _start(config, "kfp-1")
    assert _start(config, "kfp-1") == run_id  # a retry
    run = client().get_run(run_id)
    assert run.info.status == "RUNNING"
    assert client().get_experiment(run.info.experiment_id).name == "qrewrite"
    assert run.data.tags["kfp.run_id"] == "kfp-1"
    assert run.data.tags["kfp.run_name"] == "name of kfp-1"
    assert run.data.tags["qrewrite.kind"] == "pipeline"
    assert run.data.params == {"data_source": "synth", "base_model": "pretrained here"}
    other = _start(config, "kfp-2", base_model="/models/qwen")
    assert other != run_id
    assert client().get_run(other).data.params["base_model"] == "/models/qwen"


def test_start_and_end_use_the_presets_store_and_experiment(
    empty_store, tmp_path, monkeypatch
) -> None:
    """Without ``$MLFLOW_TRACKING_URI``, the preset's ``registry.tracking_uri`` and
    ``registry.experiment`` decide where the run is."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    shutil.copyfile(empty_store, tmp_path / "preset.db")
    uri = f"sqlite:///{tmp_path / 'preset.db'}"
    config = preset(registry={"tracking_uri": uri, "experiment": "from-the-preset"})
    run_id = _start(config, "kfp-1")
    _end(config, "kfp-1", "SUCCEEDED")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)  # for client()
    run = client().get_run(run_id)
    assert client().get_experiment(run.info.experiment_id).name == "from-the-preset"
    assert run.info.status == "FINISHED"


@pytest.mark.parametrize(("state", "status"), [("SUCCEEDED", "FINISHED"), ("FAILED", "FAILED")])
def test_end_closes_the_kfp_runs_mlflow_run_with_its_final_status(store, state, status) -> None:
    """The exit handler's final status decides the MLflow status and is kept as a tag; runs of
    other KFP runs stay open."""
    config = preset()
    run_id, other = _start(config, "kfp-1"), _start(config, "kfp-2")
    _end(config, "kfp-1", state)
    run = client().get_run(run_id)
    assert run.info.status == status and run.data.tags["kfp.status"] == state
    assert client().get_run(other).info.status == "RUNNING"


def test_end_of_a_run_that_never_opened_one_is_not_an_error(store) -> None:
    """A pipeline that failed before ``start_mlflow_run`` ran still exits cleanly, and closes
    nothing else."""
    config = preset()
    other = _start(config, "kfp-2")
    _end(config, "kfp-never-started", "FAILED")
    assert client().get_run(other).info.status == "RUNNING"
