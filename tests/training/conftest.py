"""Labels and training sets of the tiny market, built once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrewrite.labeling import label as label_module
from qrewrite.labeling.label import LabelConfig, label
from qrewrite.training.datasets import DatasetConfig, build_datasets
from tests.labeling.fakes import TrigramEncoder


@pytest.fixture(scope="session")
def tiny_labels(tiny_market: Path, tiny_mined: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_labels") / "labeled_pairs.parquet"
    with pytest.MonkeyPatch.context() as mp:  # training tests do not need the real encoder
        mp.setattr(label_module.Teacher, "encoder", property(lambda self: TrigramEncoder()))
        label(LabelConfig(), tiny_market, tiny_mined / "rewrite_candidates.parquet", out)
    return out


@pytest.fixture(scope="session")
def tiny_datasets(tiny_market: Path, tiny_mined: Path, tiny_labels: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tiny_datasets")
    build_datasets(DatasetConfig(eval_fraction=0.3), tiny_market, tiny_mined, tiny_labels, out)
    return out
