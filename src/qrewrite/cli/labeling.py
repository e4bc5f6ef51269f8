"""The labeling steps: grade mined pairs, and measure labels against the truth.

Each command's ``add_*`` (its parser) sits beside its ``run_*`` (what it does)."""

from __future__ import annotations

import argparse
import json

from qrewrite.cli.common import Subparsers, add_config_flags, with_flags
from qrewrite.config import load_config


def add_parsers(sub: Subparsers) -> None:
    """This group's commands, in the order ``qrewrite --help`` lists them."""
    add_label(sub)
    add_label_eval(sub)


def add_label(sub: Subparsers) -> None:
    p = sub.add_parser(
        "label",
        help="grade mined (query, rewrite) and (query, title) pairs: 2 relevant, 1 partial, 0 not",
        description="Grade the pairs of a rewrite_candidates file by the guideline in "
        "docs/labeling.md and write labeled_pairs (parquet) with per-grade probabilities and the "
        "signals each grade rests on, plus OUT.report.json. The default backend, teacher, runs "
        "on a CPU with no ground truth: a lexicon mined from the catalog, a bundled sentence "
        "encoder, and behaviour from mining.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="the synth or import-judged output directory (its catalog is read)",
    )
    p.add_argument("--candidates", required=True, help="rewrite_candidates.parquet from mine")
    p.add_argument("--out", required=True, help="the labeled_pairs parquet file to write")
    p.add_argument(
        "--backend",
        choices=["teacher", "llm"],
        help="teacher (default: CPU, no model server) or llm (an OpenAI-compatible chat endpoint "
        "set with --set llm_endpoint=URL --set llm_model=NAME; key from $QREWRITE_LLM_API_KEY)",
    )
    add_config_flags(p, "label")
    p.set_defaults(func=run_label)


def run_label(args: argparse.Namespace) -> int:
    from qrewrite.labeling.label import LabelConfig, label

    cfg = with_flags(
        load_config(LabelConfig, args.config, "label", args.overrides), backend=args.backend
    )
    report = label(cfg, data_dir=args.data, candidates_path=args.candidates, out_path=args.out)
    print("\n".join(report.summary_lines(args.out)))
    return 0


def add_label_eval(sub: Subparsers) -> None:
    p = sub.add_parser(
        "label-eval",
        help="measure relevance labels against the ground truth (accuracy, macro-F1, kappa)",
        description="Compare a labels table (query, rewrite, grade 0/1/2, optional product_id "
        "for (query, title) pairs and source) with the truth of a synth or import-judged "
        "directory: accuracy, macro-F1, Cohen's kappa, confusion matrix, Spearman, overall, per "
        "pair kind and per source. Definitions: docs/labeling.md.",
    )
    p.add_argument("--data", required=True, help="the synth or import-judged output directory")
    p.add_argument("--labels", required=True, help="the labels parquet file")
    p.add_argument("--report", help="also write label_eval.md and label_eval.json here")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=run_label_eval)


def run_label_eval(args: argparse.Namespace) -> int:
    from qrewrite.evaluation.labels import evaluate_labels, metrics_markdown
    from qrewrite.outputs import check_output_folder, staged_output

    if args.report:
        check_output_folder("label-eval", args.report)
    result = evaluate_labels(data_dir=args.data, labels_path=args.labels).to_dict()
    summary = metrics_markdown(result)
    if args.report:
        written = ("label_eval.json", "label_eval.md")
        with staged_output(args.report, written, step="label-eval") as stage:
            (stage / "label_eval.json").write_text(json.dumps(result, indent=2) + "\n")
            (stage / "label_eval.md").write_text(summary)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(summary, end="")
    return 0
