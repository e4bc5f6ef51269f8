"""``qrewrite register`` / ``promote`` / ``rollback`` on a local SQLite store: lineage tags,
idempotence, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qrewrite.cli import main
from tests.registry.test_registry_server import write_metrics

pytestmark = pytest.mark.slow


@pytest.fixture
def store(tmp_path: Path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def test_register_records_lineage_and_is_idempotent(
    store, tiny_model, tiny_market, tiny_datasets, tmp_path, capsys
) -> None:
    contracts = tmp_path / "contracts"
    contracts.mkdir()
    (contracts / "catalog.json").write_text(json.dumps({"contract": "catalog", "success": True}))
    (contracts / "search_log.json").write_text(
        json.dumps({"contract": "search_log", "success": False})
    )
    metrics = write_metrics(tmp_path / "metrics.json", 0.02, 0.5)
    args = [
        "register",
        "--model",
        str(tiny_model),
        "--metrics",
        str(metrics),
        "--data",
        str(tiny_market),
        "--datasets",
        str(tiny_datasets),
        "--contracts",
        str(contracts),
        "--pipeline-run-id",
        "kfp-run-7",
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "registered query-rewriter version 1" in out and "promoted to champion" in out
    assert main(args) == 0
    assert "already registered query-rewriter version 1" in capsys.readouterr().out

    from mlflow import MlflowClient

    v = MlflowClient(tracking_uri=store).get_model_version("query-rewriter", "1")
    assert v.tags["pipeline_run_id"] == "kfp-run-7"
    assert v.tags["contracts"] == "1/2 passed; failed: search_log"
    assert len(v.tags["data_snapshot"]) == 16 and v.tags["training_run_id"] == "run-under-test"
    assert float(v.tags["metric.ucvr_uplift"]) == pytest.approx(0.02)
    assert v.tags["gate"].startswith("promoted: first champion")
    assert set(v.aliases) == {"champion", "challenger"}
    assert main(["models", "--require-alias", "champion"]) == 0
    assert "champion 1, challenger 1" in capsys.readouterr().out
    # artifacts sit next to the database, not in ./mlruns of the working directory
    assert (tmp_path / "artifacts").is_dir()


def test_bad_metrics_and_missing_models_are_one_line_errors(store, tiny_model, tmp_path, capsys):
    bad = tmp_path / "metrics.json"
    bad.write_text("{not json")
    assert main(["register", "--model", str(tiny_model), "--metrics", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not valid JSON" in err
    bad.write_text(json.dumps({"foo": 1}))
    assert main(["register", "--model", str(tiny_model), "--metrics", str(bad)]) == 2
    assert "not an evaluate metrics.json" in capsys.readouterr().err
    assert main(["register", "--model", str(tmp_path / "nope"), "--metrics", str(bad)]) == 3
    assert main(["rollback"]) == 3  # nothing registered yet: no store, and none is created
    assert "no MLflow registry at sqlite:///" in capsys.readouterr().err
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=store).search_registered_models()  # an empty store
    assert main(["rollback"]) == 3
    assert "has no champion to roll back" in capsys.readouterr().err
    assert main(["models", "--require-alias", "champion"]) == 3
    assert "has no champion alias" in capsys.readouterr().err


def test_a_gain_over_the_champion_the_queries_do_not_establish_is_held(
    store, tiny_model, second_model, tmp_path
) -> None:
    """The champion evaluated in the same run, and the challenger's served UCVR gain paired by
    query straddling zero: the gate holds it, and says why."""
    from mlflow import MlflowClient

    from qrewrite.registry.config import RegistryConfig
    from qrewrite.registry.registry import register

    cfg = RegistryConfig(tracking_uri="")
    first = register(cfg, tiny_model, write_metrics(tmp_path / "m1.json", 0.03, 0.5))
    assert first.decision.promote
    metrics = json.loads(write_metrics(tmp_path / "m2.json", 0.06, 0.5).read_text())
    metrics["variants"]["champion"] = {"ucvr_uplift": 0.03, "relevance_rate": 0.5}
    metrics["models"]["champion"] = "models:/query-rewriter/1"
    metrics["champion_difference"] = {"metric": "ucvr_uplift", "difference": [0.03, -0.01, 0.07]}
    (tmp_path / "m2.json").write_text(json.dumps(metrics))
    held = register(cfg, second_model, tmp_path / "m2.json")
    assert held.version == "2" and not held.decision.promote
    gate_tag = MlflowClient().get_model_version("query-rewriter", "2").tags["gate"]
    assert "paired by query" in gate_tag and "do not establish it" in gate_tag
