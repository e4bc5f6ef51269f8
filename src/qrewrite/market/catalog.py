"""Catalog generation: products with structured attributes and shop-style titles."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from qrewrite import schemas
from qrewrite.market.domain import CATEGORIES, GENDERS, Category, ProductType

CATALOG_COLUMNS = schemas.CATALOG.names


def _pick(rng: np.random.Generator, values: tuple[str, ...]) -> str | None:
    return values[int(rng.integers(len(values)))] if values else None


def _title(rng: np.random.Generator, cat: Category, ptype: ProductType, row: dict) -> str:
    """Compose a title: brand first, then a shop-specific mix of attributes and marketing words."""
    head: list[str] = [row["brand"]]
    if row["gender"]:
        head.append(GENDERS[row["gender"]][0].title().replace("'S", "'s"))
    feature_word = ""
    if ptype.feature is not None and rng.random() < 0.85:
        f = ptype.feature
        feature_word = f.present_title if row["has_feature"] else f.absent_title
    colour_first = row["colour"] is not None and rng.random() < 0.35
    if colour_first:
        head.append(row["colour"])
    if feature_word and rng.random() < 0.5:
        head.append(feature_word)
        feature_word = ""
    if row["material"] and rng.random() < 0.6:
        head.append(row["material"])
    head.append(ptype.title)
    tail: list[str] = []
    if ptype.title_alias and rng.random() < 0.4:
        tail.append(ptype.title_alias)
    if feature_word:
        tail.append(feature_word)
    if rng.random() < 0.7:
        tail.append(_pick(rng, cat.fluff) or "")
    title = " ".join(head)
    if tail:
        title += " - " + " ".join(t for t in tail if t)
    if row["colour"] and not colour_first:
        title += f", {row['colour']}"
    if row["size"]:
        title += f", {cat.size_prefix}{row['size']}"
    return title


def generate_catalog(n_products: int, rng: np.random.Generator) -> pd.DataFrame:
    """``n_products`` products spread over every category and product type.

    Each product type gets a share of the catalog; attributes are drawn from its category's
    vocabularies, and the title prints them in one of several shop-like orders.
    """
    types = [(c, t) for c in CATEGORIES for t in c.types]
    type_weights = rng.dirichlet(np.full(len(types), 8.0))
    type_idx = rng.choice(len(types), size=n_products, p=type_weights)
    # Every type appears at least once so every intent has a product to anchor on.
    type_idx[: len(types)] = np.arange(len(types))[: min(len(types), n_products)]
    rows = []
    for i, ti in enumerate(type_idx):
        cat, ptype = types[int(ti)]
        row = {
            "product_id": f"P{i:07d}",
            "category": cat.name,
            "product_type": ptype.title,
            "brand": _pick(rng, cat.brands),
            "colour": _pick(rng, cat.colours),
            "material": _pick(rng, cat.materials),
            "size": _pick(rng, cat.sizes),
            "gender": _pick(rng, cat.genders),
            "price": round(ptype.price[0] * math.exp(float(rng.normal(0, ptype.price[1]))), 2),
            "feature": ptype.feature.name if ptype.feature else None,
            "has_feature": (
                bool(rng.random() < ptype.feature.presence_rate) if ptype.feature else None
            ),
        }
        row["title"] = _title(rng, cat, ptype, row)
        rows.append(row)
    df = pd.DataFrame(rows, columns=CATALOG_COLUMNS)
    df["has_feature"] = df["has_feature"].astype("boolean")
    return df
