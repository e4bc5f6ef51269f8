"""What each way of vetting serves on a judged run's held-out queries: every top rewrite (the
model alone), the teacher's relevant grade (``vet: teacher``), the page vetter (``vet: page``)
at its default margin 0 and above it, and with a floor on the rewrite's own grade (partial,
relevant). Each arm is scored with evaluation's own pages and comparison on people's grades
and, for a set made from the simulator (``--market``), on its full truth. The page gains are
:meth:`ServingPolicy.page_gains` with the teacher evaluation built (``Teacher.from_data`` over
the run's data and labels), for the run's SFT and GRPO models.

``make bench-judged-scale`` runs it after the pipeline; by hand, after ``make bench-judged``:
``python benchmarks/page_vetter.py --work .bench/judged``. Prints a Markdown section and, with
``--write``, replaces its section of ``docs/benchmarks.md``. A measurement, never a test.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

from docs_section import current_commit, markers, write_section
from judged_truth import JudgedRun, load_run, truth_rows

from qrewrite.environment import current_environment
from qrewrite.evaluation.judged import JudgedComparison
from qrewrite.evaluation.truth import GradedTruth
from qrewrite.labeling.teacher import Teacher
from qrewrite.serving.policy import ServingPolicy

VARIANTS = ("multi-task-sft", "multi-task-sft+grpo")
MARGINS = (0.1, 0.3)  # min_page_gain above the default 0


def arms(run: JudgedRun, gains: list[float | None]) -> dict[str, list[str]]:
    """Each way of vetting: the rewrite served per held-out query ("" for none)."""

    def page(margin: float, *, min_grade: int = 0) -> list[str]:
        return [
            t if g is not None and g > margin and (grade or 0) >= min_grade else ""
            for t, g, grade in zip(run.top, gains, run.teacher_grade, strict=True)
        ]

    teacher = [t if g == 2 else "" for t, g in zip(run.top, run.teacher_grade, strict=True)]
    return {
        "every top rewrite (the model alone)": run.top,
        "the teacher grades it relevant (`vet: teacher`)": teacher,
        "the teacher grades the page better (`vet: page`)": page(0.0),
        **{f"... by more than {m}": page(m) for m in MARGINS},
        "the page better and the rewrite at least partial": page(0.0, min_grade=1),
        "both: relevant and the page better": page(0.0, min_grade=2),
    }


def cell(c: JudgedComparison | None) -> str:
    if c is None:
        return "-"
    return (
        f"{100 * c.ndcg_at_10_uplift:+.1f}% [{100 * c.ndcg_at_10_uplift_ci_low:+.1f}, "
        f"{100 * c.ndcg_at_10_uplift_ci_high:+.1f}]"
    )


def variant_table(
    run: JudgedRun, teacher: Teacher, judgments: tuple[list, list], truth: list | None
) -> list[str]:
    """The table of one variant: its arms on ``judgments`` (grades, judged products per query)
    and on ``truth`` (every product's grade per query; None without a market)."""
    policy = ServingPolicy.of({**run.config, "vet": "page"})
    gains = policy.page_gains(teacher, run.retrieval, run.queries, run.top)
    rows, seen = judgments
    body = []
    counts = (0, 0)  # queries compared: all, misspelled
    for name, texts in arms(run, gains).items():
        on_judged = {c.subset: c for c in run.compare(rows, seen, texts)}
        every, typos = on_judged["all"], on_judged.get("misspelled")
        counts = (every.queries, typos.queries if typos else 0)
        line = f"| {name} | {every.rewritten:,} | {cell(every)} | {cell(typos)} |"
        if truth is not None:
            on_truth = {c.subset: c for c in run.compare(truth, None, texts)}
            line += f" {cell(on_truth['all'])} | {cell(on_truth.get('misspelled'))} |"
        body.append(line)
    all_q, typo_q = f"{counts[0]:,} queries", f"{counts[1]:,} misspelled"
    head = f"| served when | served | judgments, {all_q} | judgments, {typo_q} |"
    rule = "|---|---:|---:|---:|"
    if truth is not None:
        head += f" truth, {all_q} | truth, {typo_q} |"
        rule += "---:|---:|"
    lines = [head, rule, *body]
    return lines


def render(work: Path, market: Path | None, commit: str) -> str:
    latest = work / "run" / "latest"
    data = work / "data"
    labels = latest / "label-rewrite-pairs" / "labels" / "labeled_pairs.parquet"
    teacher = Teacher.from_data(data, labels)
    env = current_environment()
    begin, end = markers(f"page-vetter-{work.name}")
    first = load_run(latest, data, VARIANTS[0])
    # the queries, pages and grades are the same for every variant: read them once
    judged = GradedTruth.load(data)
    judgments = (judged.grade_rows(first.queries), judged.judged_rows(first.queries))
    truth = truth_rows(first, market) if market is not None else None
    lines = [
        begin,
        f"`benchmarks/page_vetter.py --work {work}`"
        + (f" `--market {market}`" if market else "")
        + ": each way of vetting on the run's held-out queries that have a judged relevant "
        "product, nDCG@10 uplift of original + served rewrite over the original, 95% interval "
        "over queries; the judgments count unjudged products irrelevant. "
        f"{datetime.now(UTC):%b %d %Y}, commit {commit}, {env.cpu_model} ({env.cpus} CPUs). "
        "Served: queries with a judged relevant product whose rewrite is served.",
    ]
    for variant in VARIANTS:
        run = first.of_variant(variant)
        lines += ["", f"`{variant}`:", "", *variant_table(run, teacher, judgments, truth)]
    lines.append(end)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, required=True, help="bench_judged.py's --work")
    parser.add_argument("--market", type=Path, help="the simulator's market of the judged set")
    parser.add_argument("--write", type=Path, help="docs/benchmarks.md to update")
    args = parser.parse_args(argv)
    if not (args.work / "run" / "latest" / "evaluate-rewriter").is_dir():
        print(f"page_vetter: {args.work}: no evaluated pipeline run there", file=sys.stderr)
        return 2
    section = render(args.work, args.market, current_commit())
    print(section)
    if args.write:
        write_section(args.write, f"page-vetter-{args.work.name}", section, "The page vetter")
    return 0


if __name__ == "__main__":
    sys.exit(main())
