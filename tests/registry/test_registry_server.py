"""Register, gate, promote, roll back and load the model through a real ``mlflow server`` over
HTTP, as a cluster user would: once with a SQLite backend store, once with PostgreSQL (as in the
Kubernetes manifests) where its binaries are installed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from qrewrite.cli import main
from qrewrite.errors import ConfigError
from qrewrite.registry.config import RegistryConfig
from qrewrite.registry.registry import register, registry_summary, rollback
from qrewrite.registry.resolve import resolve_model_dir
from tests.registry.servers import mlflow_server, postgres_binaries, postgres_cluster

pytestmark = pytest.mark.slow


def write_metrics(
    path: Path, uplift: float, relevance: float, *, vet: str = "model", samples: int = 0
) -> Path:
    """An evaluate metrics.json whose candidate clears the gate's floors, measured under the
    serving policy ``vet`` (P(relevant) >= 0 when the model vets: the tiny model grades little)."""
    candidate = {
        "ucvr_uplift": uplift,
        "ucvr_uplift_ci_low": uplift - 0.01,
        "ucvr_uplift_ci_high": uplift + 0.01,
        "ucvr_uplift_unfiltered": uplift,
        "relevance_rate": relevance,
        "served_relevance_rate": 1.0,
        "served_rate": 0.5,
        "hit_rate": 0.9,
    }
    report = {
        "schema_version": 1,
        "candidate": "candidate",
        "variants": {"no-rewrite": {"ucvr_uplift": 0.0, "hit_rate": 0.85}, "candidate": candidate},
        "metrics": candidate,
        "models": {"no-rewrite": "", "candidate": "x"},
        "config": {"vet": vet, "min_p_relevant": 0.0, "samples": samples, "max_new_tokens": 8},
        "samples": [
            {
                "query": "red running shoes",
                "searches": 40,
                "rewrite": "red trainers",
                "teacher_grade": 2,
                "truth_grade": 2,
                "served": True,
            }
        ],
    }
    path.write_text(json.dumps(report))
    return path


def backends():
    yield pytest.param("sqlite", id="sqlite")
    marks = [] if postgres_binaries() else [pytest.mark.skip(reason="no PostgreSQL binaries")]
    yield pytest.param("postgresql", id="postgresql", marks=marks)


@pytest.fixture(params=list(backends()))
def server(request, tmp_path: Path):
    if request.param == "sqlite":
        with mlflow_server(f"sqlite:///{tmp_path / 'mlflow.db'}", tmp_path) as uri:
            yield uri
    else:
        with postgres_cluster() as db, mlflow_server(db, tmp_path) as uri:
            yield uri


def test_register_gate_promote_rollback_and_load_over_http(
    server: str, tiny_model: Path, second_model: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.setenv("QREWRITE_MODEL_CACHE", str(tmp_path / "cache"))
    cfg = RegistryConfig(tracking_uri="")

    first = register(cfg, tiny_model, write_metrics(tmp_path / "m1.json", 0.03, 0.50))
    assert first.created and first.version == "1"
    assert first.decision.promote and first.champion == "1"
    assert first.lineage.training_run_id == "run-under-test"

    again = register(cfg, tiny_model, write_metrics(tmp_path / "m1.json", 0.03, 0.50))
    assert not again.created and again.version == "1"  # the same model is not registered twice

    # better conversion but a relevance drop beyond the tolerance: held, reason recorded
    held = register(cfg, second_model, write_metrics(tmp_path / "m2.json", 0.06, 0.40))
    assert held.created and held.version == "2" and not held.decision.promote
    from mlflow import MlflowClient

    v2 = MlflowClient().get_model_version("query-rewriter", "2")
    assert v2.tags["gate"].startswith("held: ") and "relevance rate drops" in v2.tags["gate"]
    assert set(v2.aliases) == {"challenger"}
    summary = registry_summary(cfg)
    assert summary.champion == "1" and summary.challenger == "2"

    # a person promotes version 2 anyway, then rolls back
    assert main(["promote", "--version", "2", "--reason", "test"]) == 0
    assert registry_summary(cfg).champion == "2"
    assert rollback(cfg) == ("2", "1")
    assert registry_summary(cfg).champion == "1"
    with pytest.raises(ConfigError, match="no earlier champion"):
        rollback(cfg)
    assert main(["promote", "--version", "9"]) == 3
    assert "has no version 9" in capsys.readouterr().err

    # what a serving job does: load the champion by alias and predict
    import mlflow.pyfunc

    loaded = mlflow.pyfunc.load_model("models:/query-rewriter@champion")
    out = loaded.predict(
        pd.DataFrame({"query": ["red running shoes", "oak desk"]}), params={"k": 2}
    )
    assert list(out.columns) == [
        "query",
        "rewrites",
        "grades",
        "p_relevant",
        "scores",
        "teacher_grade",
        "page_gain",
        "served",
    ]
    # the policy it was registered with (the model vets, P(relevant) >= 0): every top rewrite
    assert out["served"].tolist() == [r[0] if r else None for r in out["rewrites"]]
    assert out["page_gain"].isna().all()  # no page was graded: the policy does not vet pages
    assert len(out) == 2 and all(len(r) <= 2 for r in out["rewrites"])
    assert all(g in (0, 1, 2) for row in out["grades"] for g in row)
    schema = loaded.metadata.get_input_schema()
    assert schema.input_names() == ["query"]

    path, pinned = resolve_model_dir("models:/query-rewriter@champion", tracking_uri="")
    assert pinned == "models:/query-rewriter/1" and (path / "config.json").exists()
    with pytest.raises(ConfigError, match="not in the registry"):
        resolve_model_dir("models:/query-rewriter@nonexistent", tracking_uri="")
    shutil.rmtree(tmp_path / "cache", ignore_errors=True)
