"""``qrewrite grpo``: align the SFT model with TRL's ``GRPOTrainer`` on the fused reward.

For each training query GRPO samples a group of rewrites, scores each with the registry in
:mod:`qrewrite.training.rewards` (relevance by a frozen judge, conversion by the lexical engine over
the catalog, rules), and pushes up the rewrites above their group's mean. TRL logs every reward's
mean and std at every step (``rewards/<name>/mean``); they go to MLflow with the rest.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from qrewrite import __version__
from qrewrite.errors import ConfigError
from qrewrite.outputs import check_output, staged_output
from qrewrite.search_engine import ProductRetriever
from qrewrite.tables import read_parquet_table
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
    trainer_arguments,
)
from qrewrite.training.datasets import GRPO_DIR, load_training_split
from qrewrite.training.distributed import final_model
from qrewrite.training.judge import RelevanceJudge
from qrewrite.training.models import (
    MODEL_FILES,
    TAGGING_FORM_KEY,
    copy_catalog_words,
    load_model,
    load_tagging_form,
    load_tokenizer,
    save_model,
)
from qrewrite.training.options import (
    DistributedOptions,
    LoraOptions,
    TrackingOptions,
    TrainerOptions,
)
from qrewrite.training.rewards import (
    DEFAULT_WEIGHTS,
    REWARDS,
    RewardContext,
    attribute_values,
    catalog_vocabulary,
    trl_reward,
)

log = logging.getLogger(__name__)

# what the step writes into its model folder (MODEL_FILES: the model itself)
GRPO_OUTPUTS = (*MODEL_FILES, "grpo_rewards.png", "grpo_report.json", "grpo_report.md")

JUDGES = ("self", "teacher")
VLLM_MODES = ("colocate", "server")  # TRL's vllm_mode


@dataclass(kw_only=True)
class GRPOStepConfig(DistributedOptions, TrainerOptions, LoraOptions, TrackingOptions):
    """Options of ``qrewrite grpo`` (section ``grpo:``); the trainer, LoRA, tracking and
    distributed options shared with the other training steps are in
    :mod:`qrewrite.training.options`."""

    model: str = ""  # the SFT model directory
    judge: str = "self"  # "self": the SFT model in tagging mode, frozen; "teacher": the labeler
    judge_model: str = ""  # tagging model for judge=self; default: the SFT model itself
    reward_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    retrieve_k: int = 20  # the engine's result depth for hit rate and increment
    min_words: int = 1
    max_words: int = 12
    max_prompts: int = 0  # use at most this many train prompts (0: all)
    # held-out prompts whose greedy rewrites are scored by every reward before and after
    # training: the same prompts both times, so the difference is learning, not prompt order
    probe_prompts: int = 64
    num_generations: int = 4  # rewrites sampled per query (the group)
    max_completion_length: int = 16  # tokens
    temperature: float = 1.0
    beta: float = 0.02  # KL to the SFT model; keeps rewrites fluent
    # this step's schedule (TrainerOptions defaults otherwise)
    batch_size: int = 8  # completions per device per step; a multiple of num_generations
    epochs: float = 1.0
    max_steps: int = 60  # > 0 overrides epochs
    learning_rate: float = 2e-4
    warmup_steps: int = 0
    logging_steps: int = 1  # per-step reward means for the first-vs-last comparison
    # GPU only: generate the completions with vLLM instead of transformers' generate; TRL merges
    # the LoRA adapters into the weights in place, streams them to vLLM one tensor at a time
    # after every optimizer step, and unmerges them (docs/training.md, "GRPO with vLLM")
    use_vllm: bool = False
    vllm_mode: str = "colocate"  # colocate: vLLM in this process, on its GPU; server: a vLLM server
    # colocate: the share of the GPU vLLM takes for its weights and KV cache (training gets the
    # rest); with sleep mode vLLM gives that memory back while the trainer steps, and re-uploads
    # its weights before each generation (slower steps, less memory held: for a larger model)
    vllm_gpu_memory_utilization: float = 0.3
    vllm_enable_sleep_mode: bool = False
    vllm_tensor_parallel_size: int = 1  # colocate: GPUs one vLLM instance spans
    vllm_max_model_length: int = 0  # colocate: vLLM's context in tokens (0: the model's)
    # server: where the server is (base URL, e.g. http://vllm-grpo:8000, or host and port) and
    # how long to wait for it; the trainer pushes its weights to it over NCCL every step
    vllm_server_base_url: str = ""
    vllm_server_host: str = ""
    vllm_server_port: int = 8000
    vllm_server_timeout: float = 240.0
    save_steps: int = 50
    save_total_limit: int = 2
    resume: bool = True
    keep_checkpoints: bool = False

    def check(self) -> None:
        """Every mistake that would otherwise surface mid-training."""
        unknown = set(self.reward_weights) - set(REWARDS)
        if unknown:
            raise ConfigError(
                f"grpo.reward_weights: unknown reward(s) {', '.join(sorted(unknown))}; "
                f"registered: {', '.join(REWARDS)}"
            )
        if not any(w != 0 for w in self.reward_weights.values()):
            raise ConfigError("grpo.reward_weights: every weight is 0; nothing to optimise")
        if self.judge not in JUDGES:
            raise ConfigError(f"grpo.judge={self.judge!r}: expected one of {', '.join(JUDGES)}")
        check_schedule("grpo", self)
        if self.num_generations < 2:
            raise ConfigError("grpo.num_generations must be >= 2: GRPO compares within a group")
        # every process generates its share of each group: the check is on all of them
        processes = self.process_count()
        global_batch = self.batch_size * processes * self.gradient_accumulation_steps
        if global_batch % self.num_generations:
            raise ConfigError(
                f"grpo: the batch of {self.batch_size} x {processes} process(es) x "
                f"{self.gradient_accumulation_steps} accumulation steps = {global_batch} "
                f"completions is not divisible by num_generations={self.num_generations}; "
                "make batch_size a multiple of num_generations"
            )
        if not self.model:
            raise ConfigError("grpo.model is not set; pass --model DIR (the SFT output)")
        self.check_vllm()

    def check_vllm(self) -> None:
        """The vLLM settings TRL would refuse mid-setup, or could not connect with."""
        if self.vllm_mode not in VLLM_MODES:
            raise ConfigError(
                f"grpo.vllm_mode={self.vllm_mode!r}: expected one of {', '.join(VLLM_MODES)}"
            )
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ConfigError(
                f"grpo.vllm_gpu_memory_utilization={self.vllm_gpu_memory_utilization}: "
                "expected a share of the GPU, above 0 and at most 1"
            )
        tp, processes = self.vllm_tensor_parallel_size, self.process_count()
        if tp < 1 or (self.vllm_mode == "colocate" and processes % tp):
            raise ConfigError(
                f"grpo.vllm_tensor_parallel_size={tp} must divide the {processes} training "
                "process(es): each colocated vLLM spans that many of them"
            )
        url = self.vllm_server_base_url
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(
                f"grpo.vllm_server_base_url={url!r}: expected http://HOST:PORT or https://..."
            )
        if not 0 < self.vllm_server_port < 65536 or self.vllm_server_timeout <= 0:
            raise ConfigError(
                f"grpo: vllm_server_port={self.vllm_server_port} (1..65535) and "
                f"vllm_server_timeout={self.vllm_server_timeout} (> 0 s) are not usable"
            )
        if self.use_vllm and self.vllm_mode == "server" and not (url or self.vllm_server_host):
            raise ConfigError(
                "grpo.vllm_mode=server needs the server's address: set grpo.vllm_server_base_url "
                "(http://HOST:PORT) or grpo.vllm_server_host (and vllm_server_port)"
            )


def build_judge(config: GRPOStepConfig, data_dir: Path, labels: Path | None) -> Any:
    """``judge(queries, rewrites) -> P(grade 2)``, frozen for the whole run."""
    if config.judge == "self":
        path = config.judge_model or config.model
        judge = RelevanceJudge(
            load_model(path, "judge model"), load_tokenizer(path), form=load_tagging_form(path)
        )
        return _memoised(lambda q, r: judge.probabilities(q, r)[:, 2].tolist())
    import pandas as pd

    from qrewrite.labeling.teacher import Teacher

    teacher = Teacher.from_data(data_dir, labels)  # with the labeled batch's synonyms
    return _memoised(
        lambda q, r: teacher.grade(
            pd.DataFrame({"query": list(q), "rewrite": list(r)}), learn=False
        )["p_relevant"].tolist()
    )


def _memoised(judge: Any, limit: int = 200_000) -> Any:
    """The judge with a cache: several rewards ask it about the same (query, rewrite) pairs."""
    cache: dict[tuple[str, str], float] = {}

    def cached(queries: Any, rewrites: Any) -> list[float]:
        pairs = list(zip(queries, rewrites, strict=True))
        todo = list(dict.fromkeys(p for p in pairs if p not in cache))
        if todo:
            if len(cache) > limit:
                cache.clear()
            scores = judge([q for q, _ in todo], [r for _, r in todo])
            cache.update(zip(todo, (float(x) for x in scores), strict=True))
        return [cache[p] for p in pairs]

    return cached


PROBE_COLUMNS = ("purchased", "clicked", "relevant", "original_retrieved")


def probe_rewards(
    model: Any,
    tokenizer: Any,
    probe: Any,
    weights: dict[str, float],
    ctx: RewardContext,
    max_new_tokens: int,
) -> dict[str, float]:
    """Mean of each reward (and the weighted total) over the greedy rewrites of ``probe``."""
    from qrewrite.serving.rewriter import GenerationSettings, Rewriter

    if len(probe) == 0:
        return {}
    queries = list(probe["query"])
    settings = GenerationSettings(max_new_tokens=max_new_tokens, batch_size=64)
    rewrites = [r[0] for r in Rewriter(model, tokenizer, settings).generate(queries)]
    model.train()  # Rewriter switched it to eval mode; the trainer expects training mode
    columns = {c: list(probe[c]) for c in PROBE_COLUMNS}
    out = {
        name: float(np.mean(REWARDS[name](queries, rewrites, ctx, **columns))) for name in weights
    }
    out["total"] = sum(weights[n] * out[n] for n in weights)
    return out


@dataclass
class GRPOResult:
    """What ``grpo`` did; :meth:`to_dict` is ``grpo_report.json``."""

    qrewrite_version: str
    config: dict[str, Any]  # the step's settings (``asdict`` of its config)
    train_prompts: int
    steps: int
    resumed_from: str | None
    train_seconds: float
    steps_per_second: float | None
    reward_first_20pct: float  # mean total reward over the first 20% of steps
    reward_last_20pct: float
    rewards: dict[str, dict[str, float]]  # per reward: first_20pct, last_20pct
    probe: dict[str, Any]  # prompts, and each reward's mean before and after training
    mlflow_run_id: str

    def to_dict(self) -> dict[str, Any]:
        """The report as a mapping, keys in the order of ``grpo_report.json``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary_lines(self, out_dir: str | Path) -> list[str]:
        """What ``grpo`` says when it is done: the reward curve, per reward, and the MLflow run."""
        parts = ", ".join(
            f"{n} {v['first_20pct']:.2f}->{v['last_20pct']:.2f}" for n, v in self.rewards.items()
        )
        return [
            f"grpo: {self.steps} steps in {self.train_seconds} s; mean total reward "
            f"{self.reward_first_20pct:.3f} (first 20% of steps) -> "
            f"{self.reward_last_20pct:.3f} (last 20%) -> {out_dir}",
            f"grpo: rewards {parts}; MLflow run {self.mlflow_run_id}",
        ]


def grpo_arguments(config: GRPOStepConfig, *, output_dir: Path, progress: bool) -> dict[str, Any]:
    """The keyword arguments of TRL's ``GRPOConfig`` for ``config`` (checkpoints in
    ``output_dir``)."""
    from trl import GRPOConfig

    names = [n for n, w in config.reward_weights.items() if w != 0]
    return trainer_arguments(
        config,
        step="grpo",
        args_class=GRPOConfig,
        output_dir=output_dir,
        progress=progress,
        step_arguments={
            "num_generations": config.num_generations,
            "max_completion_length": config.max_completion_length,
            "temperature": config.temperature,
            "beta": config.beta,
            "reward_weights": [config.reward_weights[n] for n in names],
            "use_vllm": config.use_vllm,
            "vllm_gpu_memory_utilization": config.vllm_gpu_memory_utilization,
            **vllm_arguments(config),
            "save_strategy": "steps",
            "save_steps": config.save_steps,
            "save_total_limit": config.save_total_limit,
        },
    )


def vllm_arguments(config: GRPOStepConfig) -> dict[str, Any]:
    """``GRPOConfig``'s vLLM settings for ``config``: none without ``use_vllm`` (the arguments of
    a preset that generates with transformers stay as they were), else the mode's own."""
    if not config.use_vllm:
        return {}
    if config.vllm_mode == "server":
        return {
            "vllm_mode": "server",
            # a base URL wins over host and port in TRL; None lets host and port apply
            "vllm_server_base_url": config.vllm_server_base_url or None,
            **({"vllm_server_host": config.vllm_server_host} if config.vllm_server_host else {}),
            "vllm_server_port": config.vllm_server_port,
            "vllm_server_timeout": config.vllm_server_timeout,
        }
    return {
        "vllm_mode": "colocate",
        "vllm_enable_sleep_mode": config.vllm_enable_sleep_mode,
        "vllm_tensor_parallel_size": config.vllm_tensor_parallel_size,
        "vllm_max_model_length": config.vllm_max_model_length or None,
    }


def check_vllm_installed(config: GRPOStepConfig) -> None:
    """``use_vllm`` where the vllm package is missing fails here, in one line, instead of in
    TRL's trainer after the models have loaded."""
    if config.use_vllm and not importlib.util.find_spec("vllm"):
        raise ConfigError(
            "grpo.use_vllm: the vllm package is not installed here (the training image has it, "
            "pip install 'qrewrite[vllm]'); set use_vllm: false to generate with transformers"
        )


def grpo(
    config: GRPOStepConfig,
    *,
    datasets_dir: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    labels: str | Path | None = None,
    progress: bool = True,
) -> GRPOResult:
    """Align ``config.model`` on ``<datasets>/grpo``; save the merged policy to ``out_dir``."""
    quiet_libraries()
    config.check()
    check_vllm_installed(config)
    out = Path(out_dir)
    # the model folder is replaced only when the new policy is whole (qrewrite.outputs); the
    # checkpoints stay in it across a failure, for the resume
    check_output(
        "grpo",
        out,
        GRPO_OUTPUTS,
        inputs=[config.model, config.judge_model or None, datasets_dir, data_dir, labels],
    )
    ckpt_dir = out / "checkpoints"
    arguments = grpo_arguments(config, output_dir=ckpt_dir, progress=progress)
    data = load_training_split(Path(datasets_dir) / GRPO_DIR, GRPO_DIR)
    data_dir = Path(data_dir)
    catalog = read_parquet_table(
        data_dir / "catalog.parquet", "catalog", "--data must be a synth or import-judged output"
    ).to_pandas()
    tokenizer = load_tokenizer(config.model)
    model = load_model(config.model, "SFT model")
    retriever = ProductRetriever(catalog, config.retrieve_k)
    brands, types = catalog_vocabulary(catalog)
    ctx = RewardContext(
        judge=build_judge(config, data_dir, Path(labels) if labels else None),
        retrieve=retriever.retrieve,
        brands=brands,
        product_types=types,
        attribute_values=attribute_values(catalog),
        min_words=config.min_words,
        max_words=config.max_words,
    )
    names = [n for n, w in config.reward_weights.items() if w != 0]
    train = data["train"].shuffle(seed=config.seed)
    if config.max_prompts:
        train = train.select(range(min(config.max_prompts, len(train))))
    probe = data["eval"].shuffle(seed=config.seed)
    probe = probe.select(range(min(config.probe_prompts, len(probe))))
    weights = {n: config.reward_weights[n] for n in names}
    before = probe_rewards(model, tokenizer, probe, weights, ctx, config.max_completion_length)

    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(**arguments)
    identity = run_identity(config, config.model, train)
    resume_from = last_checkpoint(ckpt_dir, identity) if config.resume else None
    if resume_from:
        log.warning("grpo: resuming from %s", resume_from)
    t0 = time.perf_counter()
    with mlflow_run(config.tracking_uri, config.experiment, "grpo", config) as run:
        import mlflow

        trainer = GRPOTrainer(
            model=model,
            reward_funcs=[trl_reward(n, ctx) for n in names],
            args=args,
            train_dataset=train,
            processing_class=tokenizer,
            peft_config=lora_config(config),
            callbacks=[mlflow_callback("grpo")],
        )
        quiet_trainer(trainer, progress)
        for scored in (trainer.model, trainer.ref_model):
            if scored is not None:
                native_lm_head_on_cpu(scored, temperature=config.temperature)
        result = trainer.train(resume_from_checkpoint=resume_from)
        seconds = time.perf_counter() - t0
        after = probe_rewards(
            trainer.model, tokenizer, probe, weights, ctx, config.max_completion_length
        )
        history = trainer.state.log_history
        total = series(history, "reward")
        first, last = edge_means([v for _, v in total])
        per_reward = {}
        for n in names:
            f, lst = edge_means([v for _, v in series(history, f"rewards/{n}/mean")])
            per_reward[n] = {"first_20pct": f, "last_20pct": lst}
        outcome = GRPOResult(
            qrewrite_version=__version__,
            config=asdict(config),
            train_prompts=len(train),
            steps=int(result.global_step),
            resumed_from=resume_from,
            train_seconds=round(seconds, 1),
            steps_per_second=round(result.global_step / seconds, 3) if seconds else None,
            reward_first_20pct=first,
            reward_last_20pct=last,
            rewards=per_reward,
            probe={"prompts": len(probe), "before": before, "after": after},
            mlflow_run_id=run.info.run_id,
        )
        # None in a process other than the main one of a distributed run: it is done
        policy = final_model(trainer, strategy=config.distributed, use_lora=config.use_lora)
        if policy is None:
            return outcome
        report = outcome.to_dict()
        mlflow.log_metrics(
            {
                "grpo/reward_first_20pct": first,
                "grpo/reward_last_20pct": last,
                **{f"grpo/{n}_last_20pct": v["last_20pct"] for n, v in per_reward.items()},
                **{f"grpo/probe_before/{n}": v for n, v in before.items()},
                **{f"grpo/probe_after/{n}": v for n, v in after.items()},
            }
        )
        with staged_output(out, GRPO_OUTPUTS, step="grpo") as stage:
            # it grades as the SFT model it started from learnt to
            card = {"step": "grpo", TAGGING_FORM_KEY: load_tagging_form(config.model), **report}
            save_model(policy, tokenizer, stage, card)
            copy_catalog_words(datasets_dir, stage)
            plot_curves(
                {
                    "total": total,
                    **{n: series(history, f"rewards/{n}/mean") for n in names},
                },
                "GRPO rewards (mean per step)",
                stage / "grpo_rewards.png",
            )
            (stage / "grpo_report.json").write_text(json.dumps(report, indent=2) + "\n")
            (stage / "grpo_report.md").write_text(grpo_markdown(report), encoding="utf-8")
        mlflow.log_artifact(str(out / "grpo_report.md"))
        mlflow.log_artifact(str(out / "grpo_rewards.png"))
    if not config.keep_checkpoints:
        shutil.rmtree(ckpt_dir, ignore_errors=True)
    return outcome


def grpo_markdown(report: dict[str, Any]) -> str:
    weights = report["config"]["reward_weights"]
    lines = [
        "# GRPO",
        "",
        f"- {report['steps']} steps on {report['train_prompts']:,} prompts in "
        f"{report['train_seconds']} s, {report['config']['num_generations']} rewrites per query",
        f"- mean total reward: {report['reward_first_20pct']:.3f} (first 20% of steps) -> "
        f"{report['reward_last_20pct']:.3f} (last 20%)",
        "",
        "| reward | weight | first 20% | last 20% |",
        "|---|---:|---:|---:|",
    ]
    for name, v in report["rewards"].items():
        lines.append(
            f"| {name} | {weights[name]:g} | {v['first_20pct']:.3f} | {v['last_20pct']:.3f} |"
        )
    probe = report.get("probe") or {}
    if probe.get("before") and probe.get("after"):
        lines += [
            "",
            f"## Probe: greedy rewrites of {probe['prompts']} held-out prompts, before and after",
            "",
            "The same prompts both times: a rise here is learning, not the order of the prompts.",
            "",
            "| reward | before | after |",
            "|---|---:|---:|",
        ]
        for name, value in probe["before"].items():
            lines.append(f"| {name} | {value:.3f} | {probe['after'][name]:.3f} |")
    lines += ["", "![rewards](grpo_rewards.png)"]
    return "\n".join(lines) + "\n"
