"""Do the rewrites improve search on human judgments? For held-out judged queries: the original
query's BM25 results against the original fused with the served rewrite's as the serving policy
fuses them (reciprocal rank on every shipped preset),
scored by nDCG@10 and recall@100 against people's grades (ranx: the metrics and the paired
test), overall and on the queries rewriting exists for: misspelled ones, and those whose
original finds nothing relevant on its first page. Bootstrap intervals resample queries.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np

from qrewrite.evaluation.metrics import bootstrap_uplift
from qrewrite.search_engine import fuse_rrf
from qrewrite.text import deletions, tokenize

SUBSETS = ("all", "misspelled", "original_finds_nothing_relevant")


@dataclass
class JudgedComparison:
    """One subset of held-out judged queries: original vs original + rewrite (RRF)."""

    subset: str
    queries: int
    rewritten: int  # queries with a served rewrite
    ndcg_at_10_original: float
    ndcg_at_10: float
    ndcg_at_10_uplift: float  # relative: mean fused / mean original - 1
    ndcg_at_10_uplift_ci_low: float
    ndcg_at_10_uplift_ci_high: float
    p_value: float  # paired Student t-test over queries (ranx.compare)
    recall_at_100_original: float
    recall_at_100: float
    # share of the first page's products people judged for the query: the original's page
    # is what the judging pool came from, the fused page's share says how much of it the
    # judgments can see
    judged_at_10_original: float
    judged_at_10: float
    # nDCG@10 of the pages with unjudged products removed (condensed lists): where nDCG@10
    # counts every unjudged product irrelevant, this leaves them out; the two bracket what the
    # unjudged products do to the page
    condensed_ndcg_at_10_original: float
    condensed_ndcg_at_10: float
    condensed_ndcg_at_10_uplift: float
    condensed_ndcg_at_10_uplift_ci_low: float
    condensed_ndcg_at_10_uplift_ci_high: float

    def as_dict(self) -> dict:
        return asdict(self)


class SpellingCheck:
    """A query is misspelled when one of its words is not in the catalog's vocabulary but is one
    edit (insertion, deletion, substitution, transposition) from a catalog word of 4+ letters."""

    def __init__(self, titles: Sequence[str]) -> None:
        self.vocabulary = {w for t in titles for w in tokenize(t)}
        self._index: set[str] = set()
        for w in self.vocabulary:
            if len(w) >= 4 and w.isalpha():
                self._index.add(w)
                self._index |= deletions(w)

    def misspelled(self, query: str) -> bool:
        for w in tokenize(query):
            if w in self.vocabulary or len(w) < 3 or not w.isalpha():
                continue
            if w in self._index or deletions(w) & self._index:
                return True
        return False


def compare_on_judgments(
    queries: Sequence[str],
    original: Sequence[Sequence[int]],
    rewrite: Sequence[Sequence[int]],
    grade_rows: Sequence[np.ndarray | None],
    misspelled: Sequence[bool],
    *,
    judged: Sequence[np.ndarray | None] | None = None,
    fuse: Callable[[Sequence[int], Sequence[int]], list[int]] | None = None,
    page_size: int = 10,
    recall_depth: int = 100,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[JudgedComparison]:
    """Compare ranked catalog rows of the original and (served) rewrite per query; queries with
    no judged relevant product are left out (nDCG is undefined there); an empty rewrite list
    means the query is not rewritten (its fused page is the original's). ``judged`` marks, per
    query, the catalog products people judged for it (None: every product has a grade).
    ``fuse`` makes the page a shopper sees from the two lists (:meth:`ServingPolicy.fuse`, so
    that people grade the pages the A/B test and the page vetter see); by default reciprocal
    rank fusion (k=60) cut at ``recall_depth``."""
    from ranx import Qrels, Run, compare

    keep = [
        i
        for i, row in enumerate(grade_rows)
        if row is not None and (row > 0).any() and len(original[i])
    ]
    if not keep:
        return []
    qrels = Qrels(
        {
            f"q{i}": {f"d{d}": int(grade_rows[i][d]) for d in np.flatnonzero(grade_rows[i] > 0)}
            for i in keep
        }
    )

    def run(lists: dict[int, Sequence[int]], name: str) -> Run:
        return Run(
            {f"q{i}": {f"d{d}": 1.0 / r for r, d in enumerate(lst, 1)} for i, lst in lists.items()},
            name=name,
        )

    orig = run({i: original[i] for i in keep}, "original")
    # The same fusion as the pages shoppers see in the A/B test: ranx's RRF gives the same
    # scores (tested) but leaves ties to dict order, where fuse_rrf keeps the original's first.
    fuse = fuse or partial(fuse_rrf, depth=recall_depth)
    fused_lists = {i: fuse(original[i], rewrite[i]) for i in keep}
    fused = run(fused_lists, "fused")
    metrics = [f"ndcg_burges@{page_size}", f"recall@{recall_depth}"]
    ndcg0, rec0 = _per_query(qrels, orig, metrics, keep)
    ndcg1, rec1 = _per_query(qrels, fused, metrics, keep)
    # Judged pools come from the engine's results for the original query: a rewrite's page
    # holds products nobody judged, which nDCG counts as irrelevant. The condensed lists
    # (unjudged products removed, as trec_eval -J and Sakai 2007) give the other bound.
    seen = list(judged) if judged is not None else [None] * len(grade_rows)

    def condensed(lists: dict[int, Sequence[int]], name: str) -> Run:
        kept = {i: [d for d in lst if seen[i] is None or seen[i][d]] for i, lst in lists.items()}
        return run({i: lst for i, lst in kept.items() if lst}, name)

    def judged_share(lists: dict[int, Sequence[int]]) -> np.ndarray:
        return np.array(
            [
                float(np.mean([seen[i] is None or bool(seen[i][d]) for d in lists[i][:page_size]]))
                if len(lists[i])
                else 1.0
                for i in keep
            ]
        )

    original_lists = {i: original[i] for i in keep}
    (cond0,) = _per_query(qrels, condensed(original_lists, "original"), metrics[:1], keep)
    (cond1,) = _per_query(qrels, condensed(fused_lists, "fused"), metrics[:1], keep)
    judged0 = judged_share(original_lists)
    judged1 = judged_share(fused_lists)

    rewritten = np.array([len(rewrite[i]) > 0 for i in keep])
    finds_nothing = np.array(
        [not (grade_rows[i][list(original[i][:page_size])] == 2).any() for i in keep]
    )
    masks = {
        "all": np.ones(len(keep), dtype=bool),
        "misspelled": np.array([bool(misspelled[i]) for i in keep]),
        "original_finds_nothing_relevant": finds_nothing,
    }
    out = []
    for subset in SUBSETS:
        m = masks[subset]
        if not m.any():
            continue
        up, lo, hi = bootstrap_uplift(ndcg0[m], ndcg1[m], n_boot=n_boot, seed=seed)
        c_up, c_lo, c_hi = bootstrap_uplift(cond0[m], cond1[m], n_boot=n_boot, seed=seed)
        p_value = float("nan")
        if m.sum() > 1 and not np.allclose(ndcg0[m], ndcg1[m]):
            ids = [f"q{keep[j]}" for j in np.flatnonzero(m)]
            sub_q = Qrels({q: qrels[q] for q in ids})
            report = compare(
                sub_q,
                [
                    Run({q: orig[q] for q in ids}, name="original"),
                    Run({q: fused[q] for q in ids}, name="fused"),
                ],
                metrics=[metrics[0]],
                stat_test="student",
                make_comparable=True,
            )
            p_value = float(report.to_dict()["original"]["comparisons"]["fused"][metrics[0]])
        out.append(
            JudgedComparison(
                subset=subset,
                queries=int(m.sum()),
                rewritten=int((m & rewritten).sum()),
                ndcg_at_10_original=float(ndcg0[m].mean()),
                ndcg_at_10=float(ndcg1[m].mean()),
                ndcg_at_10_uplift=up,
                ndcg_at_10_uplift_ci_low=lo,
                ndcg_at_10_uplift_ci_high=hi,
                p_value=p_value,
                recall_at_100_original=float(rec0[m].mean()),
                recall_at_100=float(rec1[m].mean()),
                judged_at_10_original=float(judged0[m].mean()),
                judged_at_10=float(judged1[m].mean()),
                condensed_ndcg_at_10_original=float(cond0[m].mean()),
                condensed_ndcg_at_10=float(cond1[m].mean()),
                condensed_ndcg_at_10_uplift=c_up,
                condensed_ndcg_at_10_uplift_ci_low=c_lo,
                condensed_ndcg_at_10_uplift_ci_high=c_hi,
            )
        )
    return out


def _per_query(qrels: Any, run: Any, metrics: list[str], keep: Sequence[int]) -> list[np.ndarray]:
    """Each metric per query of ``keep`` (in that order), 0 for a query ``run`` has no results
    for."""
    from ranx import Qrels, evaluate

    out = [np.zeros(len(keep)) for _ in metrics]
    ids = list(run.keys())  # ranx's query order, which its per-query arrays follow
    if not ids:
        return out
    per = evaluate(
        Qrels({q: qrels[q] for q in ids}), run, metrics, return_mean=False, make_comparable=True
    )
    pos = {f"q{i}": j for j, i in enumerate(keep)}
    where = np.array([pos[q] for q in ids])
    for values, metric in zip(out, metrics, strict=True):
        values[where] = per[metric] if isinstance(per, dict) else per
    return out
