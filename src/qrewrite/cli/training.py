"""The training steps: datasets, pretraining, multi-task SFT and GRPO.

Each command's ``add_*`` (its parser) sits beside its ``run_*`` (what it does)."""

from __future__ import annotations

import argparse

from qrewrite.cli.common import Subparsers, add_config_flags, add_progress_flag, with_flags
from qrewrite.config import load_config
from qrewrite.environment import is_main_process


def add_parsers(sub: Subparsers) -> None:
    """This group's commands, in the order ``qrewrite --help`` lists them."""
    add_build_datasets(sub)
    add_pretrain(sub)
    add_sft(sub)
    add_grpo(sub)


def add_build_datasets(sub: Subparsers) -> None:
    p = sub.add_parser(
        "build-datasets",
        help="build the SFT mixture (rewrite + relevance tagging) and GRPO prompts, split by query",
        description="From labeled pairs, mined candidates and query stats: task A (query -> "
        "rewrite, relevant rewrites with conversion evidence only), task B ((query, rewrite) -> "
        "grade, balanced) and GRPO prompts with the products their rewards need; split by "
        "query; saved as HF datasets OUT/sft and OUT/grpo, each checked by its data contract.",
    )
    p.add_argument("--data", required=True, help="the synth or import-judged output directory")
    p.add_argument("--mined", required=True, help="the mine output directory")
    p.add_argument("--labels", required=True, help="labeled_pairs.parquet from label")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--report", help="directory for the contract reports (default OUT/contracts)")
    add_config_flags(p, "build_datasets")
    p.set_defaults(func=run_build_datasets)


def run_build_datasets(args: argparse.Namespace) -> int:
    from qrewrite.training.datasets import DatasetConfig, build_datasets

    cfg = load_config(DatasetConfig, args.config, "build_datasets", args.overrides)
    report = build_datasets(
        cfg,
        data_dir=args.data,
        mined_dir=args.mined,
        labels_path=args.labels,
        out_dir=args.out,
        report_dir=args.report,
    )
    print("\n".join(report.summary_lines(args.out)))
    return 0


def add_pretrain(sub: Subparsers) -> None:
    p = sub.add_parser(
        "pretrain",
        help="train a tokenizer and a small Qwen2 on the shop's titles and queries (local preset)",
        description="Train a byte-level BPE tokenizer and a small Qwen2 model from a config on "
        "catalog titles, mined queries and rewrites (eval-split queries left out), and save a "
        "model directory that sft starts from. The cluster preset starts from a real instruct "
        "model instead.",
    )
    p.add_argument("--data", required=True, help="the synth or import-judged output directory")
    p.add_argument("--mined", required=True, help="the mine output directory")
    p.add_argument("--datasets", help="build-datasets output: its eval queries are left out")
    p.add_argument("--out", required=True, help="model directory to write")
    add_progress_flag(p)
    add_config_flags(p, "pretrain")
    p.set_defaults(func=run_pretrain)


def run_pretrain(args: argparse.Namespace) -> int:
    from qrewrite.training.pretrain import PretrainConfig, pretrain

    cfg = load_config(PretrainConfig, args.config, "pretrain", args.overrides)
    r = pretrain(
        cfg,
        data_dir=args.data,
        mined_dir=args.mined,
        out_dir=args.out,
        datasets_dir=args.datasets,
        progress=not args.no_progress,
    )
    print("\n".join(r.summary_lines(args.out)))
    return 0


def add_sft(sub: Subparsers) -> None:
    p = sub.add_parser(
        "sft",
        help="multi-task supervised fine-tuning (TRL SFTTrainer, optional LoRA)",
        description="Fine-tune a local base model on DATASETS/sft: loss on completions only, "
        "checkpoints in OUT/checkpoints and resume after a kill, metrics to MLflow "
        "($MLFLOW_TRACKING_URI, $MLFLOW_RUN_ID), tagging accuracy vs the majority class on "
        "held-out pairs, and a merged model in OUT.",
    )
    p.add_argument("--datasets", required=True, help="build-datasets output directory")
    p.add_argument("--base-model", help="local model directory (default: sft.base_model)")
    p.add_argument("--out", required=True, help="model directory to write")
    add_progress_flag(p)
    add_config_flags(p, "sft")
    p.set_defaults(func=run_sft)


def run_sft(args: argparse.Namespace) -> int:
    from qrewrite.training.sft import SFTStepConfig, sft

    cfg = with_flags(
        load_config(SFTStepConfig, args.config, "sft", args.overrides),
        base_model=args.base_model,
    )
    r = sft(cfg, datasets_dir=args.datasets, out_dir=args.out, progress=not args.no_progress)
    if is_main_process():  # under torchrun the main process speaks for all
        print("\n".join(r.summary_lines(args.out)))
    return 0


def add_grpo(sub: Subparsers) -> None:
    p = sub.add_parser(
        "grpo",
        help="GRPO alignment on the fused relevance + conversion + rules reward (TRL)",
        description="Align the SFT model with TRL's GRPOTrainer on DATASETS/grpo. Rewards "
        "(docs/training.md): relevance by a frozen judge, hit rate and increment by the lexical "
        "engine over the catalog, and rules; weights in grpo.reward_weights.",
    )
    p.add_argument("--datasets", required=True, help="build-datasets output directory")
    p.add_argument("--data", required=True, help="the synth or import-judged output directory")
    p.add_argument("--model", help="the SFT model directory (default: grpo.model)")
    p.add_argument("--labels", help="labeled_pairs.parquet, for judge=teacher's learned synonyms")
    p.add_argument("--out", required=True, help="model directory to write")
    add_progress_flag(p)
    add_config_flags(p, "grpo")
    p.set_defaults(func=run_grpo)


def run_grpo(args: argparse.Namespace) -> int:
    from qrewrite.training.grpo import GRPOStepConfig, grpo

    cfg = with_flags(
        load_config(GRPOStepConfig, args.config, "grpo", args.overrides), model=args.model
    )
    r = grpo(
        cfg,
        datasets_dir=args.datasets,
        data_dir=args.data,
        out_dir=args.out,
        labels=args.labels,
        progress=not args.no_progress,
    )
    if is_main_process():
        print("\n".join(r.summary_lines(args.out)))
    return 0
