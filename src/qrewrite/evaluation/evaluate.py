"""``qrewrite evaluate``: how good are a model's rewrites on queries it never saw in training?

Every variant (the candidate, the baselines of the ablation, the current champion) rewrites the
same held-out queries with the same settings; the ``no-rewrite`` row is always there. Metrics are
defined in docs/evaluation.md; ``metrics.json`` keys are stable (``METRIC_KEYS``).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qrewrite import __version__
from qrewrite.environment import current_environment
from qrewrite.errors import ConfigError, DataError
from qrewrite.evaluation import metrics as m
from qrewrite.evaluation.ab_test import ABResult, ABSettings, held_out_searches, simulate_ab
from qrewrite.evaluation.judged import SpellingCheck, compare_on_judgments
from qrewrite.evaluation.report import HEAD_QUERIES
from qrewrite.evaluation.truth import GradedTruth
from qrewrite.outputs import staged_output
from qrewrite.registry.config import CHAMPION
from qrewrite.search_engine import ProductRetriever
from qrewrite.serving.policy import ServingPolicy
from qrewrite.serving.rewriter import GenerationSettings, Rewriter, generation_settings
from qrewrite.tables import read_parquet_table
from qrewrite.text import normalize_query
from qrewrite.tracking import DEFAULT_TRACKING_URI, mlflow_run
from qrewrite.training.datasets import GRPO_DIR, SFT_DIR, load_training_split

log = logging.getLogger(__name__)

NO_REWRITE = "no-rewrite"
UNFILTERED = "#unfiltered"  # the A/B arm that serves every top rewrite, vetted or not
# ... and every top rewrite the model ranks without its spelling corrections (correct_spelling)
UNCORRECTED = "#uncorrected"

# The keys of metrics.json per variant; docs/evaluation.md defines each. Never rename one.
METRIC_KEYS = (
    "queries",
    "served_rate",
    "relevance_rate",
    "relevance_rate_truth",
    "served_relevance_rate",
    "served_relevance_rate_truth",
    "sampled_relevance_rate",
    "increment",
    "hit_rate",
    "hit_rate_original",
    "ndcg_at_10",
    "ndcg_at_10_original",
    "recall_at_100",
    "recall_at_100_original",
    # on human judgments (imported judged data): nDCG@10 of original + rewrite over original's
    "ndcg_at_10_uplift",
    "ndcg_at_10_uplift_ci_low",
    "ndcg_at_10_uplift_ci_high",
    "ndcg_at_10_uplift_unfiltered",
    "ndcg_at_10_uplift_unfiltered_ci_low",
    "ndcg_at_10_uplift_unfiltered_ci_high",
    "ndcg_at_10_uplift_misspelled_unfiltered",
    # the same with unjudged products left out of the pages (condensed lists), and how much of
    # the fused first page people judged
    "condensed_ndcg_at_10_uplift",
    "condensed_ndcg_at_10_uplift_unfiltered",
    "judged_at_10",
    "judged_at_10_unfiltered",
    "ucvr_control",
    "ucvr_treatment",
    "ucvr_uplift",
    "ucvr_uplift_ci_low",
    "ucvr_uplift_ci_high",
    # the same uplift's interval over queries (a bootstrap that keeps each query's searches)
    "ucvr_uplift_query_ci_low",
    "ucvr_uplift_query_ci_high",
    "ucvr_uplift_unfiltered",
    "ucvr_uplift_unfiltered_ci_low",
    "ucvr_uplift_unfiltered_ci_high",
    "ucvr_uplift_unfiltered_query_ci_low",
    "ucvr_uplift_unfiltered_query_ci_high",
    # both uplifts with the most searched held-out query's searches set aside, intervals over
    # the other queries: how much of the uplift is that one query's (synthetic data)
    "ucvr_uplift_without_top_query",
    "ucvr_uplift_without_top_query_ci_low",
    "ucvr_uplift_without_top_query_ci_high",
    "ucvr_uplift_unfiltered_without_top_query",
    "ucvr_uplift_unfiltered_without_top_query_ci_low",
    "ucvr_uplift_unfiltered_without_top_query_ci_high",
    "ucvr_uplift_from_vetting",
    # the model's spelling corrections: share of held-out queries whose top rewrite is one, and
    # how much they add to the model alone's UCVR uplift (paired by query, 95% interval)
    "spelling_fix_rate",
    "ucvr_uplift_from_spelling",
    "ucvr_uplift_from_spelling_ci_low",
    "ucvr_uplift_from_spelling_ci_high",
    # ... and on human judgments, to the model alone's nDCG@10 uplift (judged data)
    "ndcg_at_10_uplift_from_spelling",
    "ctr_uplift",
    "ctr_uplift_ci_low",
    "ctr_uplift_ci_high",
    "pages_changed",
    "tagging_accuracy",
    "tagging_macro_f1",
    "copy_rate",
    "greedy_copy_rate",
    "repeat_rate",
    "empty_rate",
    "distinct_rewrites_per_query",
    "queries_per_second",
    "batch_latency_ms",
)


# The candidate's figures without any vetting (the model alone), which reports show first ...
MODEL_ALONE_KEYS = (
    "relevance_rate_truth",
    "relevance_rate",
    "ucvr_uplift_unfiltered",
    "ucvr_uplift_unfiltered_ci_low",
    "ucvr_uplift_unfiltered_ci_high",
    "ucvr_uplift_unfiltered_query_ci_low",
    "ucvr_uplift_unfiltered_query_ci_high",
    "ucvr_uplift_unfiltered_without_top_query",
    "ucvr_uplift_unfiltered_without_top_query_ci_low",
    "ucvr_uplift_unfiltered_without_top_query_ci_high",
    "ndcg_at_10_uplift_unfiltered",
    "ndcg_at_10_uplift_unfiltered_ci_low",
    "ndcg_at_10_uplift_unfiltered_ci_high",
    "copy_rate",
    "greedy_copy_rate",
    "repeat_rate",
    "empty_rate",
    "tagging_macro_f1",
    "spelling_fix_rate",
    "ucvr_uplift_from_spelling",
)
# ... and what the serving policy serves, and how much UCVR its vetting adds
SERVING_POLICY_KEYS = (
    "served_rate",
    "served_relevance_rate_truth",
    "served_relevance_rate",
    "ucvr_uplift",
    "ucvr_uplift_ci_low",
    "ucvr_uplift_ci_high",
    "ucvr_uplift_query_ci_low",
    "ucvr_uplift_query_ci_high",
    "ucvr_uplift_without_top_query",
    "ucvr_uplift_without_top_query_ci_low",
    "ucvr_uplift_without_top_query_ci_high",
    "ucvr_uplift_from_vetting",
    "ndcg_at_10_uplift",
    "ndcg_at_10_uplift_ci_low",
    "ndcg_at_10_uplift_ci_high",
)
SAMPLE_ROWS = 25  # sample rewrites in the report
# what evaluate writes into its output folder (and rewards_<variant>.png per trained variant)
EVALUATION_OUTPUTS = (
    "rewrites.parquet",
    "metrics.json",
    "report.md",
    "report.html",
    "metrics.png",
    "grades.png",
)


@dataclass
class EvaluateConfig:
    """Options of ``qrewrite evaluate`` (section ``evaluate:``)."""

    max_queries: int = 0  # held-out queries to rewrite (0: all)
    k: int = 3  # rewrites kept per query (the first one is served and measured)
    samples: int = 4  # top-k sampled candidates per query on top of the greedy one
    top_k: int = 20
    temperature: float = 1.0
    abstain_on_copy: bool = True  # no rewrite when the greedy one copies the query
    continue_copies: bool = False  # ...unless decoded again past the copy (GenerationSettings)
    drop_repeats: bool = True  # drop candidates that repeat a word (GenerationSettings)
    correct_spelling: bool = True  # the model's spelling correction first (GenerationSettings)
    correction_beams: int = 4  # ...the likeliest respelling of this many (GenerationSettings)
    max_new_tokens: int = 16
    batch_size: int = 64
    retrieve_k: int = 20  # result depth of hit rate and increment (as the GRPO rewards)
    page_size: int = 10  # what a shopper sees; nDCG@10 and the A/B pages
    merge: str = "rrf"  # how original and rewrite results share the page: rrf | interleave
    rrf_k: int = 60
    rewrite_weight: float = 1.0  # rrf: the rewrite's list against the original's 1
    # the serving policy (qrewrite.serving.policy): who vets a top rewrite before it is served:
    # "model" (its own tagging gives it P(relevant) >= min_p_relevant; 0 serves every rewrite),
    # "teacher" (the labeler grades it 2, an offline relevance filter over the export), "both",
    # "page" (the teacher grades the page served with it, fused as `merge` fuses, above the
    # original's own by more than min_page_gain)
    min_p_relevant: float = 0.5
    min_page_gain: float = 0.0
    vet: str = "model"
    recall_depth: int = 100
    ab_replicas: int = 10
    bootstrap: int = 1000
    tagging_eval_pairs: int = 600
    teacher: bool = True  # grade rewrites with the teacher labeler too
    # with a fallback variant (the model the candidate was aligned from), the candidate is put
    # forward only when it improves on it (:func:`choose_candidate`); false: always the candidate
    candidate_must_improve: bool = True
    seed: int = 7
    tracking_uri: str = DEFAULT_TRACKING_URI
    experiment: str = "qrewrite"

    def check(self) -> None:
        self.policy().check("evaluate")
        if self.policy().needs_teacher and not self.teacher:
            raise ConfigError(
                f"evaluate.vet={self.vet!r} needs the teacher; set evaluate.teacher: true"
            )

    def policy(self) -> ServingPolicy:
        return ServingPolicy.of(self)

    def generation(self) -> GenerationSettings:
        return generation_settings(self)


# the pipeline's trained variants, by the names evaluation and registration share
SINGLE_TASK_SFT = "single-task-sft"
MULTI_TASK_SFT = "multi-task-sft"
ALIGNED = "multi-task-sft+grpo"  # the GRPO model: the candidate unless it fails to improve
RELEVANCE_TOLERANCE = 0.01  # "relevance no more than 1 point lower" (issue 15's bar for GRPO)


@dataclass(frozen=True)
class CandidateChoice:
    """Which variant evaluation puts forward for registration, and why."""

    preferred: str  # the model the run trained last (the GRPO model)
    fallback: str  # the model it was trained from (multi-task SFT)
    chosen: str
    reason: str
    # preferred's unvetted UCVR uplift minus fallback's, with its 95% interval over queries
    # (paired); None where there is no simulated A/B test
    uplift_difference: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _listed(difference: tuple[float, float, float] | None) -> list[float] | None:
    return [float(x) for x in difference] if difference is not None else None


def _measured_in_both(
    a: dict[str, float | None], b: dict[str, float | None], keys: tuple[str, ...]
) -> str | None:
    """The first of ``keys`` with finite values in both rows (metrics.json writes NaN as
    null)."""
    for key in keys:
        values = (a.get(key), b.get(key))
        if all(v is not None and np.isfinite(v) for v in values):
            return key
    return None


# the unvetted uplift the data measures: the simulated A/B test's, else nDCG@10 on people's grades
UPLIFT_KEYS = ("ucvr_uplift_unfiltered", "ndcg_at_10_uplift_unfiltered")
RELEVANCE_KEYS = ("relevance_rate_truth", "relevance_rate")


def choose_candidate(
    variants: dict[str, dict[str, float | None]],
    *,
    preferred: str,
    fallback: str,
    relevance_tolerance: float = RELEVANCE_TOLERANCE,
    difference: tuple[float, float, float] | None = None,
) -> CandidateChoice:
    """``preferred`` stays the candidate when it improves on ``fallback``: its uplift with every
    rewrite served (simulated UCVR, else nDCG@10 on people's grades) higher, and its relevance
    (truth where the data has it, else the teacher's) at most ``relevance_tolerance`` lower.
    Otherwise ``fallback`` is put forward: an alignment step that makes search worse is not
    shipped. Without an uplift to compare, ``preferred`` stays. ``difference`` (preferred's
    uplift minus fallback's, with its interval over queries) is said beside the reason: the rule
    is the point estimates', and the interval tells whether the queries establish it.

    >>> choose_candidate(
    ...     {"sft": {"ucvr_uplift_unfiltered": 0.22, "relevance_rate_truth": 0.61},
    ...      "grpo": {"ucvr_uplift_unfiltered": 0.05, "relevance_rate_truth": 0.62}},
    ...     preferred="grpo", fallback="sft").chosen
    'sft'
    """
    new, old = variants[preferred], variants[fallback]
    listed = _listed(difference)
    uplift = _measured_in_both(new, old, UPLIFT_KEYS)
    if uplift is None:
        return CandidateChoice(
            preferred, fallback, preferred, "no unvetted uplift measured for both: kept", listed
        )
    relevance = _measured_in_both(new, old, RELEVANCE_KEYS)
    said = f"{uplift} {new[uplift]:+.2%} vs {old[uplift]:+.2%}"
    if relevance is not None:
        said += f", {relevance} {new[relevance]:.1%} vs {old[relevance]:.1%}"
    if difference is not None and all(np.isfinite(difference)):
        point, lo, hi = difference
        within = "" if lo > 0 or hi < 0 else ", within what the queries can tell apart"
        said += (
            f"; difference {100 * point:+.1f} points [{100 * lo:+.1f}, {100 * hi:+.1f}] "
            f"over queries{within}"
        )
    if new[uplift] <= old[uplift]:
        why = f"{preferred} does not lift more: {said}"
        return CandidateChoice(preferred, fallback, fallback, why, listed)
    if relevance is not None and new[relevance] < old[relevance] - relevance_tolerance:
        why = f"{preferred} loses over {100 * relevance_tolerance:g} points of relevance: {said}"
        return CandidateChoice(preferred, fallback, fallback, why, listed)
    return CandidateChoice(preferred, fallback, preferred, f"{preferred} improves: {said}", listed)


@dataclass
class HeldOut:
    """The held-out queries and what the logs say about them."""

    queries: list[str]
    purchased: list[set[int]]
    relevant_logged: list[set[int]]
    overlap_dropped: int


def load_held_out(
    datasets_dir: Path, sft: Any, catalog: pd.DataFrame, max_queries: int, seed: int
) -> HeldOut:
    """The GRPO eval split's queries, minus any that training saw (with a warning and count)."""
    grpo = load_training_split(datasets_dir / GRPO_DIR, GRPO_DIR)
    seen = {normalize_query(q) for q in grpo["train"]["query"]} | {
        normalize_query(q) for q in sft["train"]["query"]
    }
    rows = grpo["eval"].to_pandas()
    rows["norm"] = rows["query"].map(normalize_query)
    rows = rows.drop_duplicates("norm")
    overlap = rows["norm"].isin(seen)
    if overlap.all():
        raise DataError(
            f"{datasets_dir / GRPO_DIR}: all {len(rows)} eval queries also appear in training; "
            "rebuild the datasets (build-datasets splits by query)"
        )
    if overlap.any():
        log.warning(
            "evaluate: %d of %d eval queries also appear in the training sets; they are left out "
            "so the metrics stay held-out",
            int(overlap.sum()),
            len(rows),
        )
    rows = rows[~overlap]
    if max_queries and len(rows) > max_queries:
        rows = rows.sample(n=max_queries, random_state=seed)
    index = pd.Series(np.arange(len(catalog)), index=catalog["product_id"])

    def as_idx(ids: Any) -> set[int]:
        got = index.reindex(list(ids)).dropna()
        return set(got.astype(np.int64).tolist())

    return HeldOut(
        queries=rows["query"].tolist(),
        purchased=[as_idx(p) for p in rows["purchased"]],
        relevant_logged=[as_idx(p) for p in rows["relevant"]],
        overlap_dropped=int(overlap.sum()),
    )


def _mean(values: list[float]) -> float:
    arr = np.asarray(values, dtype=float)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float("nan")


def retrieval_metrics(
    config: EvaluateConfig,
    held: HeldOut,
    served: list[str],
    retrieval: ProductRetriever,
    truth: GradedTruth | None,
) -> tuple[dict[str, float], dict[str, list[int]]]:
    """Hit rate, increment, nDCG@10 and recall@100 of original-only vs original + rewrite; and
    the merged page per query for the A/B test."""
    orig = retrieval.ranked(held.queries)
    rw = retrieval.ranked(served)
    k = config.retrieve_k
    orig_k = [set(o[:k]) for o in orig]
    rw_k = [set(r[:k]) for r in rw]
    out: dict[str, float] = {
        "hit_rate_original": m.hit_rate(held.purchased, orig_k),
        "hit_rate": m.hit_rate(held.purchased, [o | r for o, r in zip(orig_k, rw_k, strict=True)]),
    }
    rows = truth.grade_rows(held.queries) if truth is not None else [None] * len(orig)
    relevant = [
        set(np.flatnonzero(row == 2).tolist()) if row is not None else logged
        for row, logged in zip(rows, held.relevant_logged, strict=True)
    ]
    out["increment"] = m.increment(relevant, orig_k, rw_k)
    ndcg, ndcg0, rec, rec0 = [], [], [], []
    pages: dict[str, list[int]] = {}
    policy = config.policy()  # the pages the serving policy's page vetter grades
    for q, o, r, row, rel in zip(held.queries, orig, rw, rows, relevant, strict=True):
        merged = policy.fuse(o, r)
        pages[normalize_query(q)] = merged[: config.page_size]
        if row is None:
            continue
        graded = row[row > 0]
        ndcg.append(m.ndcg_at_k(row[merged[: config.page_size]], graded, config.page_size))
        ndcg0.append(m.ndcg_at_k(row[o[: config.page_size]], graded, config.page_size))
        rec.append(m.recall_at_k(merged, rel, config.recall_depth))
        rec0.append(m.recall_at_k(o, rel, config.recall_depth))
    out.update(
        ndcg_at_10=_mean(ndcg),
        ndcg_at_10_original=_mean(ndcg0),
        recall_at_100=_mean(rec),
        recall_at_100_original=_mean(rec0),
    )
    return out, pages


@dataclass
class VariantResult:
    metrics: dict[str, float]
    grades: dict[str, list[int]]  # grade source -> grades of the served rewrites
    pages: dict[str, list[int]]  # normalised query -> page with the served rewrite
    pages_unfiltered: dict[str, list[int]]  # ... with every top rewrite
    # ... with every top rewrite but the spelling corrections (None: the model made none)
    pages_uncorrected: dict[str, list[int]] | None
    rows: list[dict[str, Any]]  # every ranked candidate, for rewrites.parquet
    # on human judgments: per subset, served rewrites ("with_serving_policy") and every top
    # rewrite ("model_alone")
    judged: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def evaluate_variant(
    config: EvaluateConfig,
    model_dir: str,
    held: HeldOut,
    retrieval: ProductRetriever,
    truth: GradedTruth | None,
    teacher: Any,
    sft_sets: Any,
    progress: bool = False,
    *,
    spelling: SpellingCheck | None = None,
) -> VariantResult:
    """Rewrite the held-out queries with one model and measure everything but the A/B test."""
    from qrewrite.training.judge import evaluate_tagging

    rewriter = Rewriter.from_dir(model_dir, config.generation())
    raw = rewriter.generate_candidates(held.queries, progress)
    fixes = rewriter.corrections(held.queries, progress)
    # the served one is the first
    ranked = rewriter.rank(held.queries, raw, config.k, graded=1, corrections=fixes)
    top = [r[0].text if r else "" for r in ranked]
    top_idx = [i for i, s in enumerate(top) if s]
    teacher_first: list[int | None] = [None] * len(ranked)  # the teacher's grade of each top
    tg = np.zeros(0, dtype=int)
    if teacher is not None and top_idx:
        tg = teacher.grade(
            pd.DataFrame(
                [(held.queries[i], r.text) for i, row in enumerate(ranked) for r in row],
                columns=["query", "rewrite"],
            ),
            learn=False,
        )["grade"].to_numpy()
        first = np.cumsum([0] + [len(r) for r in ranked])[:-1]
        for i in top_idx:
            teacher_first[i] = int(tg[first[i]])
    policy = config.policy()
    page_gain: list[float | None] = [None] * len(ranked)  # vet "page": what each page gains
    if policy.vet == "page":
        page_gain = policy.page_gains(teacher, retrieval, held.queries, top)
    mask = policy.served_mask(ranked, teacher_first, page_gain)
    served = [t if ok else "" for t, ok in zip(top, mask, strict=True)]
    greedy = [c[0] if c else "" for c in raw]
    res: dict[str, float] = {
        "queries": float(len(held.queries)),
        "served_rate": float(np.mean([bool(s) for s in served])),
        "copy_rate": m.copy_rate(held.queries, greedy),
        # the model's own greedy copies, before decoding past them (continue_copies)
        "greedy_copy_rate": rewriter.stats.greedy_copies / max(1, len(held.queries)),
        # the model's own stutters, before dropping them (drop_repeats)
        "repeat_rate": m.repeat_rate(held.queries, greedy),
        "spelling_fix_rate": rewriter.stats.corrections / max(1, len(held.queries)),
        "empty_rate": m.empty_rate(greedy),
        "distinct_rewrites_per_query": m.distinct_per_query(raw),
        "queries_per_second": rewriter.stats.queries_per_second,
        "batch_latency_ms": 1000 * float(np.mean(rewriter.stats.batches)),
    }
    ret, pages = retrieval_metrics(config, held, served, retrieval, truth)
    res.update(ret)
    _, pages_unfiltered = retrieval_metrics(config, held, top, retrieval, truth)
    pages_uncorrected, uncorrected = None, None
    if rewriter.stats.corrections:
        uncorrected = _without_corrections(rewriter, held.queries, raw, top, fixes or [])
        _, pages_uncorrected = retrieval_metrics(config, held, uncorrected, retrieval, truth)
    served_idx = [i for i, s in enumerate(served) if s]
    grades: dict[str, list[int]] = {"self": [r[0].grade for r in ranked if r]}
    if tg.size:
        res["relevance_rate"] = m.relevance_rate(teacher_first[i] for i in top_idx)
        res["served_relevance_rate"] = m.relevance_rate(teacher_first[i] for i in served_idx)
        res["sampled_relevance_rate"] = m.relevance_rate(tg)
        grades["teacher"] = [int(teacher_first[i]) for i in top_idx]
    truth_first: list[int | None] = [None] * len(ranked)  # the truth grade of each top
    if truth is not None and truth.kind == "synthetic" and top_idx:
        rw_retrieved = retrieval.ranked([top[i] for i in top_idx])
        tgr = truth.rewrite_grades(
            [held.queries[i] for i in top_idx],
            [top[i] for i in top_idx],
            [r[: config.page_size] for r in rw_retrieved],
        )
        known = ~np.isnan(tgr)
        res["relevance_rate_truth"] = m.relevance_rate(tgr[known].astype(int))
        is_served = np.array([bool(served[i]) for i in top_idx])
        res["served_relevance_rate_truth"] = m.relevance_rate(tgr[known & is_served].astype(int))
        grades["truth"] = tgr[known].astype(int).tolist()
        for i, g in zip(top_idx, tgr, strict=True):
            truth_first[i] = None if np.isnan(g) else int(g)
    res.update(
        evaluate_tagging(
            rewriter.model,
            rewriter.tokenizer,
            sft_sets["train"],
            sft_sets["eval"],
            config.tagging_eval_pairs,
            config.seed,
            form=rewriter.tagging_form,
        )
    )
    judged: dict[str, list[dict[str, Any]]] = {}
    if truth is not None and truth.kind == "judged":
        arms = {"with_serving_policy": served, "model_alone": top}
        if uncorrected is not None:
            arms[UNCORRECTED] = uncorrected
        judged = judged_comparisons(config, held, arms, retrieval, truth, spelling)
        # what the spelling corrections add to the model alone on people's grades
        res["ndcg_at_10_uplift_from_spelling"] = (
            _uplift_of_all(judged["model_alone"]) - _uplift_of_all(judged.pop(UNCORRECTED))
            if uncorrected is not None
            else 0.0
        )
        for arm, suffix in (("with_serving_policy", ""), ("model_alone", "_unfiltered")):
            for row in judged[arm]:
                if row["subset"] == "all":
                    for key in ("", "_ci_low", "_ci_high"):
                        res[f"ndcg_at_10_uplift{suffix}{key}"] = row[f"ndcg_at_10_uplift{key}"]
                    res[f"condensed_ndcg_at_10_uplift{suffix}"] = row["condensed_ndcg_at_10_uplift"]
                    res[f"judged_at_10{suffix}"] = row["judged_at_10"]
                if row["subset"] == "misspelled" and suffix:
                    res["ndcg_at_10_uplift_misspelled_unfiltered"] = row["ndcg_at_10_uplift"]
    rows = [
        {
            "query": q,
            "rank": rank,
            "rewrite": r.text,
            "score": r.score,
            "grade": r.grade,
            "p_relevant": r.p_relevant,
            "served": rank == 1 and bool(served[i]),
            "greedy": greedy[i],
            # the model's own spelling correction, first whatever its score (correct_spelling)
            "spelling_fix": rank == 1 and fixes is not None and r.text == fixes[i],
            "teacher_grade": teacher_first[i] if rank == 1 else None,
            "page_gain": page_gain[i] if rank == 1 else None,
            "truth_grade": truth_first[i] if rank == 1 else None,
        }
        for i, (q, row) in enumerate(zip(held.queries, ranked, strict=True))
        for rank, r in enumerate(row, start=1)
    ]
    return VariantResult(res, grades, pages, pages_unfiltered, pages_uncorrected, rows, judged)


def _uplift_of_all(rows: list[dict[str, Any]]) -> float:
    """nDCG@10 uplift over every held-out query of a judged comparison (NaN without one)."""
    return next((r["ndcg_at_10_uplift"] for r in rows if r["subset"] == "all"), float("nan"))


def _without_corrections(
    rewriter: Rewriter,
    queries: Sequence[str],
    raw: list[list[str]],
    top: list[str],
    fixes: Sequence[str],
) -> list[str]:
    """``top`` with each spelling correction replaced by what the model ranks first without
    it: what the model alone serves with ``correct_spelling`` off."""
    fixed = [i for i, f in enumerate(fixes) if f]
    again = rewriter.rank([queries[i] for i in fixed], [raw[i] for i in fixed], 1, grade=False)
    out = list(top)
    for i, row in zip(fixed, again, strict=True):
        out[i] = row[0].text if row else ""
    return out


def judged_comparisons(
    config: EvaluateConfig,
    held: HeldOut,
    arms: dict[str, list[str]],
    retrieval: ProductRetriever,
    truth: GradedTruth,
    spelling: SpellingCheck | None,
) -> dict[str, list[dict[str, Any]]]:
    """Original vs original + rewrite on people's grades, for each arm's rewrites (served,
    every top rewrite: docs/evaluation.md#on-human-judgments)."""
    rows = truth.grade_rows(held.queries)
    judged = truth.judged_rows(held.queries)
    original = retrieval.ranked(held.queries)
    misspelled = [spelling.misspelled(q) if spelling else False for q in held.queries]
    fuse = config.policy().fuse  # the pages the A/B test and the page vetter see
    out = {}
    for arm, texts in arms.items():
        rewritten = retrieval.ranked(texts)
        out[arm] = [
            c.as_dict()
            for c in compare_on_judgments(
                held.queries,
                original,
                [r if t else [] for r, t in zip(rewritten, texts, strict=True)],
                rows,
                misspelled,
                judged=judged,
                fuse=fuse,
                page_size=config.page_size,
                recall_depth=config.recall_depth,
                n_boot=config.bootstrap,
                seed=config.seed,
            )
        ]
    return out


@dataclass
class EvaluationReport:
    """What ``evaluate`` measured; :meth:`to_dict` is ``metrics.json`` (where a NaN is written
    as null). ``metrics`` is the candidate's row of ``variants``."""

    schema_version: int
    qrewrite_version: str
    candidate: str
    # what the model does alone, first; then what the serving policy adds on top of it
    model_alone: dict[str, float]
    with_serving_policy: dict[str, float]
    # when a fallback was named: the candidate it was weighed against and why this one is put
    # forward (:class:`CandidateChoice`); None otherwise
    candidate_choice: dict[str, str] | None
    variants: dict[str, dict[str, float]]  # variant -> METRIC_KEYS
    models: dict[str, str]  # variant -> where it came from
    held_out_queries: int
    overlap_dropped: int
    # share of the held-out searches made with the HEAD_QUERIES most searched held-out queries
    # (synthetic data): UCVR moves with their rewrites, so a model change that touches a few of
    # them swings it by more than its bootstrap interval over users shows
    head_search_share: float | None
    # the most searched held-out query and its share of the searches (synthetic data): the
    # uplifts ``*_without_top_query`` set it aside
    top_query: str | None
    top_query_search_share: float | None
    data_kind: str  # synthetic | judged | unknown
    # per variant and subset, on people's grades (judged data only)
    judged: dict[str, dict[str, list[dict[str, Any]]]]
    config: dict[str, Any]  # ``asdict`` of :class:`EvaluateConfig`
    environment: dict[str, Any]
    metrics: dict[str, float]
    samples: list[dict[str, Any]]  # the candidate's top rewrites of the head queries
    # where the champion was evaluated too (synthetic data): {"metric": "ucvr_uplift",
    # "difference": [point, low, high]}, the candidate's uplift served by the policy minus the
    # champion's with its 95% interval over queries, paired (the gate holds a challenger whose
    # gain the held-out queries do not establish)
    champion_difference: dict[str, Any] | None = None
    # the evaluate MLflow run, once it is logged (after metrics.json is written: not in it)
    mlflow_run_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as a mapping, keys in the order of ``metrics.json`` (without the MLflow
        run id, which the file does not hold)."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "mlflow_run_id"}

    def summary_lines(self, out_dir: str | Path) -> list[str]:
        """What ``evaluate`` says when it is done: the variants, the ablation table, the files."""
        from qrewrite.evaluation.report import ablation_table

        return [
            f"evaluate: {self.held_out_queries:,} held-out queries, variants: "
            + ", ".join(self.variants),
            ablation_table(self.to_dict()),
            f"evaluate: report {out_dir}/report.md (and report.html), metrics "
            f"{out_dir}/metrics.json",
        ]


def evaluate(
    config: EvaluateConfig,
    *,
    data_dir: str | Path,
    datasets_dir: str | Path,
    variants: dict[str, str],
    out_dir: str | Path,
    labels: str | Path | None = None,
    candidate: str | None = None,
    fallback: str | None = None,
    progress: bool = True,
    model_refs: dict[str, str] | None = None,
) -> EvaluationReport:
    """Evaluate each ``variants`` entry (name -> model directory) and the no-rewrite baseline;
    write ``metrics.json``, ``rewrites.parquet``, ``report.md``/``report.html`` and plots.

    ``model_refs`` names where each variant came from when that is not its directory (a registry
    URI pinned to a version); ``metrics.json`` records it, and the gate reads it.

    ``fallback``: the variant ``candidate`` was trained from; with
    ``config.candidate_must_improve`` it is put forward instead when ``candidate`` does not
    improve on it (:func:`choose_candidate`), and the report's figures are its."""
    from qrewrite.evaluation.report import write_report

    config.check()
    if not variants:
        raise ConfigError("evaluate: no model to evaluate; pass --model")
    if candidate is not None and candidate not in variants:
        raise ConfigError(f"evaluate: the candidate {candidate!r} is not one of the variants")
    if fallback is not None and (candidate is None or fallback not in variants):
        raise ConfigError(
            f"evaluate: the fallback {fallback!r} needs a candidate and must be one of the variants"
        )
    if NO_REWRITE in variants:
        raise ConfigError(f"evaluate: {NO_REWRITE!r} is the built-in baseline; rename the variant")
    data_dir, datasets_dir, out = Path(data_dir), Path(datasets_dir), Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    catalog = read_parquet_table(
        data_dir / "catalog.parquet", "catalog", "--data must be a synth or import-judged output"
    ).to_pandas()
    sft_sets = load_training_split(datasets_dir / SFT_DIR, SFT_DIR)
    held = load_held_out(datasets_dir, sft_sets, catalog, config.max_queries, config.seed)
    log.info("evaluate: %d held-out queries", len(held.queries))
    truth = GradedTruth.load(data_dir) if (data_dir / "manifest.json").exists() else None
    retrieval = ProductRetriever(
        catalog, max(config.recall_depth, config.retrieve_k, config.page_size)
    )
    if config.teacher:
        from qrewrite.labeling.teacher import Teacher

        teacher = Teacher.from_data(data_dir, labels)
    else:
        teacher = None

    spelling = (
        SpellingCheck(catalog["title"].astype(str).tolist())
        if truth is not None and truth.kind == "judged"
        else None
    )
    judged: dict[str, dict[str, list[dict[str, Any]]]] = {}
    results: dict[str, dict[str, float]] = {}
    grades: dict[str, dict[str, list[int]]] = {}
    pages: dict[str, dict[str, list[int]]] = {}
    rewrites_rows = []
    none_metrics, pages[NO_REWRITE] = retrieval_metrics(
        config, held, [""] * len(held.queries), retrieval, truth
    )
    results[NO_REWRITE] = {"queries": float(len(held.queries)), **none_metrics}
    for name, path in variants.items():
        t0 = time.perf_counter()
        ev = evaluate_variant(
            config, path, held, retrieval, truth, teacher, sft_sets, progress, spelling=spelling
        )
        results[name], grades[name] = ev.metrics, ev.grades
        if ev.judged:
            judged[name] = ev.judged
        pages[name], pages[f"{name}{UNFILTERED}"] = ev.pages, ev.pages_unfiltered
        if ev.pages_uncorrected is not None:
            pages[f"{name}{UNCORRECTED}"] = ev.pages_uncorrected
        rewrites_rows += [{"variant": name, **row} for row in ev.rows]
        log.info("evaluate: %s done in %.1f s", name, time.perf_counter() - t0)

    ab: ABResult | None = None
    searches_per_query: dict[str, int] = {}
    top: str | None = None  # the most searched held-out query (synthetic data)
    if truth is not None and truth.kind == "synthetic":
        searches = held_out_searches(data_dir, {normalize_query(q) for q in held.queries})
        searches_per_query = searches["query"].value_counts().to_dict()
        assert truth.lookup.intents is not None
        ab = simulate_ab(
            searches,
            pages[NO_REWRITE],
            pages,
            truth.lookup.intents,
            catalog,
            ABSettings(config.ab_replicas, config.page_size, config.bootstrap, config.seed),
        )
        for name, values in ab.arms.items():
            if name.endswith(UNCORRECTED):
                variant = name.removesuffix(UNCORRECTED)
                gain = ab.difference(name, f"{variant}{UNFILTERED}")
                for key, value in zip(("", "_ci_low", "_ci_high"), gain, strict=True):
                    results[variant][f"ucvr_uplift_from_spelling{key}"] = value
            elif name.endswith(UNFILTERED):
                base = results[name.removesuffix(UNFILTERED)]
                for key in values:
                    if key.startswith("ucvr_uplift"):
                        base[key.replace("ucvr_uplift", "ucvr_uplift_unfiltered")] = values[key]
            else:
                results[name].update(values)
        top = top_query(searches_per_query)
        for name in variants if top is not None else []:
            for arm, key in (
                (name, "ucvr_uplift"),
                (f"{name}{UNFILTERED}", "ucvr_uplift_unfiltered"),
            ):
                if arm in ab.arms:
                    rest = ab.uplift_without(arm, {top})
                    for suffix, value in zip(("", "_ci_low", "_ci_high"), rest, strict=True):
                        results[name][f"{key}_without_top_query{suffix}"] = value
    else:
        log.warning(
            "evaluate: %s has no simulator truth; the simulated A/B test is skipped",
            data_dir,
        )

    for res in results.values():
        # how much the serving policy's vetting adds to what the model does alone
        if "ucvr_uplift" in res and "ucvr_uplift_unfiltered" in res:
            res["ucvr_uplift_from_vetting"] = res["ucvr_uplift"] - res["ucvr_uplift_unfiltered"]
            if res.get("spelling_fix_rate") == 0.0:  # corrected nothing: adds nothing
                for key in ("", "_ci_low", "_ci_high"):
                    res[f"ucvr_uplift_from_spelling{key}"] = 0.0
        for key in METRIC_KEYS:
            res.setdefault(key, float("nan"))
    chosen = candidate or next(iter(variants))
    choice = None
    if fallback is not None and candidate is not None and fallback != candidate:
        # how far apart the two are with every rewrite served, paired by query: whether the
        # choice rests on a difference the held-out queries establish
        arms = (f"{fallback}{UNFILTERED}", f"{candidate}{UNFILTERED}")
        difference = (
            ab.difference(*arms) if ab is not None and all(a in ab.arms for a in arms) else None
        )
        choice = (
            choose_candidate(results, preferred=candidate, fallback=fallback, difference=difference)
            if config.candidate_must_improve
            else CandidateChoice(
                candidate,
                fallback,
                candidate,
                "evaluate.candidate_must_improve is off",
                _listed(difference),
            )
        )
        chosen = choice.chosen
        log.info("evaluate: candidate %s (%s)", chosen, choice.reason)
    rewrites_table = pd.DataFrame(rewrites_rows)
    if len(rewrites_table):
        rewrites_table["searches"] = (
            rewrites_table["query"].map(normalize_query).map(searches_per_query).fillna(0)
        ).astype("int64")
    variant_metrics = {k: {key: results[k][key] for key in METRIC_KEYS} for k in results}
    report = EvaluationReport(
        schema_version=1,
        qrewrite_version=__version__,
        candidate=chosen,
        candidate_choice=choice.to_dict() if choice is not None else None,
        model_alone={k: results[chosen][k] for k in MODEL_ALONE_KEYS},
        with_serving_policy={k: results[chosen][k] for k in SERVING_POLICY_KEYS},
        variants=variant_metrics,
        models={NO_REWRITE: "", **variants, **(model_refs or {})},
        held_out_queries=len(held.queries),
        overlap_dropped=held.overlap_dropped,
        head_search_share=head_share(searches_per_query, HEAD_QUERIES),
        top_query=top,
        top_query_search_share=head_share(searches_per_query, 1),
        data_kind=truth.kind if truth is not None else "unknown",
        judged=judged,
        config=asdict(config),
        environment=current_environment().as_dict(),
        metrics=variant_metrics[chosen],
        samples=sample_rewrites(rewrites_table, chosen, SAMPLE_ROWS),
        champion_difference=(
            {"metric": "ucvr_uplift", "difference": _listed(ab.difference(CHAMPION, chosen))}
            if ab is not None and CHAMPION in ab.arms and chosen != CHAMPION
            else None
        ),
    )
    # every file at once when all are written: a failure keeps a previous evaluation whole, and
    # an earlier run's reward curves of other variants go
    owned = [*EVALUATION_OUTPUTS, *(p.name for p in out.glob("rewards_*.png"))]
    with staged_output(out, owned, step="evaluate") as stage:
        rewrites_table.to_parquet(stage / "rewrites.parquet", index=False)
        (stage / "metrics.json").write_text(json.dumps(_finite(report.to_dict()), indent=2) + "\n")
        write_report(report.to_dict(), grades, variants, stage)
    with mlflow_run(config.tracking_uri, config.experiment, "evaluate", config) as run:
        import mlflow

        mlflow.log_metrics(
            {
                f"eval/{variant}/{k}".replace("+", "_plus_"): float(v)
                for variant, row in report.variants.items()
                for k, v in row.items()
                if v is not None and np.isfinite(v)
            }
        )
        for name in ("report.md", "report.html", "metrics.json", "metrics.png", "grades.png"):
            if (out / name).exists():
                mlflow.log_artifact(str(out / name), "evaluation")
        report.mlflow_run_id = run.info.run_id
    return report


def top_query(searches_per_query: dict[str, int]) -> str | None:
    """The most searched query (of two as searched, the first in sort order); None without
    searches.

    >>> top_query({"b": 6, "a": 6, "c": 1})
    'a'
    """
    if not searches_per_query:
        return None
    return min(searches_per_query, key=lambda q: (-searches_per_query[q], q))


def head_share(searches_per_query: dict[str, int], n: int) -> float | None:
    """Share of all searches made with the ``n`` most searched queries; None without searches.

    >>> head_share({"a": 6, "b": 3, "c": 1}, 1)
    0.6
    """
    counts = sorted(searches_per_query.values(), reverse=True)
    total = sum(counts)
    return sum(counts[:n]) / total if total else None


def sample_rewrites(rewrites: pd.DataFrame, variant: str, n: int) -> list[dict[str, Any]]:
    """The candidate's top rewrite of the ``n`` most searched held-out queries (head queries
    decide an A/B test), with both grades and whether it is served: what a person checks first."""
    if rewrites.empty:
        return []
    top = rewrites[(rewrites["variant"] == variant) & (rewrites["rank"] == 1)]
    if "searches" in top:
        top = top.sort_values(["searches", "query"], ascending=[False, True], kind="stable")
    rows = []
    for r in top.head(n).itertuples(index=False):
        rows.append(
            {
                "query": r.query,
                "searches": int(getattr(r, "searches", 0)),
                "rewrite": r.rewrite,
                "teacher_grade": None if pd.isna(r.teacher_grade) else int(r.teacher_grade),
                "truth_grade": None if pd.isna(r.truth_grade) else int(r.truth_grade),
                "served": bool(r.served),
                "spelling_fix": bool(getattr(r, "spelling_fix", False)),
                # vet "page": the teacher's gain of the page served with it (else None)
                "page_gain": None if pd.isna(gain := getattr(r, "page_gain", None)) else gain,
            }
        )
    return rows


def _finite(obj: Any) -> Any:
    """JSON without NaN (null instead), so every reader can parse metrics.json."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite(v) for v in obj]
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj
