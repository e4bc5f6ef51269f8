"""Rewrite candidates from a judged set: what people graded relevant, turned into supervision.

A judged set has few reformulations to mine (its log is replayed from the judgments), but it
says which products answer each query. Two sources come from that:

- ``judged_title``: a query's relevant titles reduced to query-length rewrites. Each query word
  takes the spelling the titles use ("runing" -> "running", when a title word is one close
  spelling away), then the words most of those titles share are added, one at a time
  ("bollard" -> "bollard light"): the product type and attributes the catalog names them by.
- ``judged_shared_relevant``: two queries whose relevant products overlap rewrite each other.

Both are candidates like the mined ones: the teacher grades them and build-datasets keeps the
relevant ones with evidence. Only ``judgments.parquet`` (an input) is read, never ``truth/``.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict

import pandas as pd

from qrewrite.text import (
    JOINING_WORDS,
    closeness,
    normalize_query,
    one_edit_apart,
    tokenize,
    trigrams,
)

JUDGED_SOURCES = ("judged_title", "judged_shared_relevant")
_WORD = re.compile(r"[0-9a-z]+")
# never the product or an attribute: joining words, and units and pack words without their number
STOPWORDS = JOINING_WORDS | frozenset(
    ("w", "x", "your", "our", "new", "set", "pack", "pc", "pcs", "inch", "ft", "oz", "lb")
)
CLOSE_SPELLING = 0.5  # trigram Jaccard at which a title word is the query word's spelling


def words(text: str) -> list[str]:
    return _WORD.findall(normalize_query(text).replace("'", ""))


def reduce_titles(
    query: str, titles: list[str], *, max_rewrites: int = 3, min_share: float = 0.5
) -> list[str]:
    """Query-length rewrites of ``query`` from the titles people graded relevant for it: its
    words in the titles' spelling, then that plus the one or two words at least ``min_share``
    of the titles (and at least two) share. Rewrites equal to the query are left out.

    >>> reduce_titles("runing shoe", ["Trail Running Shoe", "Trail Running Shoe Men", "Road Shoe"])
    ['running shoe', 'running shoe trail']
    """
    title_words = [list(dict.fromkeys(words(t))) for t in titles]
    vocab = sorted({w for ws in title_words for w in ws})
    grams = [trigrams(w) for w in vocab]
    stems = set(tokenize(" ".join(vocab)))
    counts = Counter(w for ws in title_words for w in ws)
    fixed = []
    for w in words(query):
        if w in vocab or set(tokenize(w)) <= stems or not w.isalpha() or len(w) < 3:
            fixed.append(w)
            continue
        # the titles' most frequent word one edit away, else the closest by trigrams
        near = [v for v in vocab if len(v) >= 4 and one_edit_apart(w, v)]
        best = max(range(len(vocab)), key=lambda i: len(trigrams(w) & grams[i]), default=None)
        if near:
            fixed.append(max(near, key=lambda v: (counts[v], v)))
        elif best is not None and closeness(w, [grams[best]]) >= CLOSE_SPELLING:
            fixed.append(vocab[best])
        else:
            fixed.append(w)
    base = list(dict.fromkeys(fixed))
    base_stems = set(tokenize(" ".join(base)))  # "bag" adds nothing to "sleeping bags"
    first_at = {w: min(ws.index(w) for ws in title_words if w in ws) for w in counts}
    need = max(2, min_share * len(titles))
    shared = [
        w
        for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], first_at[kv[0]], kv[0]))
        if n >= need
        and not set(tokenize(w)) & base_stems
        and w not in STOPWORDS
        and w.isalpha()
        and len(w) > 2
    ]
    out: list[str] = []
    for extra in range(0, 3):
        if extra > len(shared):
            break
        text = " ".join(base + shared[:extra])
        # the same words for the engine (plural, case) are no rewrite
        if tokenize(text) != tokenize(query) and text not in out:
            out.append(text)
    return out[:max_rewrites]


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
