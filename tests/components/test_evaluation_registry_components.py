"""The evaluation and registry components, called directly with local artifacts on a fresh MLflow
store: evaluation writes what registration reads, registration returns the version only when the
gate passed (and never promotes itself), promotion moves the ``champion`` alias."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kfp.dsl import HTML, Artifact, Dataset, Markdown, Metrics, Model

from qrewrite.errors import ConfigError, DataError
from qrewrite_components import evaluate_rewriter, promote_champion, register_challenger
from tests.components.helpers import artifact, artifact_paths, child_runs, client, preset

NAME = "query-rewriter"  # the tiny preset's registered model
EVALUATE = {
    "max_queries": 8,
    "samples": 1,
    "max_new_tokens": 6,
    "ab_replicas": 1,
    "bootstrap": 20,
    "tagging_eval_pairs": 4,
}
CONTRACTS = {  # the four hand-offs register_challenger records, one of them failed
    "market": {"catalog": True, "search_log": True},
    "mined": {"rewrite_candidates": True, "query_stats": True},
    "labels": {"labeled_pairs": False},
    "datasets": {"sft_examples": True, "grpo_prompts": True},
}


def _aliases(name: str = NAME) -> dict[str, str]:
    return {k: str(v) for k, v in client().get_registered_model(name).aliases.items()}


def _evaluation(folder: Path, uplift: float) -> Path:
    """An evaluate output as register reads it: ``metrics.json`` (a candidate clearing the tiny
    preset's gate, no floors, measured with the model vetting itself) and ``report.md``."""
    candidate = {
        "ucvr_uplift": uplift,
        "ucvr_uplift_ci_low": uplift - 0.01,
        "ucvr_uplift_ci_high": uplift + 0.01,
        "relevance_rate": 0.5,
        "hit_rate": 0.9,
    }
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "candidate": "multi-task-sft+grpo",
                "variants": {"no-rewrite": {"ucvr_uplift": 0.0}, "multi-task-sft+grpo": candidate},
                "metrics": candidate,
                "models": {"no-rewrite": "", "multi-task-sft+grpo": "x"},
                "config": {"vet": "model", "min_p_relevant": 0.0, "max_new_tokens": 8},
                "samples": [],
            }
        )
    )
    (folder / "report.md").write_text("# Evaluation\n")
    return folder


def _register(
    tmp_path, model, evaluation, inputs, parent, margin: float, sft_model: Path | None = None
) -> str:
    tiny_market, tiny_labels, tiny_datasets = inputs
    contracts = {}
    for step, results in CONTRACTS.items():
        folder = tmp_path / "contracts" / step
        folder.mkdir(parents=True, exist_ok=True)
        for name, ok in results.items():
            (folder / f"{name}.json").write_text(json.dumps({"contract": name, "success": ok}))
        contracts[f"{step}_contracts"] = artifact(Artifact, folder)
    return register_challenger.python_func(
        config=preset(),
        model=artifact(Model, model),
        sft_model=artifact(Model, sft_model or model),
        evaluation=artifact(Artifact, evaluation),
        market=artifact(Dataset, tiny_market),
        labels=artifact(Dataset, tiny_labels.parent),
        datasets=artifact(Dataset, tiny_datasets),
        market_contracts=contracts["market_contracts"],
        mined_contracts=contracts["mined_contracts"],
        labels_contracts=contracts["labels_contracts"],
        dataset_contracts=contracts["datasets_contracts"],
        kfp_run_id="kfp-run-7",
        parent_run_id=parent,
        margin=margin,
    )


def _evaluate(tmp_path, inputs, parent, **models):
    tiny_market, tiny_labels, tiny_datasets = inputs
    outputs = {
        "metrics": artifact(Metrics, tmp_path / "metrics.json"),
        "evaluation": artifact(Artifact, tmp_path / "evaluation"),
        "report": artifact(HTML, tmp_path / "report.html"),
        "report_md": artifact(Markdown, tmp_path / "report.md"),
    }
    evaluate_rewriter.python_func(
        config=preset(evaluate=EVALUATE),
        market=artifact(Dataset, tiny_market),
        datasets=artifact(Dataset, tiny_datasets),
        labels=artifact(Dataset, tiny_labels.parent),
        parent_run_id=parent,
        **{k: artifact(Model, v) for k, v in models.items()},
        **outputs,
    )
    return outputs


@pytest.fixture
def inputs(tiny_market, tiny_labels, tiny_datasets):
    return tiny_market, tiny_labels, tiny_datasets


@pytest.fixture
def model_cache(tmp_path, monkeypatch) -> Path:
    """Registered models are downloaded here, not into the user's cache."""
    monkeypatch.setenv("QREWRITE_MODEL_CACHE", str(tmp_path / "model_cache"))
    return tmp_path / "model_cache"


def test_register_returns_the_version_only_when_the_gate_passes(
    tiny_model, inputs, tmp_path, parent
) -> None:
    """``margin`` reaches the gate: held, the step returns "" (the promotion branch is skipped);
    passed, the same version (registered once) is returned, and the step promotes nothing
    itself. The version carries the pipeline's lineage, and the ``register`` run is a child of
    the pipeline run."""
    evaluation = _evaluation(tmp_path / "evaluation", uplift=0.02)
    assert _register(tmp_path, tiny_model, evaluation, inputs, parent, margin=1.0) == ""
    version = client().get_model_version(NAME, "1")
    assert version.tags["gate"].startswith("held: ") and "margin 1.0" in version.tags["gate"]
    assert _aliases() == {"challenger": "1"}

    assert _register(tmp_path, tiny_model, evaluation, inputs, parent, margin=0.0) == "1"
    assert len(client().search_model_versions(f"name='{NAME}'")) == 1
    tags = client().get_model_version(NAME, "1").tags
    assert tags["gate"].startswith("passed, promoted by the pipeline: first champion")
    assert _aliases() == {"challenger": "1"}  # promote_champion moves the champion alias
    assert tags["pipeline_run_id"] == "kfp-run-7"
    assert tags["contracts"] == "6/7 passed; failed: labeled_pairs"
    assert tags["training_run_id"] == "run-under-test"  # the model card's
    assert len(tags["data_snapshot"]) == len(tags["config_hash"]) == 16
    assert float(tags["metric.ucvr_uplift"]) == pytest.approx(0.02)
    run = child_runs(parent)["register"]
    assert tags["register_run_id"] == run.info.run_id
    assert "metrics.json" in artifact_paths(run.info.run_id)


def test_register_without_an_evaluation_fails_and_registers_nothing(
    tiny_model, inputs, tmp_path, parent
) -> None:
    """An evaluation artifact without ``metrics.json`` fails the step before the registry."""
    (tmp_path / "evaluation").mkdir()
    with pytest.raises(DataError, match=r"metrics\.json: not found"):
        _register(tmp_path, tiny_model, tmp_path / "evaluation", inputs, parent, margin=0.0)
    assert client().search_model_versions(f"name='{NAME}'") == []


@pytest.fixture
def two_versions(store, tmp_path) -> str:
    """Two versions of a registered model named in the preset (the registry holds any folder)."""
    name = "rewriter-under-test"
    registry = client()
    registry.create_registered_model(name)
    for _ in range(2):
        registry.create_model_version(name, (tmp_path / "weights").as_uri())
    return name


def test_promote_moves_the_champion_alias_and_returns_the_previous_one(
    two_versions, parent
) -> None:
    """The preset's ``registry:`` section names the model; the step returns the previous
    champion ("" for the first) and records it for ``qrewrite rollback``."""
    config = preset(registry={"registered_model": two_versions})
    assert promote_champion.python_func(config=config, version="1", parent_run_id=parent) == ""
    assert _aliases(two_versions) == {"champion": "1"}
    assert promote_champion.python_func(config=config, version="2", parent_run_id=parent) == "1"
    assert _aliases(two_versions) == {"champion": "2"}
    model = client().get_registered_model(two_versions)
    assert json.loads(model.tags["champion_history"]) == ["1"]
    promoted = client().get_model_version(two_versions, "2").tags
    assert promoted["previous_champion"] == "1"
    assert "gate passed in the pipeline" in promoted["promotion_reason"]


def test_promoting_a_version_that_does_not_exist_fails_and_keeps_the_champion(
    two_versions, parent
) -> None:
    """An unknown version is an error naming it; the champion stays where it was."""
    config = preset(registry={"registered_model": two_versions})
    promote_champion.python_func(config=config, version="1", parent_run_id=parent)
    with pytest.raises(ConfigError, match="has no version 9"):
        promote_champion.python_func(config=config, version="9", parent_run_id=parent)
    assert _aliases(two_versions) == {"champion": "1"}


def test_evaluate_compares_every_variant_and_the_registry_champion(
    tiny_model, inputs, tmp_path, parent, fake_encoder, model_cache
) -> None:
    """Without a champion: no-rewrite, the multi-task SFT model and the candidate, the
    single-task model when the ablation ran. With one (registered and promoted by the steps
    that follow in the pipeline), it is evaluated too, pinned to its version. The metrics
    register reads, both reports, and an ``evaluate`` run under the pipeline run."""
    first = _evaluate(tmp_path / "first", inputs, parent, model=tiny_model, sft_model=tiny_model)
    out = tmp_path / "first" / "evaluation"
    saved = json.loads((out / "metrics.json").read_text())
    assert set(saved["variants"]) == {"no-rewrite", "multi-task-sft", "multi-task-sft+grpo"}
    # the same weights as both: GRPO does not improve on SFT, so SFT's model is put forward
    assert saved["candidate"] == "multi-task-sft"
    assert saved["candidate_choice"]["reason"].startswith("multi-task-sft+grpo does not lift")
    assert saved["metrics"] == saved["variants"]["multi-task-sft"]
    assert "**candidate chosen**: multi-task-sft" in (out / "report.md").read_text()
    assert 0 < saved["head_search_share"] <= 1
    assert "most searched make" in (out / "report.md").read_text()
    assert first["metrics"].metadata["hit_rate"] == saved["metrics"]["hit_rate"]
    assert "<html" in (tmp_path / "first" / "report.html").read_text().lower()
    assert (tmp_path / "first" / "report.md").read_text() == (out / "report.md").read_text()
    assert "evaluate" in child_runs(parent)

    # the candidate's evaluation registers it (the SFT model: no GRPO folder is read), the
    # gate passes, the next step promotes it
    not_a_model = tmp_path / "grpo-model-not-put-forward"
    version = _register(
        tmp_path, not_a_model, out, inputs, parent, margin=-1.0, sft_model=tiny_model
    )
    assert version == "1"
    promote_champion.python_func(config=preset(), version=version, parent_run_id=parent)

    _evaluate(
        tmp_path / "second",
        inputs,
        parent,
        model=tiny_model,
        sft_model=tiny_model,
        single_task_model=tiny_model,
    )
    saved = json.loads((tmp_path / "second" / "evaluation" / "metrics.json").read_text())
    assert list(saved["variants"]) == [
        "no-rewrite",
        "single-task-sft",
        "multi-task-sft",
        "multi-task-sft+grpo",
        "champion",
    ]
    assert saved["models"]["champion"] == f"models:/{NAME}/1"
    assert saved["models"]["multi-task-sft+grpo"] == str(tiny_model)
    assert any(model_cache.iterdir())  # the champion was downloaded to the configured cache
