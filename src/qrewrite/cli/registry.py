"""The MLflow registry and serving: register, promote, roll back, list, batch-rewrite.

Each command's ``add_*`` (its parser) sits beside its ``run_*`` (what it does)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from qrewrite.cli.common import Subparsers, add_config_flags, add_progress_flag, with_flags
from qrewrite.config import load_config
from qrewrite.errors import ConfigError


def add_parsers(sub: Subparsers) -> None:
    """This group's commands, in the order ``qrewrite --help`` lists them."""
    add_register(sub)
    add_promote(sub)
    add_rollback(sub)
    add_models(sub)
    add_rewrite(sub)


def _add_registered_model_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--registered-model", help="registered model name (default query-rewriter)")


def _registry_config(args: argparse.Namespace) -> Any:
    from qrewrite.registry.config import RegistryConfig

    return with_flags(
        load_config(RegistryConfig, args.config, "registry", args.overrides),
        registered_model=getattr(args, "registered_model", None),
    )


def add_register(sub: Subparsers) -> None:
    p = sub.add_parser(
        "register",
        help="log the model to MLflow, register it as challenger, and gate it against champion",
        description="Log a pyfunc model (weights, tokenizer, signature, the serving policy its "
        "evaluation measured and the teacher that policy vets with) with lineage and metrics, "
        "register it (once per trained model) with alias challenger, and move alias champion to "
        "it when it beats the champion on the primary metric (registry.primary_metric) without "
        "losing more than registry.relevance_tolerance of relevance rate.",
    )
    p.add_argument("--model", required=True, help="the trained model directory")
    p.add_argument("--metrics", required=True, help="metrics.json from evaluate")
    p.add_argument("--report", help="report.md from evaluate, logged with the model")
    p.add_argument(
        "--data",
        help="data directory: its manifest's hash (lineage), and the catalog of the teacher "
        "the serving policy vets with",
    )
    p.add_argument("--labels", help="labeled_pairs.parquet: the teacher's learned synonyms")
    p.add_argument("--datasets", help="build-datasets output (lineage)")
    p.add_argument("--contracts", help="directory of contract reports (lineage)")
    p.add_argument("--pipeline-run-id", help="the KFP run id, when run by the pipeline")
    _add_registered_model_flag(p)
    add_config_flags(p, "registry")
    p.set_defaults(func=run_register)


def run_register(args: argparse.Namespace) -> int:
    from qrewrite.registry.lineage import lineage
    from qrewrite.registry.registry import register

    cfg = _registry_config(args)
    model = Path(args.model)
    origin = lineage(
        model,
        data_dir=Path(args.data) if args.data else None,
        datasets_dir=Path(args.datasets) if args.datasets else None,
        config_file=Path(args.config) if args.config else None,
        contract_dirs=[Path(args.contracts)] if args.contracts else [],
        pipeline_run_id=args.pipeline_run_id,
    )
    r = register(
        cfg,
        model,
        args.metrics,
        lineage=origin,
        report_path=args.report,
        data_dir=args.data,
        labels=args.labels,
    )
    print("\n".join(r.summary_lines()))
    return 0


def add_promote(sub: Subparsers) -> None:
    p = sub.add_parser(
        "promote",
        help="make a registered version the champion by hand",
        description="Point alias champion at VERSION and record the previous champion, "
        "so that `qrewrite rollback` can return to it.",
    )
    p.add_argument("--version", required=True, help="model version number")
    p.add_argument("--reason", default="promoted by hand", help="recorded on the version")
    _add_registered_model_flag(p)
    add_config_flags(p, "registry")
    p.set_defaults(func=run_promote)


def run_promote(args: argparse.Namespace) -> int:
    from qrewrite.registry.registry import promote

    cfg = _registry_config(args)
    previous = promote(cfg, args.version, reason=args.reason)
    print(
        f"promote: {cfg.registered_model}@champion = version {args.version} "
        f"(previous: {previous or 'none'}; `qrewrite rollback` returns to it)"
    )
    return 0


def add_rollback(sub: Subparsers) -> None:
    p = sub.add_parser(
        "rollback",
        help="point champion back at the previous champion",
        description="Move alias champion back to the version that held it before.",
    )
    _add_registered_model_flag(p)
    add_config_flags(p, "registry")
    p.set_defaults(func=run_rollback)


def run_rollback(args: argparse.Namespace) -> int:
    from qrewrite.registry.registry import rollback

    cfg = _registry_config(args)
    old, new = rollback(cfg)
    print(f"rollback: {cfg.registered_model}@champion = version {new} (was {old})")
    return 0


def add_models(sub: Subparsers) -> None:
    p = sub.add_parser(
        "models",
        help="show the registered model's champion, challenger and champion history",
        description="Print the aliases and the champion history of the registered model; with "
        "--require-alias, exit 3 when an alias is not set (for scripts).",
    )
    _add_registered_model_flag(p)
    p.add_argument(
        "--require-alias",
        action="append",
        default=[],
        choices=["champion", "challenger"],
        help="fail (exit 3) unless this alias is set",
    )
    add_config_flags(p, "registry")
    p.set_defaults(func=run_models)


def run_models(args: argparse.Namespace) -> int:
    from qrewrite.registry.registry import registry_summary

    cfg = _registry_config(args)
    s = registry_summary(cfg)
    print(
        f"models: {s.name}: champion {s.champion or 'none'}, challenger "
        f"{s.challenger or 'none'}, earlier champions {s.history or 'none'}"
    )
    missing = [a for a in args.require_alias if not s.alias(a)]
    if missing:
        raise ConfigError(
            f"{s.name} has no {', '.join(missing)} alias; `qrewrite register` sets it when the "
            "gate passes (see the version's gate tag), `qrewrite promote` by hand"
        )
    return 0


def add_rewrite(sub: Subparsers) -> None:
    p = sub.add_parser(
        "rewrite",
        help="batch rewrite export: query -> top-k rewrites table for an online cache",
        description="Rewrite every query of a text file (one per line) or a CSV/parquet file "
        "with a 'query' column, in batches, and write a parquet table (query, rank, rewrite, "
        "score, grade, p_relevant, served) with a JSON summary next to it. A registered model "
        "(models:/...) serves with the policy and teacher it was registered with, the ones its "
        "evaluation measured; --set vet=model|teacher|both overrides the policy.",
    )
    p.add_argument("--model", required=True, help="model directory or models:/NAME@ALIAS URI")
    p.add_argument("--queries", required=True, help="queries file (.txt, .csv or .parquet)")
    p.add_argument("--out", required=True, help="output parquet file")
    p.add_argument(
        "--data",
        help="with --set vet=teacher|both: the synth or import-judged directory whose catalog "
        "the teacher reads (a registered model carries its own)",
    )
    p.add_argument("--labels", help="with --data: labeled_pairs.parquet, the teacher's synonyms")
    p.add_argument(
        "--tracking-uri", help="MLflow tracking URI for models:/ URIs (default: env, then preset)"
    )
    add_progress_flag(p)
    add_config_flags(p, "rewrite")
    p.set_defaults(func=run_rewrite)


def run_rewrite(args: argparse.Namespace) -> int:
    from qrewrite.serving.export import RewriteConfig, export_rewrites

    cfg = with_flags(
        load_config(RewriteConfig, args.config, "rewrite", args.overrides),
        tracking_uri=args.tracking_uri,
    )
    from qrewrite.registry.resolve import resolve_model

    model = resolve_model(args.model, tracking_uri=cfg.tracking_uri)
    s = export_rewrites(
        cfg,
        model_dir=model.path,
        queries_file=args.queries,
        out_file=args.out,
        model_ref=model.pinned,
        progress=not args.no_progress,
        data_dir=args.data,
        labels=args.labels,
        policy_dir=model.policy_dir,
    )
    print("\n".join(s.summary_lines(args.out)))
    return 0
