"""Offline metrics of rewrites, as small pure functions (definitions in docs/evaluation.md).

Product lists are catalog row indices in rank order; product sets are Python sets of them. Every
function takes plain sequences so a test can check it on a hand-computed case.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from qrewrite.text import is_copy, normalize_query, repeated_words


def relevance_rate(grades: Iterable[int]) -> float:
    """Share of rewrites graded relevant (2); NaN when there are none."""
    g = np.asarray(list(grades), dtype=float)
    return float((g == 2).mean()) if g.size else float("nan")


def hit_rate(purchased: Sequence[set], retrieved: Sequence[set]) -> float:
    """Share of the products bought under the queries that ``retrieved`` holds (micro-average over
    all purchases); NaN when nothing was bought."""
    bought = sum(len(p) for p in purchased)
    hits = sum(len(p & r) for p, r in zip(purchased, retrieved, strict=True))
    return hits / bought if bought else float("nan")


def increment(relevant: Sequence[set], original: Sequence[set], rewrite: Sequence[set]) -> float:
    """Mean number of relevant products the rewrite retrieves that the original query does not."""
    if not relevant:
        return float("nan")
    gains = [
        len((rw - orig) & rel) for rel, orig, rw in zip(relevant, original, rewrite, strict=True)
    ]
    return float(np.mean(gains))


def dcg(grades: Sequence[float], k: int) -> float:
    g = np.asarray(list(grades)[:k], dtype=float)
    return float(((2.0**g - 1.0) / np.log2(np.arange(2, g.size + 2))).sum())


def ndcg_at_k(ranked_grades: Sequence[float], all_grades: Sequence[float], k: int) -> float:
    """nDCG@k of a ranking (grades of the shown products in order) against the best possible
    ranking of every graded product; NaN when nothing is relevant at all."""
    ideal = dcg(sorted(all_grades, reverse=True), k)
    return dcg(ranked_grades, k) / ideal if ideal > 0 else float("nan")


def recall_at_k(ranked: Sequence[int], relevant: set, k: int) -> float:
    """Share of the relevant products in the top ``k``; NaN when there are none."""
    return len(set(list(ranked)[:k]) & relevant) / len(relevant) if relevant else float("nan")


def copy_rate(queries: Sequence[str], rewrites: Sequence[str]) -> float:
    """Share of generations that are the query again: its words and no others, in any order
    or number (to a lexical engine the same query)."""
    pairs = list(zip(queries, rewrites, strict=True))
    if not pairs:
        return float("nan")
    return float(np.mean([is_copy(q, r) for q, r in pairs]))


def repeat_rate(queries: Sequence[str], rewrites: Sequence[str]) -> float:
    """Share of generations that repeat a word the query does not ("cowboy boots boots")."""
    pairs = list(zip(queries, rewrites, strict=True))
    if not pairs:
        return float("nan")
    return float(np.mean([bool(repeated_words(q, r)) for q, r in pairs]))


def empty_rate(rewrites: Sequence[str]) -> float:
    """Share of generations with no words."""
    return float(np.mean([not r.strip() for r in rewrites])) if rewrites else float("nan")


def distinct_per_query(candidates: Sequence[Sequence[str]]) -> float:
    """Mean number of distinct (normalised) candidates per query."""
    if not candidates:
        return float("nan")
    return float(
        np.mean([len({normalize_query(c) for c in row if c.strip()}) for row in candidates])
    )


def bootstrap_uplift(
    control: np.ndarray,
    treatment: np.ndarray,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float, float]:
    """Relative uplift ``sum(treatment) / sum(control) - 1`` and its percentile bootstrap interval,
    resampling units (users) with their paired control and treatment outcomes."""
    control = np.asarray(control, dtype=float)
    treatment = np.asarray(treatment, dtype=float)
    if control.size == 0 or control.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    point = treatment.sum() / control.sum() - 1.0
    rng = np.random.default_rng(seed)
    # resample in blocks so memory stays bounded for many users
    boots = []
    block = max(1, 2_000_000 // control.size)
    for start in range(0, n_boot, block):
        idx = rng.integers(0, control.size, size=(min(block, n_boot - start), control.size))
        c = control[idx].sum(axis=1)
        boots.append(np.where(c > 0, treatment[idx].sum(axis=1) / np.maximum(c, 1e-12) - 1, 0.0))
    b = np.concatenate(boots)
    lo, hi = np.quantile(b, [alpha / 2, 1 - alpha / 2])
    return float(point), float(lo), float(hi)
