"""Offline evaluation: held-out queries, the simulated A/B test and the ablation.

Each command's ``add_*`` (its parser) sits beside its ``run_*`` (what it does)."""

from __future__ import annotations

import argparse

from qrewrite.cli.common import Subparsers, add_config_flags, add_progress_flag
from qrewrite.config import load_config
from qrewrite.errors import ConfigError


def add_parsers(sub: Subparsers) -> None:
    """This group's commands, in the order ``qrewrite --help`` lists them."""
    add_evaluate(sub)


def _named(spec: str) -> tuple[str, str]:
    name, sep, uri = spec.partition("=")
    if not sep or not name or not uri:
        raise ConfigError(f"--baseline {spec!r}: expected NAME=PATH_OR_URI")
    return name, uri


def add_evaluate(sub: Subparsers) -> None:
    p = sub.add_parser(
        "evaluate",
        help="offline evaluation, simulated A/B test and ablation on held-out queries",
        description="Rewrite the held-out queries (never seen in training) with each model and "
        "measure relevance, increment, hit rate, nDCG@10, recall@100, tagging, copy and speed; on "
        "synthetic data also replay held-out shoppers in a simulated A/B test (UCVR, CTR uplift "
        "with bootstrap intervals). Writes metrics.json, report.md, report.html and plots "
        "(definitions in docs/evaluation.md).",
    )
    p.add_argument("--data", required=True, help="the synth or import-judged output directory")
    p.add_argument("--datasets", required=True, help="build-datasets output (its eval split)")
    p.add_argument("--model", required=True, help="model directory or models:/NAME@ALIAS URI")
    p.add_argument("--name", default="candidate", help="the model's row in the table")
    p.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="NAME=PATH_OR_URI",
        help="another model to compare (repeatable): the ablation's variants",
    )
    p.add_argument(
        "--fallback",
        metavar="NAME",
        help="a --baseline the model was trained from (e.g. its SFT model): it becomes the "
        "candidate when the model does not improve on it (unvetted uplift higher, relevance at "
        "most 1 point lower; evaluate.candidate_must_improve)",
    )
    p.add_argument(
        "--champion",
        metavar="REGISTERED_MODEL",
        help="also evaluate models:/REGISTERED_MODEL@champion when the alias is set",
    )
    p.add_argument("--labels", help="labeled_pairs.parquet (the teacher's learned synonyms)")
    p.add_argument("--out", required=True, help="output directory for the report")
    add_progress_flag(p, bars="bars")
    add_config_flags(p, "evaluate")
    p.set_defaults(func=run_evaluate)


def run_evaluate(args: argparse.Namespace) -> int:
    from qrewrite.evaluation.evaluate import EvaluateConfig, evaluate
    from qrewrite.registry.config import CHAMPION
    from qrewrite.registry.resolve import resolve_champion, resolve_model_dir

    cfg = load_config(EvaluateConfig, args.config, "evaluate", args.overrides)
    specs = [_named(b) for b in args.baseline] + [(args.name, args.model)]
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"evaluate: variant names repeat ({', '.join(names)}); name each once")
    if args.fallback is not None and args.fallback not in names[:-1]:
        raise ConfigError(f"evaluate: --fallback {args.fallback!r} is not a --baseline name")
    variants: dict[str, str] = {}
    refs: dict[str, str] = {}
    for name, uri in specs:
        path, refs[name] = resolve_model_dir(uri, tracking_uri=cfg.tracking_uri)
        variants[name] = str(path)
    champion = (
        resolve_champion(args.champion, tracking_uri=cfg.tracking_uri) if args.champion else None
    )
    if champion is not None:
        variants[CHAMPION], refs[CHAMPION] = str(champion[0]), champion[1]
    report = evaluate(
        cfg,
        data_dir=args.data,
        datasets_dir=args.datasets,
        variants=variants,
        out_dir=args.out,
        labels=args.labels,
        candidate=args.name,
        fallback=args.fallback,
        progress=not args.no_progress,
        model_refs=refs,  # registry URIs pinned to versions, not cache folders
    )
    print("\n".join(report.summary_lines(args.out)))
    return 0
