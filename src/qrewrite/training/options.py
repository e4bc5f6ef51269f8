"""Options every training step shares: the trainer's schedule, LoRA, experiment tracking and
how many processes train (one in the step's pod, or a Kubeflow Trainer ``TrainJob``).

A step's config (``PretrainConfig``, ``SFTStepConfig``, ``GRPOStepConfig``) inherits the groups it
uses, so a preset section stays flat (``sft: {epochs: 4, use_lora: false}``, ``--set epochs=4``);
a step with other defaults redeclares the field with its own default.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field
from typing import Any

from qrewrite.errors import ConfigError
from qrewrite.tracking import DEFAULT_TRACKING_URI

# which TrainingArguments key each first-class option sets (trainer_arguments)
TRAINER_KEYS = {
    "seed": "seed",
    "learning_rate": "learning_rate",
    "batch_size": "per_device_train_batch_size",
    "gradient_accumulation_steps": "gradient_accumulation_steps",
    "epochs": "num_train_epochs",
    "max_steps": "max_steps",
    "lr_scheduler_type": "lr_scheduler_type",
    "warmup_steps": "warmup_steps",
    "logging_steps": "logging_steps",
    "precision": "bf16",
    "gradient_checkpointing": "gradient_checkpointing",
}
# TrainingArguments keys a distributed strategy sets (training/distributed.py): set
# ``distributed`` instead of passing them through ``training_args``
DISTRIBUTED_KEYS = {"deepspeed": "distributed", "fsdp": "distributed", "fsdp_config": "distributed"}


@dataclass(kw_only=True)
class TrainerOptions:
    """The schedule of a Hugging Face/TRL trainer; ``training_args`` passes any other field of
    the step's ``TrainingArguments`` class through (``training_args: {weight_decay: 0.01}``)."""

    seed: int = 7
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    learning_rate: float = 1e-3
    lr_scheduler_type: str = "cosine"  # a transformers SchedulerType: linear, constant, ...
    warmup_steps: int = 10
    logging_steps: int = 5
    precision: str = "auto"  # auto (bf16 on a GPU that has it), bf16 or fp32
    gradient_checkpointing: bool = False
    training_args: dict[str, Any] = field(default_factory=dict)


@dataclass(kw_only=True)
class LoraOptions:
    """PEFT LoRA adapters instead of full fine-tuning (``use_lora``)."""

    use_lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"


@dataclass(kw_only=True)
class TrackingOptions:
    """Where the step's MLflow run goes (``$MLFLOW_TRACKING_URI`` wins over ``tracking_uri``)."""

    tracking_uri: str = DEFAULT_TRACKING_URI
    experiment: str = "qrewrite"


@dataclass(kw_only=True)
class DistributedOptions:
    """How many processes train, and how they share the model (SFT and GRPO).

    One process (the default) trains in the step's own pod, as always. More than one
    (``nodes`` x ``processes_per_node``) runs the same step under torchrun in a Kubeflow Trainer
    ``TrainJob`` (``qrewrite.cluster``) with the strategy ``distributed`` names: ``ddp`` (the
    model on every process), ``fsdp``, ``deepspeed-zero2`` or ``deepspeed-zero3`` (settings from
    the files in ``configs/distributed/``).
    """

    nodes: int = 1
    processes_per_node: int = 1  # one per GPU on a GPU node
    distributed: str = "none"  # none (one process), ddp, fsdp, deepspeed-zero2, deepspeed-zero3
    trainjob_timeout_s: int = 86400  # the step fails (and its TrainJob is deleted) after this
    trainjob_runtime: str = "torch-distributed"  # the ClusterTrainingRuntime the job refers to

    def process_count(self) -> int:
        """Processes in all: more than one trains in a TrainJob."""
        return self.nodes * self.processes_per_node


def argument_fields(args_class: type) -> frozenset[str]:
    """The fields a ``TrainingArguments`` (or TRL config) class takes as keyword arguments."""
    return frozenset(f.name for f in dataclasses.fields(args_class) if f.init)


def check_training_args(step: str, options: TrainerOptions, args_class: type) -> None:
    """Refuse a ``training_args`` key that ``args_class`` does not have, naming the key."""
    if not isinstance(options.training_args, dict):
        raise ConfigError(f"{step}.training_args: expected a mapping of TrainingArguments fields")
    known = argument_fields(args_class)
    for key in options.training_args:
        if key not in known:
            close = difflib.get_close_matches(str(key), sorted(known), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ConfigError(
                f"{step}.training_args: unknown key {key!r}{hint}: not a field of "
                f"{args_class.__module__.split('.')[0]}.{args_class.__name__}"
            )


def check_scheduler(step: str, options: TrainerOptions) -> None:
    """``lr_scheduler_type`` names one of transformers' schedulers."""
    from transformers import SchedulerType

    names = [s.value for s in SchedulerType]
    if options.lr_scheduler_type not in names:
        raise ConfigError(
            f"{step}.lr_scheduler_type={options.lr_scheduler_type!r}: expected one of "
            + ", ".join(names)
        )


def merge_training_args(
    step: str, arguments: dict[str, Any], options: TrainerOptions, args_class: type
) -> dict[str, Any]:
    """``arguments`` with ``options.training_args`` added; a pass-through key the step already
    sets (from an option of its own or fixed by the step) is refused, never overridden."""
    check_training_args(step, options, args_class)
    taken = sorted(k for k in options.training_args if k in arguments)
    if taken:
        own = {f.name for f in dataclasses.fields(options)}  # type: ignore[arg-type]
        option = {**{v: k for k, v in TRAINER_KEYS.items()}, **DISTRIBUTED_KEYS}.get(taken[0])
        option = option or (taken[0] if taken[0] in own else None)
        how = f"set {step}.{option} instead" if option else f"{step} sets it itself"
        raise ConfigError(f"{step}.training_args: {taken[0]!r} cannot be passed through: {how}")
    return {**arguments, **options.training_args}
