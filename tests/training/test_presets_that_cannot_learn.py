"""A preset whose model cannot learn is refused before any work, with a one-line error (exit 3),
and a vocabulary that spells the shop's words out is warned about."""

from __future__ import annotations

import logging
import re

import pytest

from qrewrite.cli import main
from qrewrite.errors import ConfigError
from qrewrite.training.grpo import GRPOStepConfig
from qrewrite.training.pretrain import PretrainConfig, pretrain
from qrewrite.training.sft import SFTStepConfig, sft


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": 0}, "train for no step"),
        ({"learning_rate": 0.0}, "learning_rate=0.0"),
        ({"vocab_size": 300}, "too small for the shop's text"),
        ({"hidden_size": 130}, "not a multiple of num_attention_heads"),
        ({"objective": "mlm"}, "expected lm, denoise or lm+denoise"),
        ({"objective": "denoise", "denoise_pairs": 0}, "denoise_pairs must be >= 1"),
        ({"denoise_instruction": "tag"}, "expected one of rewrite, normalize"),
        ({"denoise_pairs_per_word": -1.0}, "must be >= 0"),
        ({"denoise_pairs": 500, "denoise_pairs_max": 100}, "denoise_pairs_max=100 is below"),
        ({"embedding_init": "glove"}, "embedding_init='glove': expected one of random, minilm"),
    ],
)
def test_pretrain_refuses_before_reading_anything(tmp_path, overrides, message) -> None:
    cfg = PretrainConfig(**overrides)
    with pytest.raises(ConfigError, match=re.escape(message)):
        pretrain(
            cfg,
            data_dir=tmp_path / "no-market",
            mined_dir=tmp_path / "no-mined",
            out_dir=tmp_path / "out",
        )
    assert not (tmp_path / "out").exists()


def test_sft_and_grpo_refuse_a_schedule_of_no_step(tmp_path) -> None:
    with pytest.raises(ConfigError, match="sft: epochs=0 and max_steps=-1 train for no step"):
        sft(SFTStepConfig(base_model="x", epochs=0), datasets_dir=tmp_path, out_dir=tmp_path / "o")
    with pytest.raises(ConfigError, match="grpo: epochs=0 and max_steps=0"):
        GRPOStepConfig(model="x", epochs=0, max_steps=0).check()


def test_cli_exit_code_is_the_config_one(tmp_path, capsys) -> None:
    code = main(
        [
            "pretrain",
            "--data",
            str(tmp_path),
            "--mined",
            str(tmp_path),
            "--out",
            str(tmp_path / "m"),
            "--set",
            "vocab_size=100",
        ]
    )
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pretrain.vocab_size=100" in err[0]


def test_a_vocabulary_that_spells_words_out_is_warned_about(
    tiny_market, tiny_mined, tmp_path, caplog
) -> None:
    cfg = PretrainConfig(
        vocab_size=512,  # the smallest accepted: valid, but too small for real text
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        max_steps=1,
        batch_size=4,
        tracking_uri=f"sqlite:///{tmp_path / 'm.db'}",
    )
    with caplog.at_level(logging.WARNING, logger="qrewrite.training.pretrain"):
        result = pretrain(
            cfg,
            data_dir=tiny_market,
            mined_dir=tiny_mined,
            out_dir=tmp_path / "out",
            progress=False,
        )
    assert result.tokens_per_word > 2.5
    assert any("too small for this shop's text" in r.getMessage() for r in caplog.records)


def test_a_bad_pass_through_trainer_argument_is_refused_before_reading_anything(tmp_path) -> None:
    cfg = PretrainConfig(training_args={"packing": True})
    with pytest.raises(ConfigError, match=r"pretrain\.training_args: 'packing' cannot be passed"):
        pretrain(
            cfg, data_dir=tmp_path / "none", mined_dir=tmp_path / "none", out_dir=tmp_path / "o"
        )
    with pytest.raises(ConfigError, match=r"sft\.training_args: unknown key 'no_such_field'"):
        sft(
            SFTStepConfig(base_model="x", training_args={"no_such_field": 1}),
            datasets_dir=tmp_path / "none",
            out_dir=tmp_path / "o",
        )
    assert not (tmp_path / "o").exists()
