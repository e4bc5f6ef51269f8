"""The whole pipeline on a human-judged set: import, then one ``qrewrite run --local`` on it (the
judged preset by default), and the rewrites of held-out judged queries measured on people's grades.

Run with ``make bench-judged`` (``../shared/data/crowdflower/`` by default, ``JUDGED=<file>``
and ``SCALE=<grade scale>`` for another set). Prints a Markdown section and, with ``--write``,
replaces this benchmark's section of ``docs/benchmarks.md``, with the commit and the CPU it ran
on. A measurement, never a test.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import yaml
from docs_section import current_commit, markers, pct, write_run_preset, write_section
from judged_truth import truth_comparisons, truth_table

from qrewrite.config import preset_document
from qrewrite.environment import current_environment
from qrewrite.evaluation.report import judged_table

DEFAULT_INPUT = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "crowdflower"
) / "crowdflower_train.tsv"


def _points(value: float | None) -> str:
    """A difference of two uplifts, in points."""
    return "-" if value is None else f"{100 * value:+.1f} points"


def derived_preset(base: Path, overrides: list[str], out: Path) -> Path:
    """``base`` with ``section.key=value`` overrides and its own MLflow store under ``out``."""
    doc = preset_document(base)  # with whatever it extends merged in
    for item in overrides:
        key, _, value = item.partition("=")
        section, _, name = key.partition(".")
        doc.setdefault(section, {})[name] = yaml.safe_load(value)
    return write_run_preset(doc, out)


def run(
    qrewrite: str,
    source: Path,
    scale: str,
    work: Path,
    preset: Path,
    base_model: Path | None = None,
) -> Timing:
    data = work / "data"
    args = ["--input", str(source), "--out", str(data), "--grade-scale", scale]
    t0 = time.time()
    subprocess.run([qrewrite, "import-judged", *args], check=True)
    started = time.time()
    where = ["--data-source", str(data), "--out", str(work / "run")]
    if base_model:  # fine-tuned instead of the small model pretrained in the run
        where += ["--base-model", str(base_model.resolve())]
    subprocess.run([qrewrite, "run", "--local", "--config", str(preset), *where], check=True)
    # every step runs in a process of its own, waited for down the tree: the children's
    # largest resident set is the largest step's (or the import's), in KiB on Linux
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 2**30
    return Timing(
        import_s=started - t0, run_s=time.time() - started, started=started, peak_rss_gib=peak
    )


@dataclass
class Timing:
    import_s: float
    run_s: float
    started: float  # wall-clock time the run began
    peak_rss_gib: float  # the largest process of the import and the run, resident


def step_seconds(latest: Path, started: float) -> list[tuple[str, float]]:
    """Each step with the time since the one before it ended (its ``executor_output.json``):
    kfp.local runs the steps one after another, so each gap is a step's own time."""
    ends = sorted((p.stat().st_mtime, p.parent.name) for p in latest.glob("*/executor_output.json"))
    out, last = [], started
    for end, name in ends:
        out.append((name, end - last))
        last = end
    return out


def render(
    source: Path,
    latest: Path,
    timing: Timing,
    commit: str,
    overrides: list[str],
    name: str,
    *,
    market: Path | None = None,
    preset: Path,
) -> str:
    env = current_environment()
    metrics = json.loads((latest / "evaluate-rewriter" / "evaluation" / "metrics.json").read_text())
    labels = json.loads(
        (latest / "label-rewrite-pairs" / "labels" / "labeled_pairs.report.json").read_text()
    )
    datasets = json.loads(
        next((latest / "build-training-datasets").rglob("dataset_report.json")).read_text()
    )
    cand = metrics["candidate"]
    cal = labels.get("calibration") or {}
    a = datasets["task_a"]
    begin, end = markers("judged")
    lines = [
        begin,
        ("`bench_judged.py`" if overrides else f"`make bench-{name}`")
        + f" on `{source.name}`: import, then `qrewrite run --local --config {preset}` "
        + (f"with {', '.join(f'`{o}`' for o in overrides)} " if overrides else "")
        + f"({timing.run_s / 60:.1f} min; the import before it {timing.import_s:.0f} s; "
        f"its largest process peaked at {timing.peak_rss_gib:.2f} GiB resident). "
        f"{datetime.now(UTC):%b %d %Y}, commit {commit}, {env.cpu_model} ({env.cpus} CPUs).",
        "",
        "Steps, in seconds: "
        + ", ".join(f"{name} {s:.0f}" for name, s in step_seconds(latest, timing.started))
        + ".",
        "",
        f"- teacher calibrated on {cal.get('judged_pairs', 0):,} judged pairs of "
        f"{cal.get('judged_queries', 0):,} queries (cross-validated Spearman "
        f"{cal.get('cross_validated_spearman', float('nan')):.3f});",
        f"- rewrite supervision: {a['query_rewrite_pairs']:,} candidate pairs, "
        f"{a['graded_relevant']:,} graded relevant, {a['kept_after_per_query_cap']:,} kept "
        "(" + ", ".join(f"{k} {v['kept']:,}" for k, v in (a.get("by_source") or {}).items()) + ");",
        f"- held-out queries: {metrics['held_out_queries']:,}; candidate `{cand}`;",
        "- the models' greedy rewrites: "
        + "; ".join(
            f"{name} copies {pct(v.get('copy_rate'))}, stutters {pct(v.get('repeat_rate'))}, "
            f"its own spelling corrections first {pct(v.get('spelling_fix_rate'))} "
            f"(adding {_points(v.get('ndcg_at_10_uplift_from_spelling'))} of nDCG@10)"
            for name, v in metrics["variants"].items()
            if v.get("copy_rate") is not None
        )
        + ".",
        "",
    ]
    # the report's own table, so that the docs and report.html say the same
    lines += judged_table(metrics)[4:-1]
    samples = metrics.get("samples") or []
    if samples:
        lines += ["", "Sample rewrites (model alone):", ""]
        lines += [f"- {s['query']} -> {s['rewrite'] or '(none)'}" for s in samples[:10]]
    if market is not None:
        lines += ["", *truth_section(latest, latest.parents[1] / "data", market)]
    lines.append(end)
    return "\n".join(lines)


def truth_section(latest: Path, data: Path, market: Path) -> list[str]:
    """The same rewrites against the simulator's grade of every product (a simulator-made set)."""
    on_truth, on_judged, on_wider = truth_comparisons(latest, data, market)
    (judged_all,) = [r for r in on_judged["model_alone"] if r.subset == "all"]
    return [
        "Against the simulator's truth, which grades every catalog product for every query "
        f"(`--market {market}`; the same pages, which reproduce evaluation's nDCG@10 of the "
        f"original on the judgments: {judged_all.ndcg_at_10_original:.3f}):",
        "",
        *truth_table(on_truth, on_judged, on_wider),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--grade-scale", default="numeric:1:4")
    parser.add_argument("--work", type=Path, default=Path(".bench/judged"))
    parser.add_argument("--preset", type=Path, default=Path("configs/judged.yaml"))
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="change one key of the preset (repeatable), e.g. pretrain.epochs=2",
    )
    parser.add_argument(
        "--name", default="judged", help="the docs section to write (one per variant)"
    )
    parser.add_argument("--write", type=Path, help="docs/benchmarks.md to update")
    parser.add_argument(
        "--base-model",
        type=Path,
        help="fine-tune this model folder instead of pretraining (give the section a --name)",
    )
    parser.add_argument(
        "--market",
        type=Path,
        help="the marketplace a simulator-made set came from: also score against its truth",
    )
    args = parser.parse_args(argv)
    if not args.input.exists():
        print(f"bench-judged: {args.input}: not found", file=sys.stderr)
        return 2
    qrewrite = str(Path(sys.executable).with_name("qrewrite"))
    commit = current_commit()
    shutil.rmtree(args.work, ignore_errors=True)
    preset = derived_preset(args.preset, args.overrides, args.work)
    timing = run(qrewrite, args.input, args.grade_scale, args.work, preset, args.base_model)
    latest = args.work / "run" / "latest"
    section = render(
        args.input,
        latest,
        timing,
        commit,
        args.overrides + ([f"--base-model {args.base_model}"] if args.base_model else []),
        args.name,
        market=args.market,
        preset=args.preset,
    )
    section = section.replace("bench:judged:", f"bench:{args.name}:")
    print(section)
    if args.write:
        write_section(args.write, args.name, section, "The pipeline on a human-judged set")
    return 0


if __name__ == "__main__":
    sys.exit(main())
