"""The simulated online A/B test: held-out shoppers replayed through the marketplace's behaviour
model, once with the original query's page (control) and once with the page of original + rewrite
recall (treatment), as production adds a rewrite recall path.

The arms share their random numbers (same seed per replica), so a search whose page the rewrite
does not change has the same outcome in both: the difference measured is the rewrite's alone.
Each search is replayed ``replicas`` times to average out the shopper's dice; the interval comes
from a bootstrap over users, which keeps each user's searches together.
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


def _replay(
    grades: np.ndarray, valid: np.ndarray, users: np.ndarray, n_users: int, s: ABSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Purchases per user and searches with a click per user, summed over replicas."""
    positions = np.arange(1, grades.shape[1] + 1)[None, :]
    buys = np.zeros(n_users)
    clicks = np.zeros(n_users)
    for r in range(s.replicas):
        rng = np.random.default_rng([s.seed, r])
        clicked, _, bought = simulate_engagement(grades, positions, rng)
        clicked &= valid
        bought &= valid
        buys += np.bincount(users, weights=bought.sum(axis=1), minlength=n_users)
        clicks += np.bincount(users, weights=clicked.any(axis=1), minlength=n_users)
    return buys, clicks


def simulate_ab(
    searches: pd.DataFrame,
    control_pages: Mapping[str, Sequence[int]],
    treatment_pages: Mapping[str, Mapping[str, Sequence[int]]],
    intents: pd.DataFrame,
    catalog: pd.DataFrame,
    settings: ABSettings,
) -> dict[str, dict[str, float]]:
    """UCVR and CTR of control and of each treatment (variant name -> pages per query), with the
    relative uplifts and their bootstrap intervals."""
    user_codes, _ = pd.factorize(searches["user_id"])
    n_users = int(user_codes.max()) + 1 if len(user_codes) else 0
    n_searches = np.bincount(user_codes, minlength=n_users).astype(float)
    c_pages = _pages(searches, control_pages, settings.page_size)
    c_buys, c_clicks = _replay(
        _grades(searches, c_pages, intents, catalog),
        c_pages != NO_RESULT,
        user_codes,
        n_users,
        settings,
    )
    reps = settings.replicas * n_users
    out: dict[str, dict[str, float]] = {}
    for name, page_of in treatment_pages.items():
        t_pages = _pages(searches, page_of, settings.page_size)
        t_buys, t_clicks = _replay(
            _grades(searches, t_pages, intents, catalog),
            t_pages != NO_RESULT,
            user_codes,
            n_users,
            settings,
        )
        u, u_lo, u_hi = bootstrap_uplift(c_buys, t_buys, settings.bootstrap, settings.seed)
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
    return out
