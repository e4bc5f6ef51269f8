"""Shared fixtures: one tiny marketplace and its mining output per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrewrite.market.simulate import SynthConfig, synthesize
from qrewrite.mining.config import MiningConfig
from qrewrite.mining.mine import mine


@pytest.fixture(autouse=True)
def no_outside_mlflow(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests log to their own SQLite stores, never to a server or run set in the environment."""
    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_NAME"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="session")
def tiny_market(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_market")
    synthesize(SynthConfig(scale="tiny", seed=11), out, progress=False)
    return out


@pytest.fixture(scope="session")
def tiny_mined(tiny_market: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny_mined")
    mine(MiningConfig(), tiny_market, out)
    return out
