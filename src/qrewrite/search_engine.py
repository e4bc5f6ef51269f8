"""The lexical search engine: BM25 over product titles.

One engine serves every place a query is judged by what it retrieves: the marketplace simulator,
later the conversion reward and offline evaluation. Keeping it in one module means a rewrite is
scored against the same retrieval a simulated shopper saw.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import bm25s
import numpy as np
import pandas as pd

from qrewrite.text import tokenize

NO_RESULT = -1

# bm25s pins its logger to DEBUG at import, which would print on every index build.
logging.getLogger("bm25s").setLevel(logging.WARNING)


class LexicalSearchEngine:
    """BM25 (bm25s) over titles tokenised with :func:`qrewrite.text.tokenize`.

    Only documents sharing at least one token with the query are returned, so a query made of
    slang or misspellings can legitimately retrieve nothing, as on a real lexical engine.
    """

    def __init__(self, titles: Sequence[str], k1: float = 1.2, b: float = 0.75) -> None:
        if len(titles) == 0:
            raise ValueError("LexicalSearchEngine needs at least one title to index")
        self.n_docs = len(titles)
        self._bm25 = bm25s.BM25(k1=k1, b=b)
        self._bm25.index([tokenize(t) for t in titles], show_progress=False)
        self._vocab = frozenset(self._bm25.vocab_dict) - {""}

    def search(self, queries: Sequence[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` document indices and scores for each query.

        Returns two ``(len(queries), k)`` arrays; slots without a matching document hold
        ``NO_RESULT`` as index and ``0.0`` as score. The ``k`` best by (score, then lower document
        index), ties at the page's edge included: the same pages on every machine.
        """
        k_eff = min(k, self.n_docs)
        out_idx = np.full((len(queries), k), NO_RESULT, dtype=np.int32)
        out_score = np.zeros((len(queries), k), dtype=np.float32)
        if not queries:
            return out_idx, out_score
        # Tokens the index never saw cannot match; bm25s rejects them, so they are dropped here.
        known = [[t for t in tokenize(q) if t in self._vocab] for q in queries]
        rows = np.array([i for i, toks in enumerate(known) if toks], dtype=np.int64)
        if rows.size == 0:
            return out_idx, out_score
        # one more than asked for: where the (k+1)-th score equals the k-th, a tie crosses the
        # page's edge, and which of the tied documents bm25s keeps depends on the CPU's sort
        # kernels (AVX-512 and AVX2 machines keep different ones)
        k_probe = min(k_eff + 1, self.n_docs)
        docs, scores = self._bm25.retrieve(
            [known[i] for i in rows], k=k_probe, show_progress=False, n_threads=0
        )
        docs, scores = np.asarray(docs), np.asarray(scores, dtype=np.float32)
        order = np.lexsort((docs, -scores), axis=1)
        docs = np.take_along_axis(docs, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        if k_probe > k_eff:
            tied = (scores[:, k_eff - 1] == scores[:, k_eff]) & (scores[:, k_eff] > 0)
            for r in np.flatnonzero(tied):
                docs[r, :k_eff], scores[r, :k_eff] = self._top_k(known[rows[r]], k_eff)
            docs, scores = docs[:, :k_eff], scores[:, :k_eff]
        matched = scores > 0
        out_idx[rows, :k_eff] = np.where(matched, docs, NO_RESULT)
        out_score[rows, :k_eff] = np.where(matched, scores, 0.0)
        return out_idx, out_score

    def _top_k(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` best documents by (-score, document index) from every document's score:
        the same documents on every machine, ties at the edge included."""
        every = np.asarray(self._bm25.get_scores(tokens), dtype=np.float32)
        edge = np.partition(every, self.n_docs - k)[self.n_docs - k]  # the k-th best score
        above = np.flatnonzero(every > edge)
        tied = np.flatnonzero(every == edge)[: k - len(above)]
        chosen = np.concatenate([above, tied])
        chosen = chosen[np.lexsort((chosen, -every[chosen]))]
        return chosen, every[chosen]

    def scores(self, query: str) -> np.ndarray:
        """The BM25 score of every document for ``query`` (zeros when no token matches)."""
        known = [t for t in tokenize(query) if t in self._vocab]
        if not known:
            return np.zeros(self.n_docs, dtype=np.float32)
        return np.asarray(self._bm25.get_scores(known), dtype=np.float32)


class ProductRetriever:
    """The engine's top-``k`` results for a text, cached per text: as catalog row indices in rank
    order (:meth:`ranked`, what pages and nDCG need) or as product-id sets (:meth:`retrieve`,
    what the conversion rewards, increment and hit rate compare)."""

    def __init__(self, catalog: pd.DataFrame, k: int) -> None:
        self.ids = catalog["product_id"].to_numpy()
        self.titles = catalog["title"].astype(str).to_numpy()
        self.engine = LexicalSearchEngine(catalog["title"].tolist())
        self.k = k
        self._ranked: dict[str, list[int]] = {"": []}
        self._cache: dict[str, frozenset[str]] = {}

    def ranked(self, texts: Sequence[str]) -> list[list[int]]:
        todo = list(dict.fromkeys(t for t in texts if t not in self._ranked))
        if todo:
            idx, _ = self.engine.search(todo, self.k)
            for text, row in zip(todo, idx, strict=True):
                self._ranked[text] = row[row != NO_RESULT].tolist()
        return [self._ranked[t] for t in texts]

    def retrieve(self, texts: Sequence[str]) -> list[frozenset[str]]:
        todo = [t for t in dict.fromkeys(texts) if t not in self._cache]
        for text, row in zip(todo, self.ranked(todo), strict=True):
            self._cache[text] = frozenset(self.ids[row])
        return [self._cache[t] for t in texts]


def merge_recall(original: Sequence[int], rewrite: Sequence[int], depth: int) -> list[int]:
    """Interleave two result lists (original first, then rewrite, alternately), duplicates
    dropped, cut at ``depth``."""
    merged: list[int] = []
    seen: set[int] = set()
    for i in range(max(len(original), len(rewrite))):
        for lst in (original, rewrite):
            if i < len(lst) and lst[i] not in seen:
                seen.add(lst[i])
                merged.append(lst[i])
    return merged[:depth]


def fuse_rrf(
    original: Sequence[int],
    rewrite: Sequence[int],
    depth: int,
    k: int = 60,
    *,
    rewrite_weight: float = 1.0,
) -> list[int]:
    """Reciprocal rank fusion of the original's and the rewrite's result lists: each product
    scores ``sum weight / (k + rank)`` over the lists that hold it (the original's weight 1, the
    rewrite's ``rewrite_weight``), so products both paths retrieve rise to the top; ties keep the
    original's order first. Cut at ``depth``. At ``rewrite_weight`` 0.5 and k 60 a product only
    the rewrite retrieves, at rank r, scores as the original's product at rank 60 + 2r: the
    rewrite lifts what both find and adds its own below the original's first page.

    A relevant rewrite agrees with the original on relevant products and lifts them; an
    irrelevant one only pushes the original's results down, which is how it costs conversions.
    """
    score: dict[int, float] = {}
    first_seen: dict[int, int] = {}
    for lst, weight in ((original, 1.0), (rewrite, rewrite_weight)):
        for rank, doc in enumerate(lst, start=1):
            score[doc] = score.get(doc, 0.0) + weight / (k + rank)
            first_seen.setdefault(doc, len(first_seen))
    return sorted(score, key=lambda d: (-score[d], first_seen[d]))[:depth]


# how the original's and the rewrite's results share the page (`merge:` of evaluation and the
# serving policy)
MERGES = {"rrf": fuse_rrf, "interleave": merge_recall}
