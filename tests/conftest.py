"""Shared fixtures, built once per test session: the tiny marketplace, its mining output, labels,
training sets, and an untrained tiny model for tests of what consumes models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qrewrite.labeling import label as label_module
from qrewrite.labeling.label import LabelConfig, label
from qrewrite.market.simulate import SynthConfig, synthesize
from qrewrite.mining.config import MiningConfig
from qrewrite.mining.mine import mine
from qrewrite.training.datasets import DatasetConfig, build_datasets
from tests.labeling.fakes import TrigramEncoder


@pytest.fixture(autouse=True)
def no_outside_mlflow(monkeypatch: pytest.MonkeyPatch):
    """Tests log to their own SQLite stores, never to a server or run set in the environment;
    cleared after each test too, so module fixtures built next never inherit one."""
    names = (
        "MLFLOW_TRACKING_URI",
        "MLFLOW_RUN_ID",
        "MLFLOW_EXPERIMENT_NAME",
        "MLFLOW_REGISTRY_URI",
        "QREWRITE_PARENT_RUN_ID",  # set by pipeline components for their step's MLflow run
    )
    for name in names:
        monkeypatch.delenv(name, raising=False)
    yield
    for name in names:
        os.environ.pop(name, None)


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_market")
    synthesize(SynthConfig(scale="tiny", seed=11), out_dir=out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_mined(tiny_market: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_mined")
    mine(MiningConfig(), data_dir=tiny_market, out_dir=out)
    return out


@pytest.fixture(scope="session")
def tiny_labels(tiny_market: Path, tiny_mined: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_labels") / "labeled_pairs.parquet"
    with pytest.MonkeyPatch.context() as mp:  # training tests do not need the real encoder
        mp.setattr(label_module.Teacher, "encoder", property(lambda self: TrigramEncoder()))
        label(
            LabelConfig(),
            data_dir=tiny_market,
            candidates_path=tiny_mined / "rewrite_candidates.parquet",
            out_path=out,
        )
    return out


@pytest.fixture(scope="session")
def tiny_datasets(tiny_market: Path, tiny_mined: Path, tiny_labels: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_datasets")
    build_datasets(
        DatasetConfig(eval_fraction=0.3, normalize_ratio=0.7),
        data_dir=tiny_market,
        mined_dir=tiny_mined,
        labels_path=tiny_labels,
        out_dir=out,
    )
    return out


@pytest.fixture(scope="session")
def tiny_model(tiny_market: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised tiny Qwen2 with a tokenizer trained on the tiny market: enough for
    tests of generation, evaluation plumbing and the registry (quality is measured elsewhere)."""
    import pandas as pd

    from qrewrite.training.models import ModelShape, build_small_model, save_model, train_tokenizer

    titles = pd.read_parquet(tiny_market / "catalog.parquet")["title"].tolist()
    tok = train_tokenizer(titles, 500)
    shape = ModelShape(hidden_size=32, intermediate_size=64, num_hidden_layers=2)
    model = build_small_model(tok, shape, seed=3)
    out = tmp_path_factory.mktemp("tiny_model")
    return save_model(model, tok, out, {"step": "test", "mlflow_run_id": "run-under-test"})
