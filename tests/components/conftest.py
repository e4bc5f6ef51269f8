"""Fixtures of the direct component tests: each test logs to its own SQLite MLflow store, under a
pipeline run opened as ``start_mlflow_run`` opens it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from qrewrite.labeling.teacher import Teacher
from qrewrite.tracking import start_pipeline_run
from tests.labeling.fakes import TrigramEncoder


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory) -> Path:
    """An empty MLflow SQLite database with its tables made, once: creating them takes seconds,
    copying the file none."""
    import mlflow

    path = tmp_path_factory.mktemp("empty_mlflow") / "mlflow.db"
    mlflow.MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(empty_store, tmp_path, monkeypatch) -> str:
    """A fresh SQLite MLflow store of this test, set as ``$MLFLOW_TRACKING_URI`` (which wins over
    the preset's ``tracking_uri``, as on a cluster)."""
    path = tmp_path / "mlflow.db"
    shutil.copyfile(empty_store, path)
    uri = f"sqlite:///{path}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


@pytest.fixture
def parent(store) -> str:
    """The pipeline run's MLflow run id, which every step receives as ``parent_run_id``."""
    return start_pipeline_run(store, "qrewrite", "kfp-test", "test")


@pytest.fixture
def fake_encoder(monkeypatch) -> None:
    """The teacher grades with character trigrams instead of loading the sentence encoder."""
    monkeypatch.setattr(Teacher, "encoder", property(lambda self: TrigramEncoder()))
