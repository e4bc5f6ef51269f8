"""What the training steps share: device precision, trainer arguments, curves and summaries."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path
from typing import Any

from qrewrite.errors import ConfigError
from qrewrite.training.options import (
    DistributedOptions,
    LoraOptions,
    TrainerOptions,
    check_scheduler,
    merge_training_args,
)

log = logging.getLogger(__name__)


def quiet_libraries() -> None:
    """Progress bars of dataset maps and saves are noise next to the trainer's own bar."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # TRL's configs still set the field transformers 5 renamed; nothing for a user to act on
    warnings.filterwarnings("ignore", message=".*checkpointing.*deprecated", category=FutureWarning)
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def use_bf16(setting: str) -> bool:
    """``auto``: bf16 on a GPU that supports it, fp32 on CPU."""
    import torch

    if setting == "auto":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if setting in ("true", "bf16"):
        if not torch.cuda.is_available():
            raise ConfigError("precision=bf16 needs a GPU; use precision=auto on CPU")
        return True
    if setting in ("false", "fp32"):
        return False
    raise ConfigError(f"precision={setting!r}: expected auto, bf16 or fp32")


def trainer_arguments(
    options: TrainerOptions,
    *,
    step: str,
    args_class: type,
    output_dir: Path,
    progress: bool,
    step_arguments: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The keyword arguments of the step's ``args_class`` (``TrainingArguments``, TRL's
    ``SFTConfig``/``GRPOConfig``): what every step sets the same way from its options, then the
    step's own ``step_arguments``, then ``options.training_args`` passed through (a key already
    set is refused with a :class:`ConfigError`, never silently overridden)."""
    arguments = {
        "output_dir": str(output_dir),
        "seed": options.seed,
        "learning_rate": options.learning_rate,
        "per_device_train_batch_size": options.batch_size,
        "gradient_accumulation_steps": options.gradient_accumulation_steps,
        "num_train_epochs": options.epochs,
        "max_steps": options.max_steps,
        "lr_scheduler_type": options.lr_scheduler_type,
        "warmup_steps": options.warmup_steps,
        "logging_steps": options.logging_steps,
        "bf16": use_bf16(options.precision),
        "gradient_checkpointing": options.gradient_checkpointing,
        "report_to": "none",
        "disable_tqdm": not progress,
        "dataloader_num_workers": 0,
        "use_cpu": not _cuda(),
    }
    if isinstance(options, DistributedOptions):
        from qrewrite.training.distributed import strategy_arguments

        # FSDP or DeepSpeed settings from configs/distributed/ ({} for one process and DDP)
        arguments.update(strategy_arguments(step, options))
    twice = sorted(set(arguments) & set(step_arguments or {}))
    if twice:  # a step's own argument never replaces a shared one unnoticed
        raise ValueError(f"{step}: {', '.join(twice)} set by trainer_arguments already")
    return merge_training_args(step, {**arguments, **(step_arguments or {})}, options, args_class)


def check_schedule(step: str, config: TrainerOptions) -> None:
    """Refuse a training schedule that trains nothing (a silently useless model otherwise), or a
    scheduler transformers does not know."""
    if config.max_steps <= 0 and config.epochs <= 0:
        raise ConfigError(
            f"{step}: epochs={config.epochs} and max_steps={config.max_steps} train for no step; "
            "set epochs > 0 (or max_steps > 0)"
        )
    if config.learning_rate <= 0:
        raise ConfigError(f"{step}.learning_rate={config.learning_rate}: expected > 0")
    if config.batch_size < 1:
        raise ConfigError(f"{step}.batch_size={config.batch_size}: expected >= 1")
    check_scheduler(step, config)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def series(log_history: list[dict[str, Any]], key: str) -> list[tuple[int, float]]:
    return [(int(h["step"]), float(h[key])) for h in log_history if key in h and "step" in h]


def tokens_seen(log_history: list[dict[str, Any]]) -> int:
    """Tokens trained on, as TRL counts them in its logs (``num_tokens``)."""
    values = [v for _, v in series(log_history, "num_tokens")]
    return int(max(values)) if values else 0


def edge_means(values: list[float], fraction: float = 0.2) -> tuple[float, float]:
    """Mean of the first and of the last ``fraction`` of ``values`` (at least one each)."""
    if not values:
        return float("nan"), float("nan")
    n = max(1, int(len(values) * fraction))
    return sum(values[:n]) / n, sum(values[-n:]) / n


def plot_curves(curves: dict[str, list[tuple[int, float]]], title: str, path: Path) -> Path | None:
    """One line per curve against the step; None when there is nothing to draw."""
    curves = {k: v for k, v in curves.items() if v}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.8))
    for name, points in curves.items():
        ax.plot([p[0] for p in points], [p[1] for p in points], label=name, linewidth=1.4)
    ax.set_xlabel("step")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


IDENTITY_FILE = "run_identity.json"
# settings a resumed run may change: bookkeeping, and how long to train (a run may be extended)
_RESUME_NEUTRAL = {
    "resume",
    "keep_checkpoints",
    "tracking_uri",
    "experiment",
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "max_steps",
    "epochs",
    "trainjob_timeout_s",
    "trainjob_runtime",
    "peak_tflops",  # only what MFU is measured against
    # where a vLLM server is, not what is trained
    "vllm_server_base_url",
    "vllm_server_host",
    "vllm_server_port",
    "vllm_server_timeout",
}
# settings added after checkpoints recorded their identity: at these values they train as before,
# so a checkpoint written without them still belongs to the run
_IDENTITY_ADDED = {
    "lr_scheduler_type": "cosine",
    "training_args": {},
    "nodes": 1,
    "processes_per_node": 1,
    "distributed": "none",
    "padding_free": False,
    "attn_implementation": "",
    "use_liger_kernel": False,
    "vllm_mode": "colocate",
    "vllm_enable_sleep_mode": False,
    "vllm_tensor_parallel_size": 1,
    "vllm_max_model_length": 0,
}


def run_identity(config: Any, model_dir: str | Path, train: Any) -> dict[str, Any]:
    """What a checkpoint belongs to: the step's settings, starting weights and training data."""
    from dataclasses import asdict

    weights = sorted(Path(model_dir).glob("*.safetensors"))
    return {
        "config": {
            k: v
            for k, v in asdict(config).items()
            if k not in _RESUME_NEUTRAL and not (k in _IDENTITY_ADDED and v == _IDENTITY_ADDED[k])
        },
        "model": [(w.name, w.stat().st_size, int(w.stat().st_mtime)) for w in weights],
        "data": getattr(train, "_fingerprint", None),
    }


def last_checkpoint(output_dir: Path, identity: dict[str, Any] | None = None) -> str | None:
    """The newest ``checkpoint-N`` folder a killed run resumes from, if it belongs to this run.

    Checkpoints of another run (other settings, starting model or data) are removed with a
    warning: resuming them would silently train the wrong thing, or nothing at all.
    """
    from qrewrite.training.distributed import main_process_first

    # under torchrun every process asks; the main one removes stale checkpoints first
    with main_process_first():
        return _last_checkpoint(output_dir, identity)


def _last_checkpoint(output_dir: Path, identity: dict[str, Any] | None) -> str | None:
    import json
    import shutil

    from transformers.trainer_utils import get_last_checkpoint

    if not output_dir.is_dir():
        output_dir.mkdir(parents=True, exist_ok=True)
    found = get_last_checkpoint(str(output_dir))
    marker = output_dir / IDENTITY_FILE
    if identity is not None:
        saved = json.loads(marker.read_text()) if marker.exists() else None
        current = json.loads(json.dumps(identity, default=str))
        if found and saved != current:
            saved = saved or {}
            changed = [
                f"config.{k}"
                for k in current["config"]
                if saved.get("config", {}).get(k) != current["config"][k]
            ]
            changed += [k for k in ("model", "data") if saved.get(k) != current[k]]
            log.warning(
                "%s: checkpoints from another run (changed: %s); starting fresh",
                output_dir,
                ", ".join(changed) or "no identity recorded",
            )
            for stale in output_dir.glob("checkpoint-*"):
                shutil.rmtree(stale, ignore_errors=True)
            found = None
        marker.write_text(json.dumps(current, indent=2) + "\n")
    return found


def quiet_trainer(trainer: Any, progress: bool) -> Any:
    """Without a progress bar transformers prints every log line as a dict; the numbers go to
    MLflow and the step's report instead."""
    if not progress:
        from transformers.trainer_callback import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer


def lora_config(config: LoraOptions) -> Any:
    """PEFT LoRA settings from a step config's ``use_lora``/``lora_*`` fields (None: full
    fine-tuning)."""
    if not config.use_lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=config.lora_target_modules,
        task_type="CAUSAL_LM",
    )


def native_lm_head_on_cpu(model: Any, temperature: float = 1.0) -> Any:
    """On the CPU, score TRL's ``fused_lm_head=True`` calls with the plain LM head.

    TRL's trainers patch the model with a chunked LM head that never materialises the full
    logits: right for a GPU and a 150k vocabulary, but on the CPU, with the small model's few
    thousand tokens, its tiled kernel costs five times the plain projection (half of every SFT
    step). This keeps TRL's outputs (``FusedCausalLMOutput``: per-token log-probabilities,
    entropy, top-1 flags, the label mask and the loss) and computes them from the full
    projection, normalised over the labelled positions only.
    ``temperature`` divides the logits as TRL's head does (GRPO scores under its sampling
    temperature; SFT at 1). On a GPU, or for a model TRL did not patch, the model is returned
    unchanged.
    """
    import types

    import torch
    from trl.trainer.utils import FusedCausalLMOutput

    patched = model.get_base_model() if hasattr(model, "get_base_model") else model
    if torch.cuda.is_available() or "forward" not in vars(patched):
        return model
    fused_forward = patched.forward
    backbone = patched.base_model

    def forward(self, *args, fused_lm_head=False, labels=None, shift_labels=None, **kwargs):
        if not fused_lm_head or getattr(self.config, "output_router_logits", False):
            return fused_forward(
                *args,
                fused_lm_head=fused_lm_head,
                labels=labels,
                shift_labels=shift_labels,
                **kwargs,
            )
        items = kwargs.pop("num_items_in_batch", None)
        kwargs["use_cache"] = False
        hidden = backbone(*args, **kwargs).last_hidden_state
        if shift_labels is None:
            hidden, labels = hidden[:, :-1], labels[:, 1:]
        else:
            labels = shift_labels
        mask = labels != -100
        # the projection stays whole (its kernels sum as they always did, so training is the
        # same to the bit), but only the labelled rows are normalised: a prompt is most of each
        # row and its log-softmax, entropy and argmax over the vocabulary fed nothing
        logits = self.get_output_embeddings()(hidden)[mask].float() / temperature
        targets = labels[mask]
        log_softmax = torch.log_softmax(logits, dim=-1)
        picked = log_softmax.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
        log_probs = picked.new_zeros(mask.shape).masked_scatter(mask, picked)
        with torch.no_grad():
            entropy = -(log_softmax.exp() * log_softmax).sum(-1)
            entropy = entropy.new_zeros(mask.shape).masked_scatter(mask, entropy)
            is_top1 = mask.clone().masked_scatter(mask, logits.argmax(-1) == targets)
        loss = -log_probs.sum() / (mask.sum().clamp(min=1) if items is None else items)
        return FusedCausalLMOutput(
            loss=loss,
            log_probs=log_probs,
            entropy=entropy,
            is_top1=is_top1.to(log_probs.dtype),
            label_mask=mask,
        )

    patched.forward = types.MethodType(forward, patched)
    return model
