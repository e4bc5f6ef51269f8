"""The data components' bodies, called directly (``component.python_func``) with local artifacts:
they adapt artifacts to library calls, fail on a broken contract, and log under the pipeline run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from kfp.dsl import Artifact, Dataset, Markdown

from qrewrite.errors import ContractViolation
from qrewrite.tracking import start_pipeline_run
from qrewrite_components import mine_search_logs, stage_marketplace, validate_contracts

PRESET = (Path(__file__).parents[2] / "configs" / "tiny.yaml").read_text()


@pytest.fixture
def parent(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return start_pipeline_run(uri, "qrewrite", "kfp-test", "test")


def _artifact(cls, path: Path):
    return cls(name=path.name, uri=str(path))


def _children(parent: str) -> dict[str, dict]:
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_run(parent).info.experiment_id
    runs = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'")
    return {r.info.run_name: r.data.metrics for r in runs}


def test_stage_then_validate_then_mine_a_window(tiny_market, tmp_path, parent) -> None:
    market = _artifact(Dataset, tmp_path / "market")
    stage_marketplace.python_func(
        config=PRESET, data_source=str(tiny_market), parent_run_id=parent, market=market
    )
    assert market.metadata["rows"]["catalog.parquet"] == 600
    results, report = (
        _artifact(Artifact, tmp_path / "results"),
        _artifact(Markdown, tmp_path / "report.md"),
    )
    validate_contracts.python_func(
        data=market,
        contracts=["catalog", "search_log"],
        parent_run_id=parent,
        results=results,
        report=report,
    )
    assert (tmp_path / "results" / "catalog.json").is_file()
    assert "search_log" in (tmp_path / "report.md").read_text()
    mined = _artifact(Dataset, tmp_path / "mined")
    mine_search_logs.python_func(
        config=PRESET,
        market=market,
        window_end="2026-01-19",
        window_days=7,
        scheduled_time="",
        parent_run_id=parent,
        mined=mined,
        report=_artifact(Markdown, tmp_path / "mining.md"),
    )
    assert (mined.metadata["start"], mined.metadata["end"]) == ("2026-01-12", "2026-01-19")
    assert (tmp_path / "mined" / "rewrite_candidates.parquet").is_file()
    runs = _children(parent)
    assert runs["stage_marketplace"]["catalog.parquet"] == 600
    assert runs["validate:catalog,search_log"] == {
        "catalog/success": 1.0,
        "search_log/success": 1.0,
    }
    assert runs["mine"]["queries"] > 0


def test_a_contract_violation_fails_the_step(tiny_market, tmp_path, parent) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(tiny_market, broken)
    catalog = pd.read_parquet(broken / "catalog.parquet")
    catalog.loc[:5, "product_id"] = None  # ids are required
    catalog.to_parquet(broken / "catalog.parquet")
    with pytest.raises(ContractViolation, match="catalog"):
        validate_contracts.python_func(
            data=_artifact(Dataset, broken),
            contracts=["catalog"],
            parent_run_id=parent,
            results=_artifact(Artifact, tmp_path / "results"),
            report=_artifact(Markdown, tmp_path / "report.md"),
        )
    assert _children(parent)["validate:catalog"] == {"catalog/success": 0.0}
