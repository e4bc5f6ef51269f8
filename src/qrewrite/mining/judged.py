"""Rewrite candidates from a judged set: what people graded relevant, turned into supervision.

A judged set has few reformulations to mine (its log is replayed from the judgments), but it
says which products answer each query. Two sources come from that:

- ``judged_title``: a query's relevant titles reduced to query-length rewrites
  (:func:`qrewrite.mining.titles.reduce_titles`). Each query word takes the spelling the titles
  use ("runing" -> "running", when a title word is one close spelling away), then the words
  most of those titles share are added, one at a time ("bollard" -> "bollard light"): the
  product type and attributes the catalog names them by.
- ``judged_shared_relevant``: two queries whose relevant products overlap rewrite each other.

Both are candidates like the mined ones: the teacher grades them and build-datasets keeps the
relevant ones with evidence. Only ``judgments.parquet`` (an input) is read, never ``truth/``.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import pandas as pd

from qrewrite.mining.titles import reduce_titles

JUDGED_SOURCES = ("judged_title", "judged_shared_relevant")


def judged_candidates(
    judgments: pd.DataFrame,
    catalog: pd.DataFrame,
    *,
    max_rewrites_per_query: int = 3,
    min_share: float = 0.5,
    max_queries_per_product: int = 50,
) -> pd.DataFrame:
    """Candidates (query, rewrite, source, score, support, shared_purchases, shared_clicks,
    product_id) from ``judgments`` (query, product_id, grade 0-2) over ``catalog``."""
    titles = dict(zip(catalog["product_id"].astype(str), catalog["title"].astype(str), strict=True))
    relevant = judgments[judgments["grade"] == 2]
    relevant = relevant[relevant["product_id"].astype(str).isin(titles)]
    rows = []
    for query, group in relevant.groupby("query", sort=True):
        ts = [titles[str(p)] for p in group["product_id"]]
        for rank, rewrite in enumerate(
            reduce_titles(str(query), ts, max_rewrites=max_rewrites_per_query, min_share=min_share)
        ):
            rows.append((query, rewrite, "judged_title", float(len(ts) - rank), len(ts)))
    by_product: dict[str, list[str]] = defaultdict(list)
    for q, p in zip(relevant["query"], relevant["product_id"].astype(str), strict=True):
        by_product[p].append(str(q))
    shared: Counter = Counter()
    for queries in by_product.values():
        queries = sorted(set(queries))
        if len(queries) > max_queries_per_product:  # a catch-all product links nothing
            continue
        for a in queries:
            for b in queries:
                if a != b:
                    shared[(a, b)] += 1
    rows += [(a, b, "judged_shared_relevant", float(n), n) for (a, b), n in sorted(shared.items())]
    out = pd.DataFrame(rows, columns=["query", "rewrite", "source", "score", "support"])
    out["shared_purchases"] = 0
    out["shared_clicks"] = 0
    out["product_id"] = None
    return out
