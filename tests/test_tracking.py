"""Each step logs to its own configured store, even after another store was used in-process."""

from __future__ import annotations

import os

from qrewrite.tracking import mlflow_run


def test_a_second_store_is_not_shadowed_by_the_first(tmp_path) -> None:
    import mlflow

    a, b = f"sqlite:///{tmp_path / 'a.db'}", f"sqlite:///{tmp_path / 'b.db'}"
    with mlflow_run(a, "qrewrite", "first") as first:
        pass
    # MLflow 3 exports MLFLOW_TRACKING_URI itself; that must not make store A win over B
    assert "MLFLOW_TRACKING_URI" not in os.environ
    with mlflow_run(b, "qrewrite", "second") as second:
        pass
    assert mlflow.MlflowClient(b).get_run(second.info.run_id).info.run_name == "second"
    assert mlflow.MlflowClient(a).get_run(first.info.run_id).info.run_name == "first"


def test_the_environment_still_wins(tmp_path, monkeypatch) -> None:
    import mlflow

    server = f"sqlite:///{tmp_path / 'server.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    with mlflow_run(f"sqlite:///{tmp_path / 'local.db'}", "qrewrite", "step") as run:
        pass
    assert mlflow.MlflowClient(server).get_run(run.info.run_id)
    assert os.environ["MLFLOW_TRACKING_URI"] == server


def test_pipeline_steps_nest_under_the_pipeline_run(tmp_path, monkeypatch) -> None:
    import mlflow

    from qrewrite.tracking import (
        PARENT_RUN_ENV,
        end_pipeline_run,
        log_step,
        start_pipeline_run,
    )

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    parent = start_pipeline_run(uri, "qrewrite", "kfp-123", "nightly", {"data_source": "x"})
    # a retried first step finds the run it opened before instead of opening a second one
    assert start_pipeline_run(uri, "qrewrite", "kfp-123", "nightly") == parent
    monkeypatch.setenv(PARENT_RUN_ENV, parent)
    step = log_step(
        "mine",
        {"queries": 12, "candidates": {"session": 3, "nan": float("nan")}, "ok": True},
        [tmp_path / "missing.md"],
        tracking_uri=uri,
    )
    with mlflow_run(uri, "qrewrite", "sft") as run:
        trained = run.info.run_id
    client = mlflow.MlflowClient(uri)
    for child in (step, trained):
        tags = client.get_run(child).data.tags
        assert tags["mlflow.parentRunId"] == parent
        assert tags["kfp.run_id"] == "kfp-123"  # findable by the KFP run in the MLflow UI
    # nested numbers are flattened; NaN and booleans are not metrics
    assert client.get_run(step).data.metrics == {"queries": 12.0, "candidates/session": 3.0}
    assert client.get_run(parent).info.status == "RUNNING"
    assert end_pipeline_run(uri, "qrewrite", "kfp-123", "FAILED") == "FAILED"
    assert client.get_run(parent).info.status == "FAILED"
    assert client.get_run(parent).data.params == {"data_source": "x"}
    # a pipeline that failed before opening its run has nothing to close
    assert end_pipeline_run(uri, "qrewrite", "kfp-never-started") == "none"


def test_kfp_mlflow_integration_run_is_reused(tmp_path, monkeypatch) -> None:
    import mlflow

    from qrewrite.tracking import start_pipeline_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(uri)
    exp = client.create_experiment("qrewrite")
    kfp_parent = client.create_run(exp).info.run_id
    kfp_step = client.create_run(exp, tags={"mlflow.parentRunId": kfp_parent}).info.run_id
    monkeypatch.setenv("MLFLOW_RUN_ID", kfp_step)  # as KFP's MLflow plugin sets it per step
    assert start_pipeline_run(uri, "qrewrite", "kfp-9") == kfp_parent


def test_every_run_records_its_environment(tmp_path) -> None:
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with mlflow_run(uri, "qrewrite", "sft") as run:
        pass
    got = mlflow.MlflowClient(uri).get_run(run.info.run_id)
    assert got.data.tags["env.pkg.torch"] and got.data.tags["env.cpu_model"]
    assert "env.torch_threads" in got.data.tags
    files = [
        f.path for f in mlflow.MlflowClient(uri).list_artifacts(run.info.run_id, "environment")
    ]
    assert files == ["environment/sft.json"]
