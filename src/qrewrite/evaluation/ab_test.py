"""The simulated online A/B test: held-out shoppers replayed through the marketplace's behaviour
model, once with the original query's page (control) and once with the page of original + rewrite
recall (treatment), as production adds a rewrite recall path.

The arms share their random numbers (same seed per replica), so a search whose page the rewrite
does not change has the same outcome in both: the difference measured is the rewrite's alone.
Each search is replayed ``replicas`` times to average out the shopper's dice; the interval comes
from a bootstrap over users, which keeps each user's searches together. A second interval comes
from a bootstrap over queries, which keeps each query's searches together: it asks whether the
uplift would hold on other queries like these, and is the wider one when a few head queries make
most of the searches. Two arms are compared the same way, paired by query
(:meth:`ABResult.difference`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from qrewrite.evaluation.metrics import bootstrap_uplift
from qrewrite.market.behaviour import simulate_engagement
from qrewrite.market.truth import grade_pairs
from qrewrite.search_engine import NO_RESULT
from qrewrite.text import normalize_query


@dataclass
class ABSettings:
    replicas: int = 10
    page_size: int = 10
    bootstrap: int = 1000
    seed: int = 7


def held_out_searches(data_dir: str | Path, queries: set[str]) -> pd.DataFrame:
    """One row per logged search of a held-out query: search_id, user_id, query (normalised),
    intent_id (from the simulator's truth)."""
    data = Path(data_dir)
    log = pq.read_table(data / "search_log.parquet", columns=["search_id", "user_id", "query"])
    log = log.group_by(["search_id", "user_id", "query"]).aggregate([]).to_pandas()
    log["query"] = log["query"].map(normalize_query)
    log = log[log["query"].isin(queries)]
    truth = pq.read_table(data / "truth" / "searches.parquet")
    truth = truth.filter(
        pc.is_in(truth["search_id"], pa.array(log["search_id"].to_numpy()))
    ).to_pandas()
    out = log.merge(truth, on="search_id", how="inner")
    return out.sort_values("search_id", kind="stable").reset_index(drop=True)


def _pages(searches: pd.DataFrame, page_of: Mapping[str, Sequence[int]], size: int) -> np.ndarray:
    pages = np.full((len(searches), size), NO_RESULT, dtype=np.int64)
    for j, q in enumerate(searches["query"]):
        row = list(page_of.get(q, ()))[:size]
        pages[j, : len(row)] = row
    return pages


def _grades(searches: pd.DataFrame, pages: np.ndarray, intents, catalog) -> np.ndarray:
    grades = np.zeros(pages.shape, dtype=np.int64)
    valid = pages != NO_RESULT
    it = np.repeat(searches["intent_id"].to_numpy(), pages.shape[1]).reshape(pages.shape)
    if valid.any():
        grades[valid] = grade_pairs(intents, catalog, it[valid], pages[valid])
    return grades


def _replay(grades: np.ndarray, valid: np.ndarray, s: ABSettings) -> tuple[np.ndarray, np.ndarray]:
    """Purchases per search and whether each search got a click, summed over replicas."""
    positions = np.arange(1, grades.shape[1] + 1)[None, :]
    buys = np.zeros(len(grades))
    clicks = np.zeros(len(grades))
    for r in range(s.replicas):
        rng = np.random.default_rng([s.seed, r])
        clicked, _, bought = simulate_engagement(grades, positions, rng)
        buys += (bought & valid).sum(axis=1)
        clicks += (clicked & valid).any(axis=1)
    return buys, clicks


@dataclass
class ABResult:
    """The A/B test's figures per treatment arm, and each arm's purchases per held-out query
    (summed over its searches and the replicas), for comparing arms with each other."""

    arms: dict[str, dict[str, float]]
    control_by_query: np.ndarray
    treatment_by_query: dict[str, np.ndarray]
    bootstrap: int
    seed: int
    queries: list[str]  # the query of each position of the per-query arrays

    def uplift_without(self, arm: str, left_out: set[str]) -> tuple[float, float, float]:
        """UCVR uplift of ``arm`` over control with the searches of the ``left_out`` queries
        set aside, and its 95% bootstrap interval over the other queries: what the rest of
        the queries make of the uplift when one head query makes much of the searches. NaN
        when control bought nothing on the rest."""
        keep = np.array([q not in left_out for q in self.queries], dtype=bool)
        return bootstrap_uplift(
            self.control_by_query[keep],
            self.treatment_by_query[arm][keep],
            self.bootstrap,
            self.seed,
        )

    def difference(self, a: str, b: str) -> tuple[float, float, float]:
        """UCVR uplift of arm ``b`` minus that of arm ``a`` (both over control), and its 95%
        bootstrap interval over queries, paired: a query drawn brings its purchases in every
        arm. NaN when control bought nothing."""
        gain = self.treatment_by_query[b] - self.treatment_by_query[a]
        control = self.control_by_query
        # uplift(b) - uplift(a) = (sum b - sum a) / sum control: the ratio bootstrap_uplift
        # takes, with treatment = control + gain
        return bootstrap_uplift(control, control + gain, self.bootstrap, self.seed)


def simulate_ab(
    searches: pd.DataFrame,
    control_pages: Mapping[str, Sequence[int]],
    treatment_pages: Mapping[str, Mapping[str, Sequence[int]]],
    intents: pd.DataFrame,
    catalog: pd.DataFrame,
    settings: ABSettings,
) -> ABResult:
    """UCVR and CTR of control and of each treatment (variant name -> pages per query), with the
    relative uplifts and their bootstrap intervals (over users, and for UCVR over queries)."""
    user_codes, _ = pd.factorize(searches["user_id"])
    query_codes, query_names = pd.factorize(searches["query"])
    n_users = int(user_codes.max()) + 1 if len(user_codes) else 0
    n_queries = int(query_codes.max()) + 1 if len(query_codes) else 0
    n_searches = np.bincount(user_codes, minlength=n_users).astype(float)

    def by(codes: np.ndarray, n: int, per_search: np.ndarray) -> np.ndarray:
        return np.bincount(codes, weights=per_search, minlength=n)

    c_pages = _pages(searches, control_pages, settings.page_size)
    c_search_buys, c_search_clicks = _replay(
        _grades(searches, c_pages, intents, catalog), c_pages != NO_RESULT, settings
    )
    c_buys, c_clicks = (
        by(user_codes, n_users, c_search_buys),
        by(user_codes, n_users, c_search_clicks),
    )
    c_query_buys = by(query_codes, n_queries, c_search_buys)
    reps = settings.replicas * n_users
    out: dict[str, dict[str, float]] = {}
    by_query: dict[str, np.ndarray] = {}
    for name, page_of in treatment_pages.items():
        t_pages = _pages(searches, page_of, settings.page_size)
        t_search_buys, t_search_clicks = _replay(
            _grades(searches, t_pages, intents, catalog), t_pages != NO_RESULT, settings
        )
        t_buys = by(user_codes, n_users, t_search_buys)
        t_clicks = by(user_codes, n_users, t_search_clicks)
        by_query[name] = by(query_codes, n_queries, t_search_buys)
        u, u_lo, u_hi = bootstrap_uplift(c_buys, t_buys, settings.bootstrap, settings.seed)
        _, uq_lo, uq_hi = bootstrap_uplift(
            c_query_buys, by_query[name], settings.bootstrap, settings.seed
        )
        c, c_lo, c_hi = bootstrap_uplift(c_clicks, t_clicks, settings.bootstrap, settings.seed)
        out[name] = {
            "users": float(n_users),
            "searches": float(len(searches)),
            "replicas": float(settings.replicas),
            "pages_changed": float((t_pages != c_pages).any(axis=1).mean()) if n_users else 0.0,
            "ucvr_control": float(c_buys.sum() / reps) if reps else float("nan"),
            "ucvr_treatment": float(t_buys.sum() / reps) if reps else float("nan"),
            "ucvr_uplift": u,
            "ucvr_uplift_ci_low": u_lo,
            "ucvr_uplift_ci_high": u_hi,
            "ucvr_uplift_query_ci_low": uq_lo,
            "ucvr_uplift_query_ci_high": uq_hi,
            "ctr_control": float(c_clicks.sum() / (n_searches.sum() * settings.replicas))
            if n_users
            else float("nan"),
            "ctr_treatment": float(t_clicks.sum() / (n_searches.sum() * settings.replicas))
            if n_users
            else float("nan"),
            "ctr_uplift": c,
            "ctr_uplift_ci_low": c_lo,
            "ctr_uplift_ci_high": c_hi,
        }
    return ABResult(
        out, c_query_buys, by_query, settings.bootstrap, settings.seed, list(query_names)
    )
