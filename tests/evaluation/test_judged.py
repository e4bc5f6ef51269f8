"""The evaluation on human judgments: ranx's metrics and fusion against the hand-computed ones,
the subsets, and the spelling check."""

import numpy as np
import pytest

from qrewrite.evaluation import metrics as m
from qrewrite.evaluation.judged import SpellingCheck, compare_on_judgments
from qrewrite.search_engine import fuse_rrf


def test_spelling_check_finds_one_edit_typos() -> None:
    check = SpellingCheck(["Trail Running Shoes", "Wireless Headphones", "Red Kettle"])
    assert check.misspelled("runing shoes")  # a deletion
    assert check.misspelled("wirelsss headphones")  # a substitution
    assert check.misspelled("wierless earbuds")  # a transposition... of an indexed word
    assert not check.misspelled("running shoes")
    assert not check.misspelled("red kettle")
    assert not check.misspelled("zzzz")  # unknown but close to nothing


@pytest.fixture(scope="module")
def case() -> dict:
    rng = np.random.default_rng(0)
    n_docs, n_q = 60, 40
    grades = [rng.choice([0, 0, 0, 1, 2], size=n_docs).astype(np.int8) for _ in range(n_q)]
    original = [rng.permutation(n_docs)[:30].tolist() for _ in range(n_q)]
    # rewrites that find the relevant products first, for half of the queries
    rewrite = [
        (np.argsort(-g, kind="stable")[:20].tolist() if i % 2 == 0 else [])
        for i, g in enumerate(grades)
    ]
    return {"grades": grades, "original": original, "rewrite": rewrite}


def test_ranx_agrees_with_the_hand_written_metrics(case) -> None:
    grades, original, rewrite = case["grades"], case["original"], case["rewrite"]
    misspelled = [i % 4 == 0 for i in range(len(grades))]
    rows = compare_on_judgments(
        [f"q{i}" for i in range(len(grades))], original, rewrite, grades, misspelled
    )
    by = {r.subset: r for r in rows}
    fused = [fuse_rrf(o, r, 100) for o, r in zip(original, rewrite, strict=True)]
    hand0 = [m.ndcg_at_k(g[o[:10]], g[g > 0], 10) for g, o in zip(grades, original, strict=True)]
    hand1 = [m.ndcg_at_k(g[f[:10]], g[g > 0], 10) for g, f in zip(grades, fused, strict=True)]
    assert by["all"].ndcg_at_10_original == pytest.approx(np.mean(hand0), abs=1e-6)
    assert by["all"].ndcg_at_10 == pytest.approx(np.mean(hand1), abs=1e-6)
    rel = [set(np.flatnonzero(g > 0).tolist()) for g in grades]
    assert by["all"].recall_at_100 == pytest.approx(
        np.mean([m.recall_at_k(f, r, 100) for f, r in zip(fused, rel, strict=True)]), abs=1e-6
    )
    assert by["all"].queries == 40 and by["all"].rewritten == 20
    assert by["all"].ndcg_at_10_uplift > 0.2
    assert 0 < by["all"].ndcg_at_10_uplift_ci_low < by["all"].ndcg_at_10_uplift
    assert by["all"].p_value < 0.01
    assert by["misspelled"].queries == 10 and by["misspelled"].rewritten == 10


@pytest.mark.parametrize(
    ("merge", "rrf_k", "rewrite_weight"),
    [("interleave", 60, 1.0), ("rrf", 1, 1.0), ("rrf", 60, 0.3)],
)
def test_pages_are_fused_as_the_serving_policy_fuses(
    case, merge: str, rrf_k: int, rewrite_weight: float
) -> None:
    from qrewrite.serving.policy import ServingPolicy

    grades, original, rewrite = case["grades"], case["original"], case["rewrite"]
    policy = ServingPolicy(
        merge=merge, rrf_k=rrf_k, rewrite_weight=rewrite_weight, recall_depth=100
    )
    (row,) = [
        r
        for r in compare_on_judgments(
            [f"q{i}" for i in range(len(grades))],
            original,
            rewrite,
            grades,
            [False] * len(grades),
            fuse=policy.fuse,
        )
        if r.subset == "all"
    ]
    pages = [policy.fuse(o, r) for o, r in zip(original, rewrite, strict=True)]
    hand = [m.ndcg_at_k(g[p[:10]], g[g > 0], 10) for g, p in zip(grades, pages, strict=True)]
    assert row.ndcg_at_10 == pytest.approx(np.mean(hand), abs=1e-6)
    # and not the default's pages: the test can tell the fusions apart
    rrf60 = [fuse_rrf(o, r, 100) for o, r in zip(original, rewrite, strict=True)]
    default = [m.ndcg_at_k(g[p[:10]], g[g > 0], 10) for g, p in zip(grades, rrf60, strict=True)]
    assert np.mean(hand) != pytest.approx(np.mean(default), abs=1e-3)


def test_no_rewrite_changes_nothing_and_unjudged_queries_are_left_out(case) -> None:
    grades = [*case["grades"], None, np.zeros(60, dtype=np.int8)]
    original = [*case["original"], [1, 2], [1, 2]]
    rows = compare_on_judgments(
        [str(i) for i in range(len(grades))],
        original,
        [[] for _ in grades],
        grades,
        [False] * len(grades),
    )
    (row,) = [r for r in rows if r.subset == "all"]
    assert row.queries == 40 and row.rewritten == 0
    assert row.ndcg_at_10 == pytest.approx(row.ndcg_at_10_original)
    assert row.ndcg_at_10_uplift == pytest.approx(0.0) and np.isnan(row.p_value)
    assert {r.subset for r in rows} <= {"all", "original_finds_nothing_relevant"}


def test_fuse_rrf_scores_as_ranx_does(case) -> None:
    from ranx import Run, fuse

    original, rewrite = case["original"][0], case["rewrite"][0]

    def run(lst):
        return Run({"q": {f"d{d}": 1.0 / r for r, d in enumerate(lst, 1)}})

    theirs = fuse([run(original), run(rewrite)], method="rrf")["q"]
    ours = fuse_rrf(original, rewrite, 1000)
    assert {f"d{d}" for d in ours} == set(theirs)
    scores = [theirs[f"d{d}"] for d in ours]
    assert scores == sorted(scores, reverse=True)  # the same order up to ties


def test_weighted_fuse_rrf_scores_as_ranxs_weighted_sum_of_reciprocal_ranks(case) -> None:
    from ranx import Run, fuse

    original, rewrite = case["original"][0], case["rewrite"][0]

    def reciprocal_ranks(lst):
        return Run({"q": {f"d{d}": 1.0 / (60 + r) for r, d in enumerate(lst, 1)}})

    theirs = fuse(
        [reciprocal_ranks(original), reciprocal_ranks(rewrite)],
        norm=None,
        method="wsum",
        params={"weights": [1.0, 0.4]},
    )["q"]
    ours = fuse_rrf(original, rewrite, 1000, rewrite_weight=0.4)
    assert {f"d{d}" for d in ours} == set(theirs)
    scores = [theirs[f"d{d}"] for d in ours]
    assert scores == sorted(scores, reverse=True)
    assert ours != fuse_rrf(original, rewrite, 1000)  # the weight moves the page


def test_condensed_ndcg_leaves_unjudged_products_out(case) -> None:
    n_docs = len(case["grades"][0])
    original = case["original"]
    # people judged what the original found; the rewrites find only products nobody judged
    judged = [np.isin(np.arange(n_docs), o) for o in original]
    grades = [
        np.where(j, g, 0).astype(np.int8) for j, g in zip(judged, case["grades"], strict=True)
    ]
    rewrite = [np.flatnonzero(~j)[:20].tolist() for j in judged]
    queries = [f"q{i}" for i in range(len(grades))]
    by = {
        r.subset: r
        for r in compare_on_judgments(
            queries, original, rewrite, grades, [False] * len(grades), judged=judged
        )
    }
    row = by["all"]
    # counted irrelevant, the unjudged products push the judged ones down the page ...
    assert row.ndcg_at_10_uplift < -0.3 and row.ndcg_at_10_uplift_ci_high < 0
    # ... left out, the fused page condenses to the original's
    assert row.condensed_ndcg_at_10 == pytest.approx(row.condensed_ndcg_at_10_original)
    assert row.condensed_ndcg_at_10_uplift == pytest.approx(0.0)
    assert row.condensed_ndcg_at_10_original == pytest.approx(row.ndcg_at_10_original)
    fused = [fuse_rrf(o, r, 100) for o, r in zip(original, rewrite, strict=True)]
    assert row.judged_at_10_original == 1.0
    assert row.judged_at_10 == pytest.approx(
        np.mean([j[f[:10]].mean() for j, f in zip(judged, fused, strict=True)])
    )
    assert 0.3 < row.judged_at_10 < 0.7


def test_condensed_ndcg_matches_a_hand_computed_one(case) -> None:
    grades, original, rewrite = case["grades"], case["original"], case["rewrite"]
    rng = np.random.default_rng(1)
    judged = [rng.random(len(g)) < 0.6 for g in grades]
    for j, g in zip(judged, grades, strict=True):
        j[g > 0] = True  # every graded-relevant product was judged
    queries = [f"q{i}" for i in range(len(grades))]
    (row,) = [
        r
        for r in compare_on_judgments(
            queries, original, rewrite, grades, [False] * len(grades), judged=judged
        )
        if r.subset == "all"
    ]
    fused = [fuse_rrf(o, r, 100) for o, r in zip(original, rewrite, strict=True)]

    def condensed(lists):
        return np.mean(
            [
                m.ndcg_at_k(g[[d for d in lst if j[d]][:10]], g[g > 0], 10)
                for g, j, lst in zip(grades, judged, lists, strict=True)
            ]
        )

    assert row.condensed_ndcg_at_10_original == pytest.approx(condensed(original), abs=1e-6)
    assert row.condensed_ndcg_at_10 == pytest.approx(condensed(fused), abs=1e-6)
    # without a judged mask every product has a grade: condensed is plain nDCG
    (plain,) = [
        r
        for r in compare_on_judgments(queries, original, rewrite, grades, [False] * len(grades))
        if r.subset == "all"
    ]
    assert plain.condensed_ndcg_at_10 == pytest.approx(plain.ndcg_at_10)
    assert plain.judged_at_10 == 1.0
