"""Training with more than one process: the strategy's trainer arguments, who reports, and the
whole model at the end.

``sft`` and ``grpo`` run unchanged under torchrun (a Kubeflow Trainer ``TrainJob`` launches it,
``qrewrite.cluster``): every process trains; the main process (rank 0) alone logs to MLflow and
writes the model folder. The strategy (``distributed:`` in the step's preset section) is one of

- ``none``: one process (the step's own pod, as always);
- ``ddp``: every process holds the whole model; gradients are averaged (DDP);
- ``fsdp``: parameters, gradients and optimizer state sharded (PyTorch FSDP2);
- ``deepspeed-zero2``: gradients and optimizer state sharded (DeepSpeed ZeRO stage 2);
- ``deepspeed-zero3``: parameters too (ZeRO stage 3).

The settings of the last three ship as files (``configs/distributed/``, package
``qrewrite_presets``) and reach TRL as ``TrainingArguments`` (``fsdp_config``, ``deepspeed``),
the route every other trainer option takes (:func:`qrewrite.training.common.trainer_arguments`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path
from typing import Any

from qrewrite.environment import is_main_process, world_size
from qrewrite.errors import ConfigError
from qrewrite.training.options import DistributedOptions

log = logging.getLogger(__name__)

STRATEGIES = ("none", "ddp", "fsdp", "deepspeed-zero2", "deepspeed-zero3")
# the settings file of each strategy that has one, in configs/distributed/
STRATEGY_FILES = {
    "fsdp": "fsdp.json",
    "deepspeed-zero2": "zero2.json",
    "deepspeed-zero3": "zero3.json",
}
# strategies under which no process holds the whole model: it is gathered to be saved
SHARDED = frozenset({"fsdp", "deepspeed-zero3"})


def strategy_settings(strategy: str) -> dict[str, Any]:
    """The shipped settings of ``strategy`` (``configs/distributed/<file>``); {} for none/ddp."""
    name = STRATEGY_FILES.get(strategy)
    if name is None:
        return {}
    text = (resources.files("qrewrite_presets") / "distributed" / name).read_text("utf-8")
    return json.loads(text)


def check_distributed(step: str, options: DistributedOptions) -> None:
    """Refuse, before anything loads, a strategy that is not one, more processes without one,
    a sharding strategy for a single process, or DeepSpeed where it is not installed."""
    if options.distributed not in STRATEGIES:
        raise ConfigError(
            f"{step}.distributed={options.distributed!r}: expected one of {', '.join(STRATEGIES)}"
        )
    count = options.process_count()
    if count > 1 and options.distributed == "none":
        raise ConfigError(
            f"{step}: {options.nodes} node(s) x {options.processes_per_node} process(es) need a "
            f"strategy: set {step}.distributed to one of {', '.join(STRATEGIES[1:])}"
        )
    if count == 1 and options.distributed in STRATEGY_FILES:
        # one process keeps the in-pod path, which is never launched as a distributed job
        raise ConfigError(
            f"{step}.distributed={options.distributed} shards the model over processes, but "
            f"{step} trains with one (nodes=1, processes_per_node=1); set distributed: none, "
            "or more processes"
        )
    if options.distributed.startswith("deepspeed") and not importlib.util.find_spec("deepspeed"):
        raise ConfigError(
            f"{step}.distributed={options.distributed} needs the deepspeed package, which this "
            "image lacks; use fsdp, or install deepspeed in the training image"
        )


def strategy_arguments(step: str, options: DistributedOptions) -> dict[str, Any]:
    """The ``TrainingArguments`` of the step's strategy ({} for none and ddp: the trainer's DDP
    under torchrun needs none); checked by :func:`check_distributed` first."""
    check_distributed(step, options)
    if 1 < options.process_count() != world_size():
        # the pipeline launches a TrainJob; a CLI run outside torchrun trains with one process
        log.warning(
            "%s: the preset asks for %d processes but this run has %d; launch it under torchrun "
            "(the pipeline's TrainJob does)",
            step,
            options.process_count(),
            world_size(),
        )
    settings = strategy_settings(options.distributed)
    if options.distributed == "fsdp":
        return {"fsdp": True, "fsdp_config": settings}
    if options.distributed.startswith("deepspeed"):
        return {"deepspeed": settings}
    return {}


@contextmanager
def main_process_first() -> Iterator[None]:
    """The main process runs the block before the others (one process: it just runs), so a
    folder it prepares (checkpoints to keep or remove) is ready when the others read it."""
    import torch.distributed as dist

    together = dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
    if together and not is_main_process():
        dist.barrier()
    try:
        yield
    finally:
        if together and is_main_process():
            dist.barrier()


def final_model(trainer: Any, *, strategy: str, use_lora: bool) -> Any | None:
    """The trained model, whole and with LoRA merged, in the main process; None in the others
    (which are then done: the main process evaluates, logs and saves).

    With one process or DDP the main process holds the whole model. Under FSDP or ZeRO-3 none
    does: the trainer gathers the shards into ``<checkpoints>/gathered`` (every process takes
    part) and the main process loads that folder back.
    """
    if strategy not in SHARDED:
        if not is_main_process():
            return None
        return trainer.model.merge_and_unload() if use_lora else trainer.model
    gathered = Path(trainer.args.output_dir) / "gathered"
    trainer.save_model(str(gathered))  # collective: each process sends its shards
    if not is_main_process():
        return None
    if use_lora:
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(str(gathered)).merge_and_unload()
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(gathered))
