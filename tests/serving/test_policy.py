"""The serving policy that evaluation assumes and the export applies."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qrewrite.errors import ConfigError
from qrewrite.serving.policy import ServingPolicy

# (the model's P(relevant), the teacher's grade or None when it did not grade)
CASES = ((0.9, 2), (0.9, 1), (0.2, 2), (0.2, None), (0.5, 0))


@pytest.mark.parametrize(
    ("vet", "expected"),
    [
        ("model", [True, True, False, False, True]),
        ("teacher", [True, False, True, False, False]),
        ("both", [True, False, False, False, False]),
    ],
)
def test_each_vetter_decides_as_documented(vet: str, expected: list[bool]) -> None:
    policy = ServingPolicy(vet=vet, min_p_relevant=0.5)
    assert [policy.serves(p, g) for p, g in CASES] == expected


def test_a_policy_that_cannot_be_applied_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"rewrite.vet='judge': expected one of model"):
        ServingPolicy(vet="judge").check("rewrite")
    with pytest.raises(ConfigError, match=r"rewrite.min_p_relevant=1.5: expected 0..1"):
        ServingPolicy(min_p_relevant=1.5).check("rewrite")
    lighter = ServingPolicy(vet="page", rewrite_weight=0.5)
    assert "(the original's and the rewrite's results, rrf, the rewrite's list weighing 0.5)" in (
        lighter.describe()
    )
    for weight in (0.0, 1.5):
        with pytest.raises(ConfigError, match=rf"evaluate.rewrite_weight={weight}: expected above"):
            ServingPolicy(rewrite_weight=weight).check("evaluate")
    with pytest.raises(ConfigError, match=r"rewrite_weight=0.5: weighs the lists of merge: rrf"):
        ServingPolicy(merge="interleave", rewrite_weight=0.5).check("evaluate")


def test_the_page_vetter_serves_where_the_page_gains() -> None:
    policy = ServingPolicy(vet="page")
    assert policy.needs_teacher
    # the rewrite's own relevance does not decide: the page does
    assert not policy.serves(0.9, 2, page_gain=-0.1)
    assert policy.serves(0.1, 0, page_gain=0.3)
    assert not policy.serves(0.9, 2, page_gain=None)  # not asked: never served
    assert not policy.serves(0.9, 2, page_gain=0.0)  # no gain, no rewrite
    assert not ServingPolicy(vet="page", min_page_gain=0.5).serves(0.9, 2, page_gain=0.3)


class ListRetrieval:
    """Fixed result lists by text, over products p0..p9 (what ProductRetriever answers)."""

    def __init__(self, lists: dict[str, list[int]]) -> None:
        self.lists = lists
        self.ids = np.array([f"p{i}" for i in range(10)])
        self.titles = np.array([f"title {i}" for i in range(10)])

    def ranked(self, texts: list[str]) -> list[list[int]]:
        return [self.lists.get(t, []) for t in texts]


class GradeBook:
    """A teacher that grades (query, product) from a table, and counts what it was asked."""

    def __init__(self, grades: dict[tuple[str, str], int]) -> None:
        self.grades = grades
        self.asked: list[tuple[str, str]] = []

    def grade(self, pairs: pd.DataFrame, learn: bool = True) -> pd.DataFrame:
        keys = list(zip(pairs["query"], pairs["product_id"], strict=True))
        self.asked += keys
        g = np.array([self.grades.get(k, 0) for k in keys])
        return pd.DataFrame(
            {"grade": g, "p_irrelevant": g == 0, "p_partial": g == 1, "p_relevant": g == 2}
        ).astype({"p_irrelevant": float, "p_partial": float, "p_relevant": float})


class Ranked:
    """A top rewrite the model itself would serve."""

    p_relevant = 0.9


def test_page_gains_are_the_teachers_dcg_of_the_served_page_minus_the_originals() -> None:
    retrieval = ListRetrieval(
        {
            "red shoes": [0, 1, 2],  # finds its relevant product third
            "red sneakers": [2, 3],  # ...which the rewrite finds first
            "oak desk": [5, 6],  # two relevant products on the first page
            "office lamp": [7, 8],  # a rewrite that finds neither
        }
    )
    teacher = GradeBook(
        {
            ("red shoes", "p2"): 2,
            ("red shoes", "p3"): 2,
            ("oak desk", "p5"): 2,
            ("oak desk", "p6"): 2,
        }
    )
    policy = ServingPolicy(vet="page", page_size=2, recall_depth=10)
    gains = policy.page_gains(
        teacher,
        retrieval,
        ["red shoes", "oak desk", "wool socks"],
        ["red sneakers", "office lamp", ""],
    )
    # RRF (k = 60): p2 scores 1/63 + 1/61 and leads; then p0 (1/61): page [p2, p0] = 2, the
    # original's [p0, p1] = 0
    assert gains[0] == pytest.approx(2.0)
    # p5 and p7 tie at 1/61 (the original's first), so the page is [p5, p7]: 2 against
    # 2 + 2 / log2(3)
    assert gains[1] == pytest.approx(2.0 - (2.0 + 2.0 / np.log2(3)))
    assert gains[2] is None  # no rewrite, nothing asked
    assert len(teacher.asked) == len(set(teacher.asked))  # each (query, product) graded once
    assert not any(q == "wool socks" for q, _ in teacher.asked)
    mask = policy.served_mask([[Ranked()], [Ranked()], []], [2, 2, None], gains)
    assert mask == [True, False, False]


def test_a_page_that_cannot_be_built_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"evaluate.merge='concat': expected one of rrf"):
        ServingPolicy(merge="concat").check("evaluate")
    with pytest.raises(ConfigError, match=r"page_size=20, recall_depth=10: expected 1 <= page"):
        ServingPolicy(page_size=20, recall_depth=10).check("evaluate")
