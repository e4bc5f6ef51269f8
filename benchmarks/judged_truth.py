"""A judged set made from the simulator (``make_judged_set.py``) has a truth people's pools lack:
the grade of every catalog product for every query. This scores the rewrites of a judged run's
held-out queries against it, with the evaluation's own pages and comparison, to say how far the
judged nDCG@10 (unjudged products counted irrelevant) and the condensed one (left out) are from
the full truth, and how much of the gap a wider pool closes. A benchmark's check, never part of
evaluation: a shop has no such truth.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
from make_judged_set import query_intents

from qrewrite.evaluation.evaluate import load_held_out
from qrewrite.evaluation.judged import JudgedComparison, SpellingCheck, compare_on_judgments
from qrewrite.evaluation.truth import GradedTruth
from qrewrite.market.truth import grade_pairs
from qrewrite.search_engine import ProductRetriever
from qrewrite.serving.policy import ServingPolicy
from qrewrite.training.datasets import SFT_DIR, load_training_split

# how many of the engine's results for a query's canonical phrasing a wider pool adds
WIDER_POOL_TOP = 3


@dataclass
class JudgedRun:
    """A judged run's held-out queries as evaluation saw them: its config, the catalog's pages
    of each query, the candidate's top rewrites and whether each was served."""

    data: Path  # the imported judged set
    config: dict
    catalog: pd.DataFrame
    queries: list[str]
    first_rewrites: pd.DataFrame  # every variant's top rewrites (rewrites.parquet, rank 1)
    top: list[str]  # each query's top rewrite ("" where none)
    served: list[bool]
    teacher_grade: list[int | None]  # the teacher's grade of the top rewrite
    retrieval: ProductRetriever
    original: list[list[int]]
    misspelled: list[bool]

    def of_variant(self, variant: str) -> JudgedRun:
        """The same queries and pages with ``variant``'s top rewrites."""
        return replace(self, **top_rewrites(self.first_rewrites, variant, self.queries))

    def compare(self, grades: list, seen: list | None, texts: list[str]) -> list[JudgedComparison]:
        """Original vs original + each text's results on ``grades`` (evaluation's comparison)."""
        rewritten = self.retrieval.ranked(texts)
        return compare_on_judgments(
            self.queries,
            self.original,
            [r if t else [] for r, t in zip(rewritten, texts, strict=True)],
            grades,
            self.misspelled,
            judged=seen,
            fuse=ServingPolicy.of(self.config).fuse,
            page_size=self.config["page_size"],
            recall_depth=self.config["recall_depth"],
            n_boot=self.config["bootstrap"],
            seed=self.config["seed"],
        )


def top_rewrites(first: pd.DataFrame, variant: str, queries: list[str]) -> dict[str, list]:
    """``variant``'s top rewrite of each query, whether it was served and its teacher grade."""
    by_query = first[first["variant"] == variant].set_index("query")

    def grade(q: str) -> int | None:
        g = by_query["teacher_grade"].get(q)
        return None if g is None or pd.isna(g) else int(g)

    return {
        "top": [str(by_query["rewrite"].get(q, "")) for q in queries],
        "served": [bool(by_query["served"].get(q, False)) for q in queries],
        "teacher_grade": [grade(q) for q in queries],
    }


def load_run(latest: Path, data: Path, variant: str | None = None) -> JudgedRun:
    """The held-out queries of the pipeline run ``latest`` over ``data`` and the top rewrites of
    ``variant`` (the candidate evaluation put forward by default)."""
    evaluation = latest / "evaluate-rewriter" / "evaluation"
    metrics = json.loads((evaluation / "metrics.json").read_text())
    config = metrics["config"]
    datasets = latest / "build-training-datasets" / "datasets"
    catalog = pd.read_parquet(data / "catalog.parquet")
    sft = load_training_split(datasets / SFT_DIR, SFT_DIR)
    held = load_held_out(datasets, sft, catalog, config["max_queries"], config["seed"])
    rewrites = pd.read_parquet(evaluation / "rewrites.parquet")
    depth = max(config["recall_depth"], config["retrieve_k"], config["page_size"])
    retrieval = ProductRetriever(catalog, depth)
    spelling = SpellingCheck(catalog["title"].astype(str).tolist())
    return JudgedRun(
        data=data,
        config=config,
        catalog=catalog,
        queries=held.queries,
        first_rewrites=rewrites[rewrites["rank"] == 1],
        **top_rewrites(
            rewrites[rewrites["rank"] == 1], variant or metrics["candidate"], held.queries
        ),
        retrieval=retrieval,
        original=retrieval.ranked(held.queries),
        misspelled=[spelling.misspelled(q) for q in held.queries],
    )


def truth_rows(run: JudgedRun, market: Path) -> list[np.ndarray | None]:
    """Every imported product graded under each held-out query's intent, as make_judged_set
    graded its judged ones (None for a query the market does not know)."""
    market_catalog = pd.read_parquet(market / "catalog.parquet")
    intents = pd.read_parquet(market / "truth" / "intents.parquet")
    intent_of = query_intents(market).set_index("query")["intent_id"]
    rows_in_market = (
        pd.Series(np.arange(len(market_catalog)), index=market_catalog["product_id"])
        .reindex(run.catalog["product_id"])
        .to_numpy()
    )
    out: list[np.ndarray | None] = []
    for q in run.queries:
        if q not in intent_of.index:
            out.append(None)
            continue
        intent = np.full(len(rows_in_market), int(intent_of[q]))
        out.append(
            np.asarray(grade_pairs(intents, market_catalog, intent, rows_in_market), np.int8)
        )
    return out


def truth_comparisons(
    latest: Path, data: Path, market: Path
) -> tuple[
    dict[str, list[JudgedComparison]],
    dict[str, list[JudgedComparison]],
    dict[str, list[JudgedComparison]],
]:
    """Per arm (``model_alone``, ``with_serving_policy``): the comparison on the full truth,
    the same pages on the imported judgments (which must reproduce evaluation's), and on a wider
    pool: the judged products plus the engine's top results for the canonical phrasing of the
    query's intent, graded by the truth. Public sets pool from engines that correct and
    understand queries; make_judged_set pools from the query as typed, so a correction's
    products go unjudged there."""
    run = load_run(latest, data)
    arms = {
        "model_alone": run.top,
        "with_serving_policy": [t if ok else "" for t, ok in zip(run.top, run.served, strict=True)],
    }
    truth = truth_rows(run, market)
    judged = GradedTruth.load(data)
    judged_rows = judged.grade_rows(run.queries)
    judged_seen = judged.judged_rows(run.queries)

    intent_of = query_intents(market).set_index("query")["intent_id"]
    phrasings = pd.read_parquet(market / "truth" / "queries.parquet")
    canonical = phrasings[phrasings["canonical"]].drop_duplicates("intent_id")
    canonical_of = canonical.set_index("intent_id")["query"]
    clean = [
        str(canonical_of.get(int(intent_of[q]), q)) if q in intent_of.index else q
        for q in run.queries
    ]
    wider_rows: list[np.ndarray | None] = []
    wider_seen: list[np.ndarray | None] = []
    for row, seen, found in zip(truth, judged_seen, run.retrieval.ranked(clean), strict=True):
        if row is None or seen is None:
            wider_rows.append(None)
            wider_seen.append(seen)
            continue
        pooled = seen.copy()
        pooled[list(found[:WIDER_POOL_TOP])] = True
        wider_seen.append(pooled)
        wider_rows.append(np.where(pooled, row, 0).astype(np.int8))

    on_truth = {arm: run.compare(truth, None, texts) for arm, texts in arms.items()}
    on_judged = {arm: run.compare(judged_rows, judged_seen, texts) for arm, texts in arms.items()}
    on_wider = {arm: run.compare(wider_rows, wider_seen, texts) for arm, texts in arms.items()}
    return on_truth, on_judged, on_wider


def truth_table(
    on_truth: dict[str, list[JudgedComparison]],
    on_judged: dict[str, list[JudgedComparison]],
    on_wider: dict[str, list[JudgedComparison]],
) -> list[str]:
    """Markdown: each arm and subset's nDCG@10 uplift by the four measures."""
    titles = {"all": "all", "misspelled": "misspelled queries"}
    titles["original_finds_nothing_relevant"] = "original finds nothing relevant (judged)"
    lines = [
        "| rewrites | queries | nDCG@10 original, truth | nDCG@10 fused, truth "
        "| uplift, full truth [95% CI] | uplift, judged (unjudged irrelevant) "
        "| uplift, judged (unjudged left out) "
        f"| uplift, judged, pool + canonical phrasing's top {WIDER_POOL_TOP} [95% CI] "
        "| judged@10 original / fused |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm, title in (("model_alone", "model alone"), ("with_serving_policy", "served")):
        judged_by = {r.subset: r for r in on_judged[arm]}
        wider_by = {r.subset: r for r in on_wider[arm]}
        for t in on_truth[arm]:
            j = judged_by.get(t.subset)
            w = wider_by.get(t.subset)
            if t.subset == "original_finds_nothing_relevant" or j is None or w is None:
                continue  # "nothing relevant" differs by truth; the judged subset is above
            lines.append(
                f"| {title}, {titles[t.subset]} | {t.queries:,} | "
                f"{t.ndcg_at_10_original:.3f} | {t.ndcg_at_10:.3f} | "
                f"{100 * t.ndcg_at_10_uplift:+.1f}% [{100 * t.ndcg_at_10_uplift_ci_low:+.1f}, "
                f"{100 * t.ndcg_at_10_uplift_ci_high:+.1f}] | {100 * j.ndcg_at_10_uplift:+.1f}% | "
                f"{100 * j.condensed_ndcg_at_10_uplift:+.1f}% | "
                f"{100 * w.ndcg_at_10_uplift:+.1f}% [{100 * w.ndcg_at_10_uplift_ci_low:+.1f}, "
                f"{100 * w.ndcg_at_10_uplift_ci_high:+.1f}] | "
                f"{100 * j.judged_at_10_original:.0f}% / {100 * j.judged_at_10:.0f}% |"
            )
    return lines


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="A judged run's rewrites scored against the simulator's full truth (the table "
        "`make bench-judged-scale` writes), e.g. after `qrewrite evaluate --set ...` on its models"
    )
    parser.add_argument(
        "run",
        type=Path,
        help="the run's steps: build-training-datasets/ and evaluate-rewriter/evaluation/",
    )
    parser.add_argument("--data", type=Path, required=True, help="the imported judged set")
    parser.add_argument(
        "--market", type=Path, required=True, help="make_judged_set.py's marketplace (its truth)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    print("\n".join(truth_table(*truth_comparisons(args.run, args.data, args.market))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
