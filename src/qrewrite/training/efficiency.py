"""How well a training run uses its accelerator: the model's FLOPs per token, the device's peak
and the model FLOPs utilisation (MFU), and the checks of the options that make one GPU train
faster (attention kernel, padding-free batches, Liger kernels).

MFU = achieved model FLOPs per second / the devices' peak (PaLM's definition). Model FLOPs per
token count the matrix multiplies of one training step, nothing recomputed (gradient
checkpointing's second forward is not counted, so MFU does not reward it):

- N = the weights of every linear layer, the LM head included (the input embedding is a lookup,
  not a multiply; a tied embedding is counted once, as the head);
- forward 2N, backward 2N for the activation gradients, and 2N more for the weight gradients
  when every weight trains: **6N** for full fine-tuning, **4N** with LoRA (the frozen weights get
  no weight gradient; the adapters' own FLOPs, 2-4% of a layer's at r=16, are left out);
- the attention scores (PaLM's 12·L·d·T per token, T the sequence length) are left out: for the
  Qwen2.5-0.5B shape at 256 tokens they would add 2-3% to 6N, at this project's ~40-token
  examples under 0.5%.

Tokens are the ones TRL counts (``num_tokens``: real tokens of every process, padding not
included), so padding and idle time both count against MFU.
"""

from __future__ import annotations

import importlib.util
import re
from typing import Any

from qrewrite.errors import ConfigError

# attention kernels a model may load with ("" keeps the model's default: sdpa where torch has it)
ATTENTION = ("", "sdpa", "flash_attention_2", "eager")

# dense bf16 peaks in TFLOP/s (no sparsity), from the vendors' data sheets, matched in order on
# torch.cuda.get_device_name(); a device not listed has no MFU unless the preset sets peak_tflops
PEAK_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    (r"\bH100\b.*\bPCIE\b", 756.0),
    (r"\bH100\b.*\bNVL\b", 835.0),
    (r"\bH200\b.*\bNVL\b", 835.0),
    (r"\bGH200\b", 989.0),
    (r"\bH100\b", 989.0),  # SXM ("NVIDIA H100 80GB HBM3")
    (r"\bH200\b", 989.0),
    (r"\bB200\b", 2250.0),
    (r"\bA100\b", 312.0),
    (r"\bL40S\b", 362.0),
    (r"\bL4\b", 121.0),
    (r"\bA10\b", 125.0),
)


def device_peak_tflops(device_name: str | None) -> float | None:
    """The dense bf16 peak of a GPU by its name (``torch.cuda.get_device_name``); None for the
    CPU (``device_name`` None) or a GPU the table does not know."""
    if not device_name:
        return None
    name = device_name.upper()
    for pattern, peak in PEAK_BF16_TFLOPS:
        if re.search(pattern, name):
            return peak
    return None


def cuda_device_name() -> str | None:
    """The name of the GPU training runs on; None on the CPU."""
    import torch

    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None


def peak_tflops(override: float, device_name: str | None) -> float | None:
    """The peak MFU is measured against: ``override`` when set (> 0), else the table's."""
    return float(override) if override > 0 else device_peak_tflops(device_name)


def linear_weights(model: Any) -> int:
    """N: the weights of every ``nn.Linear`` of ``model`` (the LM head included, each tied
    tensor once), the parameters a token is multiplied by."""
    import torch

    seen: set[int] = set()
    total = 0
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and id(module.weight) not in seen:
            seen.add(id(module.weight))
            total += module.weight.numel()
    return total


def model_flops_per_token(weights: int, *, full_fine_tuning: bool) -> float:
    """Training FLOPs per token for ``weights`` (N, :func:`linear_weights`): 6N when every
    weight trains, 4N with LoRA (no weight gradients for the frozen ones)."""
    return float((6 if full_fine_tuning else 4) * weights)


def model_flops_utilization(
    flops_per_token: float,
    tokens_per_second: float | None,
    peak: float | None,
    *,
    devices: int = 1,
) -> float | None:
    """Achieved model FLOP/s over the ``devices``' peak (``peak`` TFLOP/s each), 0..1; None
    when the peak or the throughput is unknown."""
    if not peak or not tokens_per_second or devices < 1:
        return None
    return flops_per_token * tokens_per_second / (peak * 1e12 * devices)


def check_efficiency_options(step: str, options: Any) -> None:
    """Refuse, before anything loads, values that are not options and what TRL would refuse:
    padding-free batches without packing (TRL does not enforce ``max_length`` then)."""
    if options.attn_implementation not in ATTENTION:
        raise ConfigError(
            f"{step}.attn_implementation={options.attn_implementation!r}: expected one of "
            + ", ".join(a for a in ATTENTION if a)
            + " (or empty: the model's default)"
        )
    if options.padding_free and not options.packing:
        raise ConfigError(
            f"{step}.padding_free needs {step}.packing: true (TRL refuses padding-free batches "
            "without packing when max_length is set; packing already trains padding-free)"
        )
    if options.peak_tflops < 0:
        raise ConfigError(f"{step}.peak_tflops={options.peak_tflops}: expected >= 0 (0: by GPU)")


def check_efficiency_environment(step: str, options: Any, *, cuda: bool) -> None:
    """Refuse, before anything loads, an option this machine cannot run: FlashAttention or
    Liger without a GPU or without their package."""
    if options.attn_implementation == "flash_attention_2":
        if not cuda:
            raise ConfigError(
                f"{step}.attn_implementation=flash_attention_2 needs a GPU; use sdpa on the CPU"
            )
        if not importlib.util.find_spec("flash_attn"):
            raise ConfigError(
                f"{step}.attn_implementation=flash_attention_2 needs the flash-attn package, "
                "which this image lacks; use sdpa, or install flash-attn in the training image"
            )
    if options.use_liger_kernel:
        if not cuda:
            raise ConfigError(f"{step}.use_liger_kernel needs a GPU (Triton kernels)")
        if not importlib.util.find_spec("liger_kernel"):
            raise ConfigError(
                f"{step}.use_liger_kernel needs the liger-kernel package, which this image "
                "lacks; set use_liger_kernel: false, or install liger-kernel in the training image"
            )
