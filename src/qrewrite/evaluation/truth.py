"""Graded truth for evaluation: the grade of every catalog product for each held-out query.

Synthetic data grades a product under the query's intent (:mod:`qrewrite.market.truth`); imported
judged data looks the pair up in its judgments (unjudged products count as irrelevant, as TREC-style
evaluation does). Only evaluation and simulation read this; training never does.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from qrewrite.labeling.evaluate import TruthLookup
from qrewrite.market.truth import grade_pairs, grade_rewrite_intents
from qrewrite.text import normalize_query


class GradedTruth:
    """Grade matrices over the catalog for queries, and the truth grade of a (query, rewrite)."""

    def __init__(self, lookup: TruthLookup) -> None:
        self.lookup = lookup
        self.kind = lookup.kind
        self.catalog = lookup.catalog
        self._rows: dict[str, np.ndarray | None] = {}

    @classmethod
    def load(cls, data_dir: str | Path) -> GradedTruth:
        return cls(TruthLookup.load(data_dir))

    def intent_of(self, queries: Sequence[str]) -> np.ndarray:
        """Intent id per query (-1 where unknown); synthetic data only."""
        if self.lookup.query_intent is None:
            return np.full(len(queries), -1, dtype=np.int64)
        norm = [normalize_query(q) for q in queries]
        ids = self.lookup.query_intent.reindex(norm).to_numpy(dtype=float)
        return np.where(np.isnan(ids), -1, ids).astype(np.int64)

    def grade_rows(self, queries: Sequence[str]) -> list[np.ndarray | None]:
        """For each query, the grade (int8) of every catalog product; None without truth."""
        todo = [
            q for q in dict.fromkeys(normalize_query(q) for q in queries) if q not in self._rows
        ]
        if todo and self.kind == "synthetic":
            assert self.lookup.intents is not None
            intents = self.intent_of(todo)
            n = len(self.catalog)
            known = [(q, i) for q, i in zip(todo, intents, strict=True) if i >= 0]
            for q, i in zip(todo, intents, strict=True):
                if i < 0:
                    self._rows[q] = None
            for start in range(0, len(known), 100):  # bounded memory on big catalogs
                chunk = known[start : start + 100]
                it = np.repeat([i for _, i in chunk], n)
                pr = np.tile(np.arange(n), len(chunk))
                grades = grade_pairs(self.lookup.intents, self.catalog, it, pr).reshape(-1, n)
                for (q, _), row in zip(chunk, grades, strict=True):
                    self._rows[q] = row
        elif todo:
            assert self.lookup.judgments is not None
            index = pd.Series(np.arange(len(self.catalog)), index=self.catalog["product_id"])
            judged = self.lookup.judgments.reset_index()
            judged = judged[judged["query"].isin(todo)]
            judged = judged.assign(idx=index.reindex(judged["product_id"]).to_numpy())
            judged = judged.dropna(subset=["idx"])
            for q in todo:
                self._rows[q] = None
            for q, group in judged.groupby("query"):
                row = np.zeros(len(self.catalog), dtype=np.int8)
                row[group["idx"].astype(np.int64).to_numpy()] = group["grade"].to_numpy()
                self._rows[str(q)] = row
        return [self._rows[normalize_query(q)] for q in queries]

    def rewrite_grades(
        self, queries: Sequence[str], rewrites: Sequence[str], retrieved: Sequence[Sequence[int]]
    ) -> np.ndarray:
        """Truth grade of each (query, rewrite), NaN where unknown.

        A rewrite that is itself a logged phrasing is graded by comparing intents
        (:func:`grade_rewrite_intents`); any other rewrite is as relevant as what it retrieves:
        the lower median of its top results' grades under the query (0 when it retrieves nothing).
        """
        out = np.full(len(queries), np.nan)
        rows = self.grade_rows(queries)
        q_int = self.intent_of(queries)
        r_int = self.intent_of(rewrites)
        both = (q_int >= 0) & (r_int >= 0)
        if both.any():
            assert self.lookup.intents is not None
            out[both] = grade_rewrite_intents(
                self.lookup.intents, self.catalog, q_int[both], r_int[both]
            )
        for j in np.flatnonzero(~both):
            if rows[j] is None:
                continue
            got = np.asarray(list(retrieved[j]), dtype=np.int64)
            out[j] = float(np.floor(np.median(rows[j][got]))) if got.size else 0.0
        return out
