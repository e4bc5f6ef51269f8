"""Graded truth for evaluation: the grade of every catalog product for each held-out query.

Synthetic data grades a product under the query's intent (:mod:`qrewrite.market.truth`); imported
judged data looks the pair up in its judgments (unjudged products count as irrelevant, as TREC-style
evaluation does). Only evaluation and simulation read this; training never does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from qrewrite.errors import DataError
from qrewrite.market.truth import grade_pairs, grade_rewrite_intents
from qrewrite.tables import read_parquet_table
from qrewrite.text import normalize_query


@dataclass
class TruthLookup:
    """Ground truth of a data directory, ready to grade (query, rewrite / product) pairs."""

    kind: str  # "synthetic" or "judged"
    catalog: pd.DataFrame
    intents: pd.DataFrame | None = None
    query_intent: pd.Series | None = None  # normalised query -> intent_id
    judgments: pd.Series | None = None  # (query, product_id) -> grade

    @classmethod
    def load(cls, data_dir: str | Path) -> TruthLookup:
        data = Path(data_dir)
        manifest_path = data / "manifest.json"
        if not manifest_path.exists():
            raise DataError(
                f"{manifest_path}: not found; --data must be a synth or import-judged "
                "output directory"
            )
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            kind = manifest["kind"]
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{manifest_path}: not valid JSON ({e})") from e
        except (KeyError, TypeError) as e:
            raise DataError(
                f"{manifest_path}: no 'kind' (synthetic or judged); not a synth or import-judged "
                "manifest"
            ) from e
        catalog = read_parquet_table(data / "catalog.parquet", "catalog").to_pandas()
        if kind == "synthetic":
            intents = read_parquet_table(data / "truth" / "intents.parquet", "truth").to_pandas()
            queries = read_parquet_table(data / "truth" / "queries.parquet", "truth").to_pandas()
            # A text phrased for several intents belongs to the one that produces most of it.
            share = queries["weight"] * intents["popularity"].to_numpy()[queries["intent_id"]]
            dominant = (
                queries.assign(share=share)
                .sort_values(["query", "share"], ascending=[True, False], kind="stable")
                .drop_duplicates("query")
            )
            return cls(kind, catalog, intents, dominant.set_index("query")["intent_id"])
        if kind == "judged":
            j = read_parquet_table(data / "truth" / "judgments.parquet", "truth").to_pandas()
            return cls(kind, catalog, judgments=j.set_index(["query", "product_id"])["grade"])
        raise DataError(f"{manifest_path}: unknown data kind {kind!r}")

    def grade(self, pairs: pd.DataFrame) -> tuple[np.ndarray, pd.Series]:
        """Truth grades (float, NaN where unknown) and, per pair, why it has none ("" if judged).

        ``pairs`` needs ``query`` and ``rewrite``; ``product_id`` (optional) marks title pairs.
        """
        n = len(pairs)
        truth = np.full(n, np.nan)
        reason = pd.Series([""] * n, index=pairs.index, dtype=object)
        query = pairs["query"].map(normalize_query).to_numpy()
        product = (
            pairs["product_id"].to_numpy(dtype=object)
            if "product_id" in pairs
            else np.full(n, None, dtype=object)
        )
        is_title = pd.notna(product)
        if self.kind == "judged":
            assert self.judgments is not None
            keys = pd.MultiIndex.from_arrays([query[is_title], product[is_title]])
            truth[is_title] = self.judgments.reindex(keys).to_numpy(dtype=float)
            reason[~is_title] = "query_pairs_have_no_judgments"
            reason[is_title & np.isnan(truth)] = "pair_not_judged"
            return truth, reason

        assert self.intents is not None and self.query_intent is not None
        q_intent = self.query_intent.reindex(query).to_numpy(dtype=float)
        known_q = ~np.isnan(q_intent)
        reason[~known_q] = "query_not_in_truth"
        # (query, title) pairs: grade the product under the query's intent.
        pid_index = pd.Series(np.arange(len(self.catalog)), index=self.catalog["product_id"])
        p_idx = pid_index.reindex(product[is_title]).to_numpy(dtype=float)
        rows = np.flatnonzero(is_title)
        ok = known_q[rows] & ~np.isnan(p_idx)
        reason.iloc[rows[known_q[rows] & np.isnan(p_idx)]] = "product_not_in_catalog"
        if ok.any():
            truth[rows[ok]] = grade_pairs(
                self.intents,
                self.catalog,
                q_intent[rows[ok]].astype(np.int64),
                p_idx[ok].astype(np.int64),
            )
        # (query, rewrite) pairs: compare the two intents.
        rows = np.flatnonzero(~is_title)
        rewrite = pairs["rewrite"].map(normalize_query).to_numpy()[rows]
        r_intent = self.query_intent.reindex(rewrite).to_numpy(dtype=float)
        ok = known_q[rows] & ~np.isnan(r_intent)
        reason.iloc[rows[known_q[rows] & np.isnan(r_intent)]] = "rewrite_not_in_truth"
        if ok.any():
            truth[rows[ok]] = grade_rewrite_intents(
                self.intents,
                self.catalog,
                q_intent[rows[ok]].astype(np.int64),
                r_intent[ok].astype(np.int64),
            )
        return truth, reason


class GradedTruth:
    """Grade matrices over the catalog for queries, and the truth grade of a (query, rewrite)."""

    def __init__(self, lookup: TruthLookup) -> None:
        self.lookup = lookup
        self.kind = lookup.kind
        self.catalog = lookup.catalog
        self._rows: dict[str, np.ndarray | None] = {}
        self._judged: dict[str, np.ndarray] = {}  # judged data: which products people judged

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
                idx = group["idx"].astype(np.int64).to_numpy()
                row = np.zeros(len(self.catalog), dtype=np.int8)
                row[idx] = group["grade"].to_numpy()
                self._rows[str(q)] = row
                seen = np.zeros(len(self.catalog), dtype=bool)
                seen[idx] = True
                self._judged[str(q)] = seen
        return [self._rows[normalize_query(q)] for q in queries]

    def judged_rows(self, queries: Sequence[str]) -> list[np.ndarray | None]:
        """For each query, which catalog products people judged for it (bool), telling an
        unjudged product from one judged irrelevant (both grade 0 in :meth:`grade_rows`); None
        where every product has a grade (synthetic truth) or the query has no judgments."""
        self.grade_rows(queries)
        return [self._judged.get(normalize_query(q)) for q in queries]

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
