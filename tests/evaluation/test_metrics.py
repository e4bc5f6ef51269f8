"""Metric definitions on hand-computed cases (docs/evaluation.md)."""

import math

import numpy as np
import pytest

from qrewrite.evaluation import metrics as m
from qrewrite.search_engine import fuse_rrf, merge_recall


def test_merge_recall_interleaves_original_first_without_duplicates():
    assert merge_recall([1, 2, 3], [2, 9, 8], 10) == [1, 2, 9, 3, 8]
    assert merge_recall([1, 2, 3], [2, 9, 8], 3) == [1, 2, 9]
    assert merge_recall([1, 2], [], 10) == [1, 2]
    assert merge_recall([], [5], 10) == [5]


def test_rrf_lifts_products_both_paths_retrieve():
    # 3 is 3rd in the original and 1st in the rewrite: 1/63 + 1/61 beats 1/61 alone
    assert fuse_rrf([1, 2, 3], [3, 9], 10) == [3, 1, 2, 9]  # ties: original first
    assert fuse_rrf([1, 2, 3], [3, 9], 2) == [3, 1]
    # an empty rewrite leaves the original page as it is
    assert fuse_rrf([4, 5, 6], [], 10) == [4, 5, 6]
    # disjoint lists interleave, original first
    assert fuse_rrf([1, 2], [7, 8], 10) == [1, 7, 2, 8]


def test_a_lighter_rewrite_list_adds_below_the_originals_own():
    # at weight 0.5 the rewrite's first (0.5/61) scores as the original's 62nd (1/122)
    assert fuse_rrf([1, 2], [7, 8], 10, rewrite_weight=0.5) == [1, 2, 7, 8]
    # a product both retrieve still rises: 1/63 + 0.5/61 beats 1/61
    assert fuse_rrf([1, 2, 3], [3, 9], 10, rewrite_weight=0.5) == [3, 1, 2, 9]


def test_relevance_rate_counts_grade_two_only():
    assert m.relevance_rate([2, 1, 0, 2]) == 0.5
    assert math.isnan(m.relevance_rate([]))


def test_hit_rate_is_micro_averaged_over_purchases():
    purchased = [{1, 2}, {3}, set()]
    retrieved = [{1, 7}, {3}, {4}]
    assert m.hit_rate(purchased, retrieved) == pytest.approx(2 / 3)
    assert math.isnan(m.hit_rate([set()], [{1}]))


def test_increment_counts_new_relevant_products_only():
    relevant = [{1, 2, 3}, {4}]
    original = [{1}, {4}]
    rewrite = [{1, 2, 9}, {5}]
    # query 1 gains product 2 (relevant, new); 1 is old and 9 irrelevant; query 2 gains nothing
    assert m.increment(relevant, original, rewrite) == pytest.approx(0.5)


def test_ndcg_matches_a_hand_computed_value():
    # shown grades 1, 2 ; best possible 2, 1
    dcg = (2**1 - 1) / math.log2(2) + (2**2 - 1) / math.log2(3)
    ideal = (2**2 - 1) / math.log2(2) + (2**1 - 1) / math.log2(3)
    assert m.ndcg_at_k([1, 2], [2, 1, 0], 10) == pytest.approx(dcg / ideal)
    assert m.ndcg_at_k([2, 1], [1, 2], 10) == pytest.approx(1.0)
    assert math.isnan(m.ndcg_at_k([0], [0, 0], 10))


def test_recall_at_k_cuts_the_ranking():
    assert m.recall_at_k([5, 1, 2], {1, 2, 3, 4}, 2) == 0.25
    assert math.isnan(m.recall_at_k([1], set(), 10))


def test_copy_empty_and_distinct_rates():
    assert m.copy_rate(["Red Shoes", "a"], ["red  shoes", "b"]) == 0.5
    assert m.copy_rate(["cat grass", "cat grass"], ["grass cat cat", "cat grass seeds"]) == 0.5
    assert m.repeat_rate(["cat grass", "a b", "c"], ["grass cat cat", "a b", "d d"]) == 2 / 3
    assert m.empty_rate(["", " ", "x", "y"]) == 0.5
    assert m.distinct_per_query([["a", "A", "b"], ["", "c"]]) == pytest.approx(1.5)


def test_bootstrap_uplift_point_and_interval():
    control = np.ones(400)
    treatment = np.full(400, 1.2)
    u, lo, hi = m.bootstrap_uplift(control, treatment, n_boot=200, seed=1)
    assert u == pytest.approx(0.2)
    assert lo == pytest.approx(0.2) and hi == pytest.approx(0.2)  # no variance, no width
    rng = np.random.default_rng(0)
    control = rng.poisson(1.0, 2000).astype(float)
    same = control.copy()
    u, lo, hi = m.bootstrap_uplift(control, same, n_boot=200, seed=1)
    assert u == 0 and lo == 0 and hi == 0  # paired: identical arms, identical outcomes
    noisy = control + rng.normal(0.1, 1.0, control.size)
    u, lo, hi = m.bootstrap_uplift(control, noisy, n_boot=300, seed=1)
    assert lo < u < hi
    assert math.isnan(m.bootstrap_uplift(np.zeros(3), np.ones(3))[0])
