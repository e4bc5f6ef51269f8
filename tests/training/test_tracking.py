"""Each step logs to its own configured store, even after another store was used in-process."""

from __future__ import annotations

import os

from qrewrite.training.tracking import mlflow_run


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
