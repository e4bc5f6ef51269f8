"""The options every training step shares (training/options.py): flat preset keys, the
pass-through of other TrainingArguments fields, and the trainer arguments each step builds,
unchanged from before the options were shared (tests/training/presets_before_refactor.json)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from qrewrite.config import load_config
from qrewrite.errors import ConfigError
from qrewrite.training.common import (
    _cuda,
    check_schedule,
    run_identity,
    trainer_arguments,
    use_bf16,
)
from qrewrite.training.grpo import GRPOStepConfig, grpo_arguments
from qrewrite.training.options import LoraOptions, TrackingOptions, TrainerOptions
from qrewrite.training.pretrain import PretrainConfig, pretrain_arguments
from qrewrite.training.sft import SFTStepConfig, sft_arguments
from tests.test_config import (
    NEW_DISTRIBUTED_FIELDS,
    NEW_STEP_FIELDS,
    NEW_TRAINING_FIELDS,
    REMOVED,
)

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = json.loads((ROOT / "tests" / "training" / "presets_before_refactor.json").read_text())
STEPS = {"pretrain": PretrainConfig, "sft": SFTStepConfig, "grpo": GRPOStepConfig}
# defaults changed on purpose since the snapshot: task C, query normalisation
CHANGED_DEFAULTS = {"sft": {"tasks": "rewrite,tag,normalize"}}
# GRPO's reward registry gained keeps_values (weight 0 unless a preset sets it)
ADDED_REWARDS = {"keeps_values": 0.0, "no_repeats": 1.0}
# trainer arguments changed on purpose since the snapshot (issue 18): the cluster preset packs
# SFT batches, and its GRPO (use_vllm) names the colocated vLLM's settings
CHANGED_ARGUMENTS: dict[tuple[str, str], dict[str, Any]] = {
    ("cluster", "sft"): {"packing": True},
    ("cluster", "grpo"): {
        "vllm_mode": "colocate",
        "vllm_enable_sleep_mode": False,
        "vllm_tensor_parallel_size": 1,
        "vllm_max_model_length": None,
    },
}
OUT = Path("/out/checkpoints")


def _arguments(step: str, config: Any, progress: bool = False) -> dict[str, Any]:
    if step == "pretrain":
        denoising = "denoise" in config.objectives()
        return pretrain_arguments(config, output_dir=OUT, progress=progress, denoising=denoising)
    build = sft_arguments if step == "sft" else grpo_arguments
    return build(config, output_dir=OUT, progress=progress)


def test_every_step_config_shares_the_option_groups() -> None:
    for cls in STEPS.values():
        assert issubclass(cls, TrainerOptions) and issubclass(cls, TrackingOptions)
    assert issubclass(SFTStepConfig, LoraOptions) and issubclass(GRPOStepConfig, LoraOptions)
    assert not issubclass(PretrainConfig, LoraOptions)  # pretraining builds a model from scratch


@pytest.mark.parametrize("step", STEPS)
def test_each_step_keeps_its_defaults(step: str) -> None:
    values = json.loads(json.dumps(dataclasses.asdict(STEPS[step]())))
    distributed = NEW_DISTRIBUTED_FIELDS if step != "pretrain" else {}
    before = dict(SNAPSHOT["training_defaults"][step])
    for removed in REMOVED.get(step, ()):
        del before[removed]
    if "reward_weights" in before:
        before["reward_weights"] = {**before["reward_weights"], **ADDED_REWARDS}
    assert values == {
        **before,
        **CHANGED_DEFAULTS.get(step, {}),
        **NEW_TRAINING_FIELDS,
        **distributed,
        **NEW_STEP_FIELDS.get(step, {}),
    }


@pytest.mark.parametrize("preset", ["local", "tiny", "cluster"])
@pytest.mark.parametrize("step", STEPS)
def test_trainer_arguments_are_the_ones_built_before(preset: str, step: str) -> None:
    overrides = {"sft": ["base_model=x"], "grpo": ["model=x"]}.get(step, [])
    config = load_config(STEPS[step], preset, step, overrides)
    arguments = _arguments(step, config)
    expected = {
        **SNAPSHOT["trainer_arguments"][preset][step],
        **CHANGED_ARGUMENTS.get((preset, step), {}),
        "bf16": use_bf16(config.precision),
        "use_cpu": not _cuda(),
    }
    if step == "grpo":  # no_repeats, weighted 1.0 after not_copy in every preset since
        weights = list(expected["reward_weights"])
        weights.insert(SNAPSHOT["reward_weights_order"][preset].index("not_copy") + 1, 1.0)
        expected["reward_weights"] = weights
    assert json.loads(json.dumps(arguments)) == expected


def test_the_preset_keys_stay_flat(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text(
        "sft:\n  epochs: 4\n  use_lora: true\n  lora_r: 8\n  tracking_uri: sqlite:///x.db\n"
        "  lr_scheduler_type: linear\n  training_args: {weight_decay: 0.01}\n"
    )
    cfg = load_config(SFTStepConfig, preset, "sft", ["learning_rate=0.01"])
    assert (cfg.epochs, cfg.use_lora, cfg.lora_r, cfg.learning_rate) == (4.0, True, 8, 0.01)
    assert cfg.tracking_uri == "sqlite:///x.db" and cfg.lr_scheduler_type == "linear"
    assert cfg.training_args == {"weight_decay": 0.01}
    cfg = load_config(SFTStepConfig, None, None, ["training_args={max_grad_norm: 0.5}"])
    assert cfg.training_args == {"max_grad_norm": 0.5}
    with pytest.raises(ConfigError, match="training_args"):
        load_config(SFTStepConfig, None, None, ["training_args=7"])


def test_the_scheduler_is_settable_and_checked() -> None:
    cfg = SFTStepConfig(base_model="x", lr_scheduler_type="constant_with_warmup")
    assert _arguments("sft", cfg)["lr_scheduler_type"] == "constant_with_warmup"
    with pytest.raises(ConfigError, match=r"sft\.lr_scheduler_type='cosinus': expected one of"):
        check_schedule("sft", SFTStepConfig(lr_scheduler_type="cosinus"))


@pytest.mark.filterwarnings("ignore:.*checkpointing.*deprecated:FutureWarning")
def test_other_trainer_fields_pass_through() -> None:
    cfg = GRPOStepConfig(model="x", training_args={"weight_decay": 0.1, "max_grad_norm": 0.3})
    arguments = _arguments("grpo", cfg)
    assert (arguments["weight_decay"], arguments["max_grad_norm"]) == (0.1, 0.3)
    base = _arguments("grpo", GRPOStepConfig(model="x"))
    assert {k: v for k, v in arguments.items() if k not in cfg.training_args} == base
    from trl import GRPOConfig

    GRPOConfig(**arguments)  # TRL takes them


def test_an_unknown_pass_through_key_is_named(tmp_path: Path) -> None:
    cfg = SFTStepConfig(base_model="x", training_args={"weight_decy": 0.1})
    with pytest.raises(ConfigError) as e:
        _arguments("sft", cfg)
    message = str(e.value)
    assert "sft.training_args: unknown key 'weight_decy'" in message
    assert "did you mean 'weight_decay'" in message and "trl.SFTConfig" in message
    # a GRPO field is not an SFT one
    cfg = SFTStepConfig(base_model="x", training_args={"num_generations": 2})
    with pytest.raises(ConfigError, match="unknown key 'num_generations'"):
        _arguments("sft", cfg)


@pytest.mark.parametrize(
    ("step", "key", "message"),
    [
        ("sft", "learning_rate", "set sft.learning_rate instead"),
        ("sft", "per_device_train_batch_size", "set sft.batch_size instead"),
        ("grpo", "num_train_epochs", "set grpo.epochs instead"),
        ("sft", "save_steps", "set sft.save_steps instead"),
        ("grpo", "beta", "set grpo.beta instead"),
        ("sft", "completion_only_loss", "sft sets it itself"),
        ("pretrain", "packing", "pretrain sets it itself"),
        ("grpo", "report_to", "grpo sets it itself"),
    ],
)
def test_a_pass_through_key_the_step_sets_is_refused(step: str, key: str, message: str) -> None:
    base = {"sft": {"base_model": "x"}, "grpo": {"model": "x"}}.get(step, {})
    cfg = STEPS[step](**base, training_args={key: 1})
    with pytest.raises(ConfigError, match=rf"{step}\.training_args: '{key}' cannot be passed"):
        _arguments(step, cfg)
    with pytest.raises(ConfigError, match=message):
        _arguments(step, cfg)


def test_trainer_arguments_refuse_a_step_argument_that_a_shared_one_sets() -> None:
    from trl import SFTConfig

    with pytest.raises(ValueError, match="seed"):
        trainer_arguments(
            SFTStepConfig(),
            step="sft",
            args_class=SFTConfig,
            output_dir=OUT,
            progress=False,
            step_arguments={"seed": 3},
        )


def test_a_checkpoint_identity_ignores_the_new_fields_at_their_defaults(tmp_path: Path) -> None:
    plain = run_identity(SFTStepConfig(base_model="x"), tmp_path, None)["config"]
    assert not set(NEW_TRAINING_FIELDS) & set(plain)
    changed = SFTStepConfig(base_model="x", lr_scheduler_type="linear", training_args={"a": 1})
    config = run_identity(changed, tmp_path, None)["config"]
    assert config["lr_scheduler_type"] == "linear" and config["training_args"] == {"a": 1}
