"""``qrewrite sft``: multi-task supervised fine-tuning (rewrite generation + relevance tagging).

TRL's ``SFTTrainer`` on the conversational prompt-completion mixture of ``build-datasets``, loss on
completions only; LoRA through PEFT (or full fine-tuning for the small local model); checkpoints
every ``save_steps`` and resume after a kill; metrics to MLflow. At the end the tagging task is
scored on held-out pairs against the majority-class baseline and a merged model is saved.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from qrewrite import __version__
from qrewrite.environment import world_size
from qrewrite.errors import ConfigError
from qrewrite.outputs import check_output, staged_output
from qrewrite.tracking import mlflow_callback, mlflow_run
from qrewrite.training.common import (
    check_schedule,
    edge_means,
    last_checkpoint,
    lora_config,
    native_lm_head_on_cpu,
    plot_curves,
    quiet_libraries,
    quiet_trainer,
    run_identity,
    series,
    tokens_seen,
    trainer_arguments,
)
from qrewrite.training.datasets import SFT_DIR, load_training_split
from qrewrite.training.distributed import final_model
from qrewrite.training.efficiency import (
    check_efficiency_environment,
    check_efficiency_options,
    cuda_device_name,
    linear_weights,
    model_flops_per_token,
    model_flops_utilization,
    peak_tflops,
)
from qrewrite.training.judge import evaluate_tagging
from qrewrite.training.models import (
    MODEL_FILES,
    TAGGING_FORM_KEY,
    copy_catalog_words,
    load_model,
    load_tokenizer,
    save_model,
)
from qrewrite.training.options import (
    DistributedOptions,
    LoraOptions,
    TrackingOptions,
    TrainerOptions,
)
from qrewrite.training.prompts import GRADE_WORDS, TASKS, learnt_tagging_form

log = logging.getLogger(__name__)

# what the step writes into its model folder (MODEL_FILES: the model itself)
SFT_OUTPUTS = (*MODEL_FILES, "sft_loss.png", "sft_report.json", "sft_report.md")


@dataclass(kw_only=True)
class SFTStepConfig(DistributedOptions, TrainerOptions, LoraOptions, TrackingOptions):
    """Options of ``qrewrite sft`` (section ``sft:``); the trainer, LoRA, tracking and
    distributed options shared with the other training steps are in
    :mod:`qrewrite.training.options`."""

    base_model: str = ""  # a local model directory (pretrain output or a mounted instruct model)
    # the dataset's tasks to train on (prompts.TASKS); without "tag" it is the single-task
    # ablation, which keeps "normalize" so that the ablation measures the tagging task alone
    tasks: str = "rewrite,tag,normalize"
    max_length: int = 128
    # packing (TRL's best-fit decreasing): examples share rows of max_length tokens and train
    # padding-free; helps on a GPU with uneven examples; the small CPU model pads little
    packing: bool = False
    # the GPU's efficiency options (docs/training.md, "One GPU, used well"); each reaches TRL or
    # the model only when set, so a preset without them trains exactly as before
    padding_free: bool = False  # TRL's padding-free batches; needs packing
    attn_implementation: str = ""  # sdpa, flash_attention_2, eager; "": the model's default
    use_liger_kernel: bool = False  # Liger's fused RMSNorm/SwiGLU/RoPE (GPU, liger-kernel)
    peak_tflops: float = 0.0  # the device's peak for MFU; 0: by GPU name (training/efficiency.py)
    # this step's schedule (TrainerOptions defaults otherwise)
    epochs: float = 3.0
    batch_size: int = 32
    learning_rate: float = 1e-3
    save_steps: int = 50
    save_total_limit: int = 2
    resume: bool = True  # continue from the newest checkpoint in <out>/checkpoints
    keep_checkpoints: bool = False  # delete them once the merged model is saved
    tagging_eval_pairs: int = 600  # held-out pairs scored at the end (0: all)

    def check(self) -> None:
        """The efficiency options' mistakes, before anything loads."""
        check_efficiency_options("sft", self)

    def task_list(self) -> list[str]:
        tasks = [t.strip() for t in self.tasks.split(",") if t.strip()]
        unknown = set(tasks) - set(TASKS)
        if unknown or "rewrite" not in tasks:
            raise ConfigError(
                f"sft.tasks={self.tasks!r}: expected 'rewrite' and any of "
                f"{', '.join(t for t in TASKS if t != 'rewrite')}, comma-separated"
            )
        return tasks


@dataclass
class SFTResult:
    """What ``sft`` did; :meth:`to_dict` is ``sft_report.json``."""

    qrewrite_version: str
    config: dict[str, Any]  # the step's settings (``asdict`` of its config)
    tasks: list[str]
    train_examples: int
    steps: int
    resumed_from: str | None
    train_seconds: float
    tokens_seen: int
    tokens_per_second: float | None
    model_flops_per_token: float  # 6N (4N with LoRA), training/efficiency.py
    device: str  # the GPU's name, or "cpu"
    peak_tflops: float | None  # the devices' bf16 peak each; None: unknown (MFU not measured)
    mfu: float | None  # model FLOPs utilisation, 0..1, over every training process's device
    loss_first_20pct: float
    loss_last_20pct: float
    eval_loss: float
    tagging: dict[str, float]  # empty for the single-task ablation
    mlflow_run_id: str

    def to_dict(self) -> dict[str, Any]:
        """The report as a mapping, keys in the order of ``sft_report.json``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary_lines(self, out_dir: str | Path) -> list[str]:
        """What ``sft`` says when it is done: loss, the tagging task against the majority class,
        and the MLflow run."""
        lines = [
            f"sft: {self.steps} steps on {self.train_examples:,} examples "
            f"({', '.join(self.tasks)}) in {self.train_seconds} s; loss "
            f"{self.loss_first_20pct:.3f} -> {self.loss_last_20pct:.3f}, held-out loss "
            f"{self.eval_loss:.3f} -> {out_dir}"
        ]
        t = self.tagging
        if t:
            lines.append(
                f"sft: relevance tagging on {int(t['pairs'])} held-out pairs: accuracy "
                f"{t['tagging_accuracy']:.3f} (majority class {t['majority_accuracy']:.3f}), "
                f"macro-F1 {t['tagging_macro_f1']:.3f} (majority {t['majority_macro_f1']:.3f})"
            )
        lines.append(f"sft: {self.throughput()}")
        lines.append(f"sft: MLflow run {self.mlflow_run_id}")
        return lines

    def throughput(self) -> str:
        """Tokens/s and MFU in words (:func:`throughput_text`)."""
        return throughput_text(self.to_dict())


def throughput_text(report: dict[str, Any]) -> str:
    """A report's tokens/s and MFU in words, e.g. ``12,000 tokens/s at 2.96 GFLOP/token, MFU
    31.2% (989 TFLOP/s bf16 peak, NVIDIA H100 80GB HBM3)``."""
    tps = report.get("tokens_per_second")
    rate = f"{tps:,.0f} tokens/s" if tps else "tokens/s not counted"
    flops = f"{report['model_flops_per_token'] / 1e9:.3g} GFLOP/token"
    if report.get("mfu") is None:
        why = "CPU" if report["device"] == "cpu" else "no peak known for this GPU: set peak_tflops"
        return f"{rate} at {flops}, MFU n/a ({why})"
    return (
        f"{rate} at {flops}, MFU {report['mfu']:.1%} ({report['peak_tflops']:g} TFLOP/s bf16 "
        f"peak, {report['device']})"
    )


def sft_arguments(config: SFTStepConfig, *, output_dir: Path, progress: bool) -> dict[str, Any]:
    """The keyword arguments of TRL's ``SFTConfig`` for ``config`` (checkpoints in
    ``output_dir``)."""
    from trl import SFTConfig

    return trainer_arguments(
        config,
        step="sft",
        args_class=SFTConfig,
        output_dir=output_dir,
        progress=progress,
        step_arguments={
            "max_length": config.max_length,
            "packing": config.packing,
            # only when set: the arguments of a preset without them stay as they were
            **({"padding_free": True} if config.padding_free else {}),
            **({"use_liger_kernel": True} if config.use_liger_kernel else {}),
            "completion_only_loss": True,
            "save_strategy": "steps",
            "save_steps": config.save_steps,
            "save_total_limit": config.save_total_limit,
            "eval_strategy": "no",
            "per_device_eval_batch_size": config.batch_size,
        },
    )


def sft(
    config: SFTStepConfig,
    *,
    datasets_dir: str | Path,
    out_dir: str | Path,
    progress: bool = True,
) -> SFTResult:
    """Fine-tune ``config.base_model`` on ``<datasets>/sft``; save a merged model to ``out_dir``."""
    quiet_libraries()
    tasks = config.task_list()
    check_schedule("sft", config)
    if not config.base_model:
        raise ConfigError("sft.base_model is not set; pass --base-model DIR")
    config.check()
    device_name = cuda_device_name()
    check_efficiency_environment("sft", config, cuda=device_name is not None)
    out = Path(out_dir)
    # the model folder is replaced only when the new model is whole (qrewrite.outputs); the
    # checkpoints stay in it across a failure, for the resume
    check_output("sft", out, SFT_OUTPUTS, inputs=[config.base_model, datasets_dir])
    ckpt_dir = out / "checkpoints"
    arguments = sft_arguments(config, output_dir=ckpt_dir, progress=progress)
    # everything that can be wrong is checked before the first step
    data = load_training_split(Path(datasets_dir) / SFT_DIR, SFT_DIR)
    tokenizer = load_tokenizer(config.base_model)
    model = load_model(config.base_model, attn_implementation=config.attn_implementation or None)
    # counted before PEFT wraps the model: the base model's linear layers
    flops_per_token = model_flops_per_token(
        linear_weights(model), full_fine_tuning=not config.use_lora
    )
    from trl import SFTConfig, SFTTrainer

    train = data["train"].filter(lambda r: r["task"] in tasks)
    # the form of task B's prompt the datasets ask in, which the model learns and its card keeps
    form = learnt_tagging_form(train)
    held_out = data["eval"]
    args = SFTConfig(**arguments)
    identity = run_identity(config, config.base_model, train)
    resume_from = last_checkpoint(ckpt_dir, identity) if config.resume else None
    if resume_from:
        log.warning("sft: resuming from %s", resume_from)
    run_name = "sft" if "tag" in tasks else "sft-single-task"
    t0 = time.perf_counter()
    with mlflow_run(config.tracking_uri, config.experiment, run_name, config) as run:
        import mlflow

        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=held_out.filter(lambda r: r["task"] in tasks),
            processing_class=tokenizer,
            peft_config=lora_config(config),
            callbacks=[mlflow_callback("sft")],
        )
        quiet_trainer(trainer, progress)
        native_lm_head_on_cpu(trainer.model)
        result = trainer.train(resume_from_checkpoint=resume_from)
        train_seconds = time.perf_counter() - t0
        eval_loss = float(trainer.evaluate()["eval_loss"])
        # None in a process other than the main one of a distributed run: it is done
        final = final_model(trainer, strategy=config.distributed, use_lora=config.use_lora)
        tagging = (
            evaluate_tagging(
                final,
                tokenizer,
                data["train"],
                held_out,
                config.tagging_eval_pairs,
                config.seed,
                form=form,
            )
            if "tag" in tasks and final is not None
            else {}
        )
        losses = series(trainer.state.log_history, "loss")
        first, last = edge_means([v for _, v in losses])
        tokens = tokens_seen(trainer.state.log_history)
        tokens_per_second = round(tokens / train_seconds, 1) if tokens else None
        peak = peak_tflops(config.peak_tflops, device_name)
        # TRL counts the tokens of every process: the peak is that of every process's device
        mfu = model_flops_utilization(
            flops_per_token, tokens_per_second, peak, devices=world_size()
        )
        outcome = SFTResult(
            qrewrite_version=__version__,
            config=asdict(config),
            tasks=tasks,
            train_examples=len(train),
            steps=int(result.global_step),
            resumed_from=resume_from,
            train_seconds=round(train_seconds, 1),
            tokens_seen=tokens,
            tokens_per_second=tokens_per_second,
            model_flops_per_token=flops_per_token,
            device=device_name or "cpu",
            peak_tflops=peak,
            mfu=round(mfu, 4) if mfu is not None else None,
            loss_first_20pct=first,
            loss_last_20pct=last,
            eval_loss=eval_loss,
            tagging=tagging,
            mlflow_run_id=run.info.run_id,
        )
        if final is None:  # the main process logs and saves
            return outcome
        report = outcome.to_dict()
        mlflow.log_metrics(
            {
                "sft/loss_first_20pct": first,
                "sft/loss_last_20pct": last,
                "sft/eval_loss": eval_loss,
                "sft/model_flops_per_token": flops_per_token,
                **({"sft/tokens_per_second": tokens_per_second} if tokens_per_second else {}),
                **({"sft/mfu": outcome.mfu} if outcome.mfu is not None else {}),
                **{f"sft/{k}": v for k, v in tagging.items()},
            }
        )
        with staged_output(out, SFT_OUTPUTS, step="sft") as stage:
            save_model(final, tokenizer, stage, {"step": "sft", TAGGING_FORM_KEY: form, **report})
            copy_catalog_words(datasets_dir, stage)
            plot_curves({"train loss": losses}, "SFT loss", stage / "sft_loss.png")
            (stage / "sft_report.json").write_text(json.dumps(report, indent=2) + "\n")
            (stage / "sft_report.md").write_text(sft_markdown(report), encoding="utf-8")
        mlflow.log_artifact(str(out / "sft_report.md"))
    if not config.keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return outcome


def sft_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# SFT",
        "",
        f"- tasks: {', '.join(report['tasks'])}; {report['train_examples']:,} train examples, "
        f"{report['steps']} steps in {report['train_seconds']} s"
        + (f" (resumed from {report['resumed_from']})" if report["resumed_from"] else ""),
        f"- loss: {report['loss_first_20pct']:.3f} (first 20% of steps) -> "
        f"{report['loss_last_20pct']:.3f} (last 20%); held-out loss {report['eval_loss']:.3f}",
        f"- throughput: {throughput_text(report)}",
    ]
    t = report["tagging"]
    if t:
        lines += [
            "",
            f"## Relevance tagging on {int(t['pairs'])} held-out pairs",
            "",
            "| | accuracy | macro-F1 |",
            "|---|---:|---:|",
            f"| model | {t['tagging_accuracy']:.3f} | {t['tagging_macro_f1']:.3f} |",
            f"| majority class | {t['majority_accuracy']:.3f} | {t['majority_macro_f1']:.3f} |",
            "",
            f"Grades: {', '.join(f'{i}={w}' for i, w in enumerate(GRADE_WORDS))}.",
        ]
    return "\n".join(lines) + "\n"
