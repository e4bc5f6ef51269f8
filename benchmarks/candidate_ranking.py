"""How much better a ranker could pick: every candidate rewrite graded, and who picks best.

Reads the runs ``make bench-quality`` leaves (``--runs .bench/quality/market-seed*``): each
run's multi-task and single-task SFT models, training sets, catalog, labels and truth. For every
held-out query each model's candidates (its greedy rewrite and samples, as evaluation ranks them
under the run's preset, its spelling correction first) are all kept and graded by the
simulator's truth, by the teacher, and by the model's own relevance tagging (task B). The table
gives the share of queries whose chosen rewrite is relevant (truth grade 2) when it is chosen by
the model's likelihood (what evaluation serves), by the truth itself (the best any ranker could
do with these candidates), by the teacher's grade and by the model's own grade; and how well each
grader tells a relevant candidate from the others (ROC AUC over all candidates). It bounds what
ranking by a grade can add, the question behind using task B at serving time. Prints a Markdown
table and, with ``--write``, replaces its section of ``docs/benchmarks.md``. An analysis of
measured runs, never a test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from docs_section import pct, publish_table, runs_parser
from sklearn.metrics import roc_auc_score

from qrewrite.config import load_config
from qrewrite.evaluation.evaluate import EvaluateConfig, load_held_out
from qrewrite.evaluation.truth import GradedTruth
from qrewrite.labeling.teacher import Teacher
from qrewrite.search_engine import ProductRetriever
from qrewrite.serving.rewriter import Rewriter
from qrewrite.training.datasets import SFT_DIR, load_training_split

# every candidate of a query is kept: more than the greedy one plus evaluation's samples
KEEP_ALL = 64
# bench-quality's model folders: the multi-task SFT step and the ablation's single-task one
VARIANTS = {"multi-task-sft": "sft-multitask", "single-task-sft": "sft-multitask-2"}


def graded_candidates(
    rewriter: Rewriter,
    queries: list[str],
    truth: GradedTruth,
    teacher: Teacher,
    retrieval: ProductRetriever,
    page_size: int,
) -> pd.DataFrame:
    """Every ranked candidate of every query (``rank`` 0: the top rewrite evaluation measures),
    with its likelihood score, the model's own P(relevant), the teacher's grade and the truth's."""
    raw = rewriter.generate_candidates(queries)
    ranked = rewriter.rank(
        queries, raw, KEEP_ALL, graded=None, corrections=rewriter.corrections(queries)
    )
    frame = pd.DataFrame(
        [
            (i, queries[i], rank, r.text, r.score, r.p_relevant)
            for i, row in enumerate(ranked)
            for rank, r in enumerate(row)
        ],
        columns=["query_index", "query", "rank", "rewrite", "score", "p_relevant"],
    )
    pages = [r[:page_size] for r in retrieval.ranked(frame["rewrite"].tolist())]
    frame["truth"] = truth.rewrite_grades(frame["query"].tolist(), frame["rewrite"].tolist(), pages)
    frame["teacher"] = teacher.grade(frame[["query", "rewrite"]], learn=False)["grade"].to_numpy()
    return frame


def relevant_when_picked_by(frame: pd.DataFrame, key: str | None) -> float:
    """Share of queries whose candidate with the highest ``key`` (ties: the model's order) is
    relevant by the truth; ``key`` None: the model's first (what evaluation serves)."""
    order = ["query_index", "rank"] if key is None else ["query_index", key, "rank"]
    ascending = [True, True] if key is None else [True, False, True]
    picked = frame.sort_values(order, ascending=ascending).groupby("query_index").first()
    return float((picked["truth"] == 2).mean())


def auc(frame: pd.DataFrame, key: str) -> float:
    relevant = frame["truth"] == 2
    return float(roc_auc_score(relevant, frame[key])) if relevant.nunique() == 2 else float("nan")


def run_rows(run: Path) -> list[dict]:
    root = next(run.glob("latest/build-training-datasets")).parent
    data = root / "stage-marketplace" / "market"
    datasets = root / "build-training-datasets" / "datasets"
    config = load_config(EvaluateConfig, run / "preset.yaml", "evaluate", [])
    catalog = pd.read_parquet(data / "catalog.parquet")
    sets = load_training_split(datasets / SFT_DIR, SFT_DIR)
    queries = load_held_out(datasets, sets, catalog, config.max_queries, config.seed).queries
    truth = GradedTruth.load(data)
    teacher = Teacher.from_data(data, root / "label-rewrite-pairs/labels/labeled_pairs.parquet")
    retrieval = ProductRetriever(catalog, config.page_size)
    rows = []
    for variant, folder in VARIANTS.items():
        rewriter = Rewriter.from_dir(root / folder / "model", config.generation())
        frame = graded_candidates(rewriter, queries, truth, teacher, retrieval, config.page_size)
        frame = frame[frame["truth"].notna()]
        best = frame.groupby("query_index")["truth"].max()

        rows.append(
            {
                "run": run.name,
                "variant": variant,
                "queries rewritten": best.size,
                "candidates per query": f"{len(frame) / max(1, best.size):.2f}",
                "relevant: the model's first (served)": pct(relevant_when_picked_by(frame, None)),
                "any candidate relevant (the best pick)": pct(float((best == 2).mean())),
                "the teacher's pick": pct(relevant_when_picked_by(frame, "teacher")),
                "the model's own grade's pick": pct(relevant_when_picked_by(frame, "p_relevant")),
                "AUC: likelihood / teacher / own grade": (
                    f"{auc(frame, 'score'):.2f} / {auc(frame, 'teacher'):.2f} / "
                    f"{auc(frame, 'p_relevant'):.2f}"
                ),
            }
        )
    return rows


def main() -> None:
    args = runs_parser(__doc__).parse_args()
    publish_table(
        "candidate-ranking",
        "Ranking each query's candidates: how much a grade could add",
        f"`benchmarks/candidate_ranking.py` on {datetime.now(UTC):%b %d %Y} over the runs of "
        f"`make bench-quality`{f' at {args.commit}' if args.commit else ''}: every candidate of "
        "every held-out query (greedy, samples, spelling correction; the run's evaluate settings), "
        "graded by the simulator's truth, the teacher and the model's own task B; the share of "
        "queries whose picked candidate is relevant (truth grade 2) under each way of picking.",
        pd.DataFrame([row for run in args.runs for row in run_rows(run)]),
        args.write,
    )


if __name__ == "__main__":
    main()
