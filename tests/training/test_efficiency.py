"""One GPU used well (training/efficiency.py, training/sft.py): the SFT options that reach TRL or
the model only when set, their checks, the model FLOPs per token, the device's peak by its name
and MFU, and how the SFT report says them. No GPU here: device names are passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from qrewrite.errors import ConfigError
from qrewrite.training.common import run_identity
from qrewrite.training.efficiency import (
    check_efficiency_environment,
    device_peak_tflops,
    linear_weights,
    model_flops_per_token,
    model_flops_utilization,
    peak_tflops,
)
from qrewrite.training.sft import SFTResult, SFTStepConfig, sft_arguments, sft_markdown

OUT = Path("/out/checkpoints")
pytestmark = pytest.mark.filterwarnings("ignore:.*checkpointing.*deprecated:FutureWarning")


@pytest.mark.parametrize(
    ("name", "peak"),
    [
        ("NVIDIA H100 80GB HBM3", 989.0),  # SXM
        ("NVIDIA H100 PCIe", 756.0),
        ("NVIDIA H100 NVL", 835.0),
        ("NVIDIA H200", 989.0),
        ("NVIDIA H200 NVL", 835.0),
        ("NVIDIA GH200 480GB", 989.0),
        ("NVIDIA A100-SXM4-80GB", 312.0),
        ("NVIDIA A100 80GB PCIe", 312.0),
        ("NVIDIA L4", 121.0),
        ("NVIDIA L40S", 362.0),
        ("NVIDIA A10", 125.0),
        ("NVIDIA A10G", None),  # not in the table: no guess
        ("NVIDIA L40", None),
        ("Tesla T4", None),
        (None, None),  # the CPU
    ],
)
def test_the_peak_is_matched_on_the_device_name(name: str | None, peak: float | None) -> None:
    assert device_peak_tflops(name) == peak


def test_a_preset_peak_wins_over_the_table() -> None:
    assert peak_tflops(0.0, "NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops(400.0, "NVIDIA H100 80GB HBM3") == 400.0
    assert peak_tflops(100.0, None) == 100.0  # a measured CPU or an unlisted GPU
    assert peak_tflops(0.0, None) is None


def test_mfu_arithmetic() -> None:
    n = 494_000_000  # Qwen2.5-0.5B's linear weights, the tied LM head included
    assert model_flops_per_token(n, full_fine_tuning=True) == 6 * n
    assert model_flops_per_token(n, full_fine_tuning=False) == 4 * n  # LoRA: no weight grads
    flops = model_flops_per_token(n, full_fine_tuning=True)
    # 100k tokens/s on one H100 SXM: 6 x 494M x 1e5 / 989e12
    assert model_flops_utilization(flops, 100_000, 989.0) == pytest.approx(0.29969, abs=1e-5)
    # the same tokens/s over two processes' devices is half the utilisation
    assert model_flops_utilization(flops, 100_000, 989.0, devices=2) == pytest.approx(
        0.149848, abs=1e-5
    )
    assert model_flops_utilization(flops, 100_000, None) is None  # CPU or an unknown GPU
    assert model_flops_utilization(flops, None, 989.0) is None  # no tokens counted


def test_linear_weights_count_the_head_once_and_skip_the_embedding_lookup() -> None:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    shape = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
    heads = {"num_attention_heads": 4, "num_key_value_heads": 2}
    for tied in (True, False):
        model = Qwen2ForCausalLM(
            Qwen2Config(vocab_size=100, tie_word_embeddings=tied, **shape, **heads)
        )
        per_layer = 32 * 32 + 2 * 32 * 16 + 32 * 32 + 3 * 32 * 64  # q, k and v, o, MLP
        assert linear_weights(model) == 2 * per_layer + 100 * 32  # layers + the LM head


def test_the_efficiency_options_reach_trl_only_when_set() -> None:
    from trl import SFTConfig

    plain = sft_arguments(SFTStepConfig(base_model="x"), output_dir=OUT, progress=False)
    assert "padding_free" not in plain and "use_liger_kernel" not in plain
    config = SFTStepConfig(base_model="x", packing=True, padding_free=True, use_liger_kernel=True)
    config.check()
    arguments = sft_arguments(config, output_dir=OUT, progress=False)
    assert {k: v for k, v in arguments.items() if k not in plain} == {
        "padding_free": True,
        "use_liger_kernel": True,
    }
    args = SFTConfig(**arguments)  # TRL takes them
    assert args.padding_free and args.packing and args.use_liger_kernel


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"padding_free": True}, r"sft\.padding_free needs sft\.packing: true"),
        ({"attn_implementation": "flash"}, r"sft\.attn_implementation='flash': expected one of"),
        ({"peak_tflops": -1.0}, r"sft\.peak_tflops=-1\.0"),
    ],
)
def test_efficiency_mistakes_are_one_line(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as e:
        SFTStepConfig(base_model="x", **settings).check()
    assert "\n" not in str(e.value)


def test_what_this_machine_cannot_run_is_refused_before_loading() -> None:
    flash = SFTStepConfig(base_model="x", attn_implementation="flash_attention_2")
    with pytest.raises(ConfigError, match="flash_attention_2 needs a GPU"):
        check_efficiency_environment("sft", flash, cuda=False)
    liger = SFTStepConfig(base_model="x", use_liger_kernel=True)
    with pytest.raises(ConfigError, match="use_liger_kernel needs a GPU"):
        check_efficiency_environment("sft", liger, cuda=False)
    import importlib.util

    if not importlib.util.find_spec("liger_kernel"):
        with pytest.raises(ConfigError, match="needs the liger-kernel package"):
            check_efficiency_environment("sft", liger, cuda=True)
    if not importlib.util.find_spec("flash_attn"):
        with pytest.raises(ConfigError, match="needs the flash-attn package"):
            check_efficiency_environment("sft", flash, cuda=True)
    for fine in (SFTStepConfig(), SFTStepConfig(attn_implementation="sdpa", packing=True)):
        check_efficiency_environment("sft", fine, cuda=False)


def test_the_attention_kernel_is_chosen_when_the_model_loads(tiny_model: Path) -> None:
    from qrewrite.training.models import load_model

    assert (
        load_model(tiny_model, attn_implementation="eager").config._attn_implementation == "eager"
    )
    assert load_model(tiny_model).config._attn_implementation == "sdpa"  # transformers' default


def test_packed_sequences_stay_apart_under_sdpa() -> None:
    """Packing without FlashAttention (the cluster preset: sdpa): TRL's padding-free batches
    give position ids and no attention mask, and train without a cache; transformers then masks
    each packed example off from the others, so packing changes no example's logits."""
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(0)
    config = Qwen2Config(
        vocab_size=100,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        attn_implementation="sdpa",
    )
    model = Qwen2ForCausalLM(config).eval()
    a, b = torch.randint(0, 100, (1, 5)), torch.randint(0, 100, (1, 7))
    with torch.no_grad():
        alone = [model(input_ids=x, use_cache=False).logits for x in (a, b)]
        positions = torch.cat([torch.arange(5), torch.arange(7)])[None]
        packed = model(input_ids=torch.cat([a, b], 1), position_ids=positions, use_cache=False)
    torch.testing.assert_close(packed.logits[:, :5], alone[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.logits[:, 5:], alone[1], atol=1e-5, rtol=1e-5)


def _result(**changes: Any) -> SFTResult:
    values: dict[str, Any] = {
        "qrewrite_version": "0",
        "config": {},
        "tasks": ["rewrite"],
        "train_examples": 100,
        "steps": 10,
        "resumed_from": None,
        "train_seconds": 2.0,
        "tokens_seen": 200_000,
        "tokens_per_second": 100_000.0,
        "model_flops_per_token": 2.964e9,
        "device": "NVIDIA H100 80GB HBM3",
        "peak_tflops": 989.0,
        "mfu": 0.2997,
        "loss_first_20pct": 2.0,
        "loss_last_20pct": 1.0,
        "eval_loss": 1.1,
        "tagging": {},
        "mlflow_run_id": "r1",
    }
    return SFTResult(**{**values, **changes})


def test_the_report_says_tokens_per_second_and_mfu() -> None:
    result = _result()
    assert result.summary_lines("out")[-2:] == [
        "sft: 100,000 tokens/s at 2.96 GFLOP/token, MFU 30.0% (989 TFLOP/s bf16 peak, "
        "NVIDIA H100 80GB HBM3)",
        "sft: MLflow run r1",  # still the last line (the components and tests read it)
    ]
    assert "- throughput: 100,000 tokens/s at 2.96 GFLOP/token, MFU 30.0%" in sft_markdown(
        result.to_dict()
    )
    cpu = _result(device="cpu", peak_tflops=None, mfu=None)
    assert "MFU n/a (CPU)" in cpu.summary_lines("out")[-2]
    unknown = _result(device="Tesla T4", peak_tflops=None, mfu=None)
    assert "no peak known for this GPU: set peak_tflops" in unknown.throughput()


def test_a_checkpoint_identity_ignores_the_new_options_at_their_defaults(tmp_path: Path) -> None:
    plain = run_identity(SFTStepConfig(base_model="x"), tmp_path, None)["config"]
    new = {"padding_free", "attn_implementation", "use_liger_kernel", "peak_tflops"}
    assert not new & set(plain)
    packed = run_identity(
        SFTStepConfig(base_model="x", attn_implementation="sdpa", peak_tflops=989.0),
        tmp_path,
        None,
    )["config"]
    assert packed["attn_implementation"] == "sdpa" and "peak_tflops" not in packed
