"""The training components, called directly with local artifacts, for two or three steps each: a
model folder the next step loads, the step's figures in its Metrics output, and the run that
trained it, with the model's files, under the pipeline run. Training quality is measured
elsewhere (tests/training, docs/benchmarks.md)."""

from __future__ import annotations

import pytest
from kfp.dsl import Dataset, Markdown, Metrics, Model

from qrewrite.errors import ConfigError
from qrewrite.training.models import check_model_dir, load_model
from qrewrite_components import grpo_align, pretrain_small_model, sft_multitask
from tests.components.helpers import artifact, artifact_paths, child_runs, preset

# at most 100 pairs: more than denoise_pairs, the tiny shop having over 200 distinct words
PRETRAIN = {
    "max_steps": 2,
    "denoise_pairs": 64,
    "denoise_pairs_per_word": 0.5,
    "denoise_pairs_max": 100,
    "logging_steps": 1,
}
SFT = {"max_steps": 2, "save_steps": 2, "logging_steps": 1, "tagging_eval_pairs": 6}
GRPO = {"max_steps": 2, "save_steps": 2, "probe_prompts": 2, "max_completion_length": 8}


def _card(model_dir) -> dict:
    import json

    return json.loads((model_dir / "qrewrite_model.json").read_text())


def test_pretrain_saves_a_model_and_its_figures(
    tiny_market, tiny_mined, tiny_datasets, tmp_path, parent
) -> None:
    """A loadable model with its tokenizer in the Model output, the report's figures in the
    Metrics output, and a ``pretrain`` run under the pipeline run holding the model's files."""
    model, metrics = artifact(Model, tmp_path / "model"), artifact(Metrics, tmp_path / "m.json")
    pretrain_small_model.python_func(
        config=preset(pretrain=PRETRAIN),
        market=artifact(Dataset, tiny_market),
        mined=artifact(Dataset, tiny_mined),
        datasets=artifact(Dataset, tiny_datasets),
        parent_run_id=parent,
        model=model,
        metrics=metrics,
    )
    out = check_model_dir(tmp_path / "model", "pretrained model")
    assert (out / "tokenizer.json").is_file() and _card(out)["step"] == "pretrain"
    assert _card(out)["excluded_eval_queries"] > 0  # the datasets input reached the library
    # scaled to the shop's vocabulary and capped (a few may read like held-out queries: dropped)
    assert 64 < _card(out)["denoising_pairs"] <= 100
    assert metrics.metadata["steps"] == 2 and metrics.metadata["parameters"] > 0
    assert {"train_seconds", "loss_first_20pct", "loss_last_20pct"} <= set(metrics.metadata)
    run = child_runs(parent)["pretrain"]
    assert run.info.run_id == _card(out)["mlflow_run_id"]
    assert "model/model.safetensors" in artifact_paths(run.info.run_id, "model")


def test_sft_fine_tunes_the_pretrained_input_over_the_mounted_path(
    tiny_model, tiny_datasets, tmp_path, parent
) -> None:
    """``pretrained`` wins over ``base_model_path``; ``tasks`` reaches the library (the tagging
    figures join the Metrics output); the report is copied to the Markdown output; an ``sft``
    run under the pipeline run holds the model's files."""
    metrics, report = artifact(Metrics, tmp_path / "m.json"), artifact(Markdown, tmp_path / "r.md")
    sft_multitask.python_func(
        config=preset(sft=SFT),
        datasets=artifact(Dataset, tiny_datasets),
        base_model_path=str(tmp_path / "not-a-model"),
        tasks="rewrite,tag",
        parent_run_id=parent,
        model=artifact(Model, tmp_path / "model"),
        metrics=metrics,
        report=report,
        pretrained=artifact(Model, tiny_model),
    )
    out = tmp_path / "model"
    load_model(out, "SFT model")
    card = _card(out)
    assert card["step"] == "sft" and card["config"]["base_model"] == str(tiny_model)
    assert card["tasks"] == ["rewrite", "tag"]
    assert metrics.metadata["steps"] == 2 and "eval_loss" in metrics.metadata
    assert {"pairs", "tagging_accuracy"} <= set(metrics.metadata)
    assert (tmp_path / "r.md").read_text() == (out / "sft_report.md").read_text()
    run = child_runs(parent)["sft"]
    assert run.info.run_id == card["mlflow_run_id"]
    assert "model/model.safetensors" in artifact_paths(run.info.run_id, "model")


def test_sft_without_a_pretrained_input_trains_the_mounted_path(
    tiny_datasets, tmp_path, parent
) -> None:
    """Without ``pretrained``, ``base_model_path`` is the base model: a folder without weights
    fails the step before any training."""
    (tmp_path / "mounted").mkdir()
    (tmp_path / "mounted" / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="no weights"):
        sft_multitask.python_func(
            config=preset(sft=SFT),
            datasets=artifact(Dataset, tiny_datasets),
            base_model_path=str(tmp_path / "mounted"),
            tasks="rewrite",
            parent_run_id=parent,
            model=artifact(Model, tmp_path / "model"),
            metrics=artifact(Metrics, tmp_path / "m.json"),
            report=artifact(Markdown, tmp_path / "r.md"),
        )
    assert not (tmp_path / "model").exists()


def test_grpo_aligns_the_sft_model_and_reports_every_reward(
    tiny_model, tiny_market, tiny_datasets, tiny_labels, tmp_path, parent
) -> None:
    """The policy in the Model output, each weighted reward's first/last means in the Metrics
    output, the report copied, and a ``grpo`` run under the pipeline run with the model's files."""
    metrics, report = artifact(Metrics, tmp_path / "m.json"), artifact(Markdown, tmp_path / "r.md")
    grpo_align.python_func(
        config=preset(grpo=GRPO),
        datasets=artifact(Dataset, tiny_datasets),
        market=artifact(Dataset, tiny_market),
        sft_model=artifact(Model, tiny_model),
        labels=artifact(Dataset, tiny_labels.parent),
        parent_run_id=parent,
        model=artifact(Model, tmp_path / "model"),
        metrics=metrics,
        report=report,
    )
    out = tmp_path / "model"
    load_model(out, "GRPO policy")
    card = _card(out)
    assert card["step"] == "grpo" and card["config"]["model"] == str(tiny_model)
    assert metrics.metadata["steps"] == 2
    weighted = {name for name, w in card["config"]["reward_weights"].items() if w}
    for name in weighted:
        assert f"rewards/{name}/first_20pct" in metrics.metadata, name
    assert (tmp_path / "r.md").read_text() == (out / "grpo_report.md").read_text()
    run = child_runs(parent)["grpo"]
    assert run.info.run_id == card["mlflow_run_id"]
    assert "model/model.safetensors" in artifact_paths(run.info.run_id, "model")


def test_grpo_refuses_a_batch_that_splits_a_group(
    tiny_model, tiny_market, tiny_datasets, tiny_labels, tmp_path, parent
) -> None:
    """The preset's ``grpo:`` section reaches the library's checks: a batch that is not a
    multiple of the group size fails before training."""
    with pytest.raises(ConfigError, match="not divisible by num_generations"):
        grpo_align.python_func(
            config=preset(grpo={**GRPO, "batch_size": 6}),
            datasets=artifact(Dataset, tiny_datasets),
            market=artifact(Dataset, tiny_market),
            sft_model=artifact(Model, tiny_model),
            labels=artifact(Dataset, tiny_labels.parent),
            parent_run_id=parent,
            model=artifact(Model, tmp_path / "model"),
            metrics=artifact(Metrics, tmp_path / "m.json"),
            report=artifact(Markdown, tmp_path / "r.md"),
        )
    assert not (tmp_path / "model").exists()
