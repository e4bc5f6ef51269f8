"""Tiny end to end: pretrain -> SFT -> GRPO on the tiny market, in about a minute of CPU.

Quality figures (tagging vs majority class, reward first vs last steps) are measured on demo data
by `make demo` and recorded in docs/benchmarks.md; this test asserts that every step trains, saves
a loadable model, resumes from a checkpoint, and logs to MLflow.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from datasets import load_from_disk

from qrewrite.cli import main
from qrewrite.errors import ConfigError
from qrewrite.training.grpo import GRPOStepConfig, grpo
from qrewrite.training.models import (
    check_model_dir,
    load_catalog_words,
    load_model,
    load_tokenizer,
)
from qrewrite.training.pretrain import PretrainConfig, pretrain
from qrewrite.training.sft import SFTResult, SFTStepConfig, sft

pytestmark = pytest.mark.slow

TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}


@pytest.fixture(scope="module")
def tracking(tmp_path_factory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(scope="module")
def pretrained(tiny_market, tiny_mined, tiny_datasets, tracking, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("pretrained")
    cfg = PretrainConfig(
        vocab_size=600,
        max_steps=25,
        batch_size=16,
        embedding_init="minilm",  # the presets' start
        tracking_uri=tracking,
        **TINY,
    )
    result = pretrain(
        cfg,
        data_dir=tiny_market,
        mined_dir=tiny_mined,
        out_dir=out,
        datasets_dir=tiny_datasets,
        progress=False,
    )
    assert result.excluded_eval_queries > 0  # eval queries never reach pretraining
    assert result.loss_last_20pct < result.loss_first_20pct
    # the report on disk is the result, key for key
    assert json.loads((out / "pretrain_report.json").read_text()) == json.loads(
        json.dumps(result.to_dict())
    )
    return out


@pytest.fixture(scope="module")
def sft_model(pretrained, tiny_datasets, tracking, tmp_path_factory) -> tuple[Path, SFTResult]:
    out = tmp_path_factory.mktemp("sft")
    cfg = SFTStepConfig(
        base_model=str(pretrained),
        max_steps=30,
        batch_size=16,
        learning_rate=2e-3,
        save_steps=10,
        tagging_eval_pairs=40,
        tracking_uri=tracking,
    )
    return out, sft(cfg, datasets_dir=tiny_datasets, out_dir=out, progress=False)


def test_pretrain_saves_a_model_with_a_chat_tokenizer(pretrained: Path) -> None:
    check_model_dir(pretrained)
    tok = load_tokenizer(pretrained)
    assert tok.eos_token == "<|im_end|>"
    text = tok.apply_chat_template([{"role": "user", "content": "red shoes"}], tokenize=False)
    assert text.endswith("<|im_end|>\n")


def test_sft_loss_falls_and_tagging_is_scored(sft_model, tiny_datasets) -> None:
    out, result = sft_model
    assert result.loss_last_20pct < result.loss_first_20pct
    assert result.tasks == ["rewrite", "tag", "normalize"]
    train = load_from_disk(str(tiny_datasets / "sft"))["train"]
    assert result.train_examples == len(train)  # every task, the normalisation one too
    assert "normalize" in set(train["task"])
    t = result.tagging
    assert t["pairs"] == 40 and 0 <= t["tagging_accuracy"] <= 1
    assert {"majority_accuracy", "tagging_macro_f1"} <= set(t)
    assert not (out / "checkpoints").exists()  # removed once the merged model is saved
    card = json.loads((out / "qrewrite_model.json").read_text())
    assert card["step"] == "sft"
    assert card["tagging_prompt"] == "conversation"  # the form the datasets ask task B in
    report = json.loads((out / "sft_report.json").read_text())
    assert report == json.loads(json.dumps(result.to_dict()))
    assert list(report) == [
        "qrewrite_version",
        "config",
        "tasks",
        "train_examples",
        "steps",
        "resumed_from",
        "train_seconds",
        "tokens_seen",
        "tokens_per_second",
        "model_flops_per_token",
        "device",
        "peak_tflops",
        "mfu",
        "loss_first_20pct",
        "loss_last_20pct",
        "eval_loss",
        "tagging",
        "mlflow_run_id",
    ]
    load_model(out, "SFT model")
    # the catalog's words travel with the model (the rewriter's spelling rule reads them)
    assert load_catalog_words(out) == load_catalog_words(tiny_datasets) is not None


def test_metrics_reach_mlflow(sft_model, tracking) -> None:
    import mlflow

    _, result = sft_model
    run = mlflow.MlflowClient(tracking).get_run(result.mlflow_run_id)
    assert "sft/loss" in run.data.metrics and "sft/tagging_accuracy" in run.data.metrics
    assert run.data.params["sft.tasks"] == "rewrite,tag,normalize"
    # throughput, and MFU where the device's peak is known (never on the CPU)
    assert run.data.metrics["sft/model_flops_per_token"] == result.model_flops_per_token > 0
    assert ("sft/mfu" in run.data.metrics) == (result.mfu is not None)


def test_sft_resumes_from_its_last_checkpoint(pretrained, tiny_datasets, tracking, tmp_path):
    base = SFTStepConfig(
        base_model=str(pretrained),
        tasks="rewrite",
        batch_size=16,
        save_steps=4,
        keep_checkpoints=True,
        tracking_uri=tracking,
    )
    base.max_steps = 4
    first = sft(base, datasets_dir=tiny_datasets, out_dir=tmp_path, progress=False)
    assert first.resumed_from is None and (tmp_path / "checkpoints" / "checkpoint-4").is_dir()
    base.max_steps = 8  # as if the first run had been killed after step 4
    second = sft(base, datasets_dir=tiny_datasets, out_dir=tmp_path, progress=False)
    assert second.resumed_from is not None and second.resumed_from.endswith("checkpoint-4")
    assert second.steps == 8


def test_sft_never_resumes_a_checkpoint_of_other_data(
    pretrained, tiny_datasets, tracking, tmp_path, caplog
):
    cfg = SFTStepConfig(
        base_model=str(pretrained),
        tasks="rewrite",
        batch_size=16,
        max_steps=4,
        save_steps=4,
        keep_checkpoints=True,
        tracking_uri=tracking,
    )
    sft(cfg, datasets_dir=tiny_datasets, out_dir=tmp_path, progress=False)
    cfg.tasks = "rewrite,tag"  # other training data: the old checkpoint must not be resumed
    cfg.max_steps = 6
    again = sft(cfg, datasets_dir=tiny_datasets, out_dir=tmp_path, progress=False)
    assert again.resumed_from is None and again.steps == 6
    assert "checkpoints from another run" in caplog.text


def test_grpo_logs_every_reward_and_saves_the_policy(
    sft_model, tiny_datasets, tiny_market, tracking, tmp_path
) -> None:
    # an SFT model saved before task B asked in task A's conversation: its card names no form
    model = tmp_path / "sft"
    shutil.copytree(sft_model[0], model)
    card = json.loads((model / "qrewrite_model.json").read_text())
    del card["tagging_prompt"]
    (model / "qrewrite_model.json").write_text(json.dumps(card))
    out = tmp_path / "grpo"
    cfg = GRPOStepConfig(
        model=str(model), max_steps=6, batch_size=8, num_generations=4, tracking_uri=tracking
    )
    result = grpo(
        cfg, datasets_dir=tiny_datasets, data_dir=tiny_market, out_dir=out, progress=False
    )
    assert result.steps == 6
    assert set(result.rewards) == {n for n, w in cfg.reward_weights.items() if w}
    for values in result.rewards.values():
        assert 0.0 <= values["first_20pct"] <= 1.0
    assert (out / "grpo_rewards.png").stat().st_size > 0
    report = json.loads((out / "grpo_report.json").read_text())
    assert report == json.loads(json.dumps(result.to_dict()))
    # the fixed probe: the same held-out prompts scored by every reward before and after
    probe = result.probe
    assert probe["prompts"] > 0
    assert set(probe["before"]) == set(probe["after"]) == {*result.rewards, "total"}
    for side in ("before", "after"):
        weighted = sum(cfg.reward_weights[n] * probe[side][n] for n in result.rewards)
        assert probe[side]["total"] == pytest.approx(weighted)
    assert "## Probe" in (out / "grpo_report.md").read_text()
    load_model(out, "GRPO policy")
    assert load_catalog_words(out) == load_catalog_words(tiny_datasets) is not None
    # the policy grades as the SFT model it started from learnt to
    assert json.loads((out / "qrewrite_model.json").read_text())["tagging_prompt"] == "message"


def test_teacher_judge_grades_rewrites(tiny_market, tiny_labels, monkeypatch) -> None:
    from qrewrite.labeling.teacher import Teacher
    from qrewrite.training.grpo import build_judge
    from tests.labeling.fakes import TrigramEncoder

    monkeypatch.setattr(Teacher, "encoder", property(lambda self: TrigramEncoder()))
    judge = build_judge(GRPOStepConfig(model="m", judge="teacher"), tiny_market, tiny_labels)
    p = judge(["red running shoes", "red running shoes"], ["red running shoes", "blue mug"])
    assert p[0] > p[1]


def test_bad_base_model_and_batch_fail_before_training(tiny_datasets, tmp_path, capsys) -> None:
    base = tmp_path / "base"
    base.mkdir()
    (base / "config.json").write_text("{}")
    with pytest.raises(ConfigError, match="no weights"):
        sft(
            SFTStepConfig(base_model=str(base)),
            datasets_dir=tiny_datasets,
            out_dir=tmp_path / "o",
        )
    with pytest.raises(ConfigError, match="is inside\\) the input"):  # never into the base model
        sft(SFTStepConfig(base_model=str(base)), datasets_dir=tiny_datasets, out_dir=base / "o")
    code = main(
        [
            "grpo",
            f"--datasets={tiny_datasets}",
            f"--data={base}",
            f"--model={base}",
            f"--out={tmp_path / 'g'}",
            "--set=batch_size=6",
        ]
    )
    err = capsys.readouterr().err
    assert code == 3 and "not divisible by num_generations" in err
    assert len(err.strip().splitlines()) == 1
