"""Ground truth: grade any product for any intent (2 relevant, 1 partial, 0 irrelevant).

Only evaluation and simulation may use this module and the ``truth/`` tables; mining, labeling
and training see only what a shop's logs show.

Grading rules (also in docs/data.md#truth):
- another category, or another product type that is not a declared substitute: 0;
- a hard conflict: the wrong gender, or a feature the shopper excluded ("without laces") or
  required ("wireless") that the product contradicts: 0;
- soft mismatches (brand, colour, material, size, over the price limit) are counted: the right
  type with none is 2, with one is 1 (a close substitute), with more is 0; a substitute type with
  none is 1, with any is 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from qrewrite.market.domain import CATEGORIES

_SOFT = ("brand", "colour", "material", "size")


def _codes(a: pd.Series, b: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Shared integer codes for two object columns; missing values get -1."""
    codes, _ = pd.factorize(pd.concat([a, b], ignore_index=True), use_na_sentinel=True)
    return codes[: len(a)], codes[len(a) :]


def grade_pairs(
    intents: pd.DataFrame,
    catalog: pd.DataFrame,
    intent_idx: np.ndarray,
    product_idx: np.ndarray,
) -> np.ndarray:
    """Grades for pairs (``intents.iloc[intent_idx[j]]``, ``catalog.iloc[product_idx[j]]``).

    Vectorised over pairs: the simulator grades every page it shows with this function.
    """
    intent_idx = np.asarray(intent_idx, dtype=np.int64)
    product_idx = np.asarray(product_idx, dtype=np.int64)
    it = intents.iloc[intent_idx].reset_index(drop=True)
    pr = catalog.iloc[product_idx].reset_index(drop=True)

    i_type, p_type = _codes(it["product_type"], pr["product_type"])
    same_type = i_type == p_type
    substitutes = {(t.title, s) for c in CATEGORIES for t in c.types for s in t.substitutes}
    pair_types = zip(it["product_type"].to_numpy(), pr["product_type"].to_numpy(), strict=True)
    is_substitute = np.fromiter(
        ((a, b) in substitutes for a, b in pair_types), dtype=bool, count=len(it)
    )
    base = np.where(same_type, 2, np.where(is_substitute, 1, 0))

    ig = it["gender"].to_numpy(dtype=object)
    pg = pr["gender"].to_numpy(dtype=object)
    ig_set = pd.notna(ig)
    pg_set = pd.notna(pg)
    unisex_ok = (pg == "Unisex") & np.isin(ig, ["Men", "Women"])
    gender_conflict = ig_set & pg_set & (ig != pg) & ~unisex_ok

    req = it["feature_required"].astype("boolean")
    has = pr["has_feature"].astype("boolean")
    same_feature = it["feature"].to_numpy(dtype=object) == pr["feature"].to_numpy(dtype=object)
    feature_conflict = (
        req.notna().to_numpy()
        & has.notna().to_numpy()
        & same_feature
        & (req.fillna(False).to_numpy() != has.fillna(False).to_numpy())
    )

    mismatches = np.zeros(len(it), dtype=np.int64)
    for col in _SOFT:
        ic, pc = _codes(it[col], pr[col])
        mismatches += (ic >= 0) & (ic != pc)
    price_max = it["price_max"].to_numpy(dtype=float)
    mismatches += ~np.isnan(price_max) & (pr["price"].to_numpy(dtype=float) > price_max)

    grade = np.where(
        base == 2,
        np.where(mismatches == 0, 2, np.where(mismatches == 1, 1, 0)),
        np.where((base == 1) & (mismatches == 0), 1, 0),
    )
    grade[gender_conflict | feature_conflict] = 0
    return grade.astype(np.int8)


def grade_products(intent: pd.Series | dict, catalog: pd.DataFrame) -> np.ndarray:
    """Grade every catalog product for one intent."""
    one = pd.DataFrame([dict(intent)])
    return grade_pairs(
        one, catalog, np.zeros(len(catalog), dtype=np.int64), np.arange(len(catalog))
    )


def fully_matching_products(
    intents: pd.DataFrame, catalog: pd.DataFrame, intent_ids: np.ndarray
) -> dict[int, np.ndarray]:
    """Catalog row indices of the products graded 2 for each intent in ``intent_ids``.

    Only products of the intent's own type can be graded 2, so each intent is graded against
    that slice of the catalog rather than all of it.
    """
    by_type = {
        t: np.flatnonzero(catalog["product_type"].to_numpy() == t)
        for t in intents["product_type"].unique()
    }
    ids = np.unique(np.asarray(intent_ids, dtype=np.int64))
    it_idx = (
        np.concatenate([np.full(len(by_type[intents.iloc[i]["product_type"]]), i) for i in ids])
        if len(ids)
        else np.empty(0, dtype=np.int64)
    )
    pr_idx = (
        np.concatenate([by_type[intents.iloc[i]["product_type"]] for i in ids])
        if len(ids)
        else np.empty(0, dtype=np.int64)
    )
    grades = grade_pairs(intents, catalog, it_idx, pr_idx)
    return {int(i): pr_idx[(it_idx == i) & (grades == 2)] for i in ids}


def grade_rewrite_intents(
    intents: pd.DataFrame,
    catalog: pd.DataFrame,
    query_intent: np.ndarray,
    rewrite_intent: np.ndarray,
) -> np.ndarray:
    """The truth grade of rewriting a query of intent ``query_intent[j]`` into a query of intent
    ``rewrite_intent[j]``: 2 for the same intent, else the median (rounded down) of the grades,
    under the query's intent, of the products that fully satisfy the rewrite's intent. A rewrite
    is as relevant as what it retrieves when it works perfectly.
    """
    q = np.asarray(query_intent, dtype=np.int64)
    r = np.asarray(rewrite_intent, dtype=np.int64)
    out = np.full(len(q), 2, dtype=np.int8)
    differ = q != r
    if not differ.any():
        return out
    pairs = pd.DataFrame({"q": q[differ], "r": r[differ]}).drop_duplicates().reset_index(drop=True)
    matches = fully_matching_products(intents, catalog, pairs["r"].to_numpy())
    sizes = np.array([len(matches[int(x)]) for x in pairs["r"]])
    pair_of = np.repeat(np.arange(len(pairs)), sizes)
    products = (
        np.concatenate([matches[int(x)] for x in pairs["r"]])
        if sizes.sum()
        else np.empty(0, dtype=np.int64)
    )
    grades = grade_pairs(intents, catalog, pairs["q"].to_numpy()[pair_of], products)
    median = pd.Series(grades).groupby(pair_of).median()
    # an intent nothing satisfies (cannot happen for anchored intents) counts as irrelevant
    pairs["grade"] = np.floor(median.reindex(range(len(pairs))).fillna(0).to_numpy()).astype(
        np.int8
    )
    lookup = pairs.set_index(["q", "r"])["grade"]
    out[differ] = lookup.reindex(pd.MultiIndex.from_arrays([q[differ], r[differ]])).to_numpy()
    return out
