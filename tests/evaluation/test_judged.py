"""The evaluation on human judgments: ranx's metrics and fusion against the hand-computed ones,
the subsets, and the spelling check."""

import numpy as np
import pytest

from qrewrite.evaluation import metrics as m
from qrewrite.evaluation.judged import SpellingCheck, compare_on_judgments


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
    fused = [m.fuse_rrf(o, r, 100) for o, r in zip(original, rewrite, strict=True)]
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
    ours = m.fuse_rrf(original, rewrite, 1000)
    assert {f"d{d}" for d in ours} == set(theirs)
    scores = [theirs[f"d{d}"] for d in ours]
    assert scores == sorted(scores, reverse=True)  # the same order up to ties
