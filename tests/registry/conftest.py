"""Fixtures the registry tests share."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def second_model(tiny_model: Path, tmp_path_factory) -> Path:
    """The tiny model with other weights: another trained model, another fingerprint."""
    import torch

    from qrewrite.training.models import load_model, load_tokenizer, save_model

    model = load_model(tiny_model, "model")
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    out = tmp_path_factory.mktemp("second_model")
    return save_model(
        model, load_tokenizer(tiny_model), out, {"step": "test", "mlflow_run_id": "b"}
    )
