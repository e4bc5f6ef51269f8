"""Shopper intents and the many ways shoppers phrase them.

An intent is a product type plus attribute constraints, anchored on a real product so that the
catalog can satisfy it. Each intent is phrased several ways: a *canonical* phrasing in catalog
words, and variants with the lexical gap (synonyms and slang, misspellings, abbreviations,
word-order changes, filler words, negations, price limits).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from qrewrite.market.domain import (
    COLOURS,
    FILLER_WORDS,
    GENDERS,
    MATERIALS,
    SIZES,
    TYPES_BY_TITLE,
)
from qrewrite.text import normalize_query

INTENT_COLUMNS = [
    "intent_id",
    "category",
    "product_type",
    "brand",
    "colour",
    "material",
    "size",
    "gender",
    "feature",
    "feature_required",
    "price_max",
]

# How often an intent states each constraint (when the category has that attribute).
CONSTRAINT_RATES = {
    "brand": 0.2,
    "colour": 0.4,
    "material": 0.2,
    "size": 0.15,
    "gender": 0.45,
    "feature": 0.35,
    "price_max": 0.08,
}

_KEYBOARD = {
    "a": "qsz",
    "b": "vgn",
    "c": "xvd",
    "d": "sfe",
    "e": "wrd",
    "f": "dgr",
    "g": "fht",
    "h": "gjy",
    "i": "uok",
    "j": "hku",
    "k": "jli",
    "l": "kop",
    "m": "nj",
    "n": "bmh",
    "o": "ipl",
    "p": "ol",
    "q": "wa",
    "r": "etf",
    "s": "adw",
    "t": "ryg",
    "u": "yij",
    "v": "cbf",
    "w": "qes",
    "x": "zcs",
    "y": "tuh",
    "z": "xa",
}


@dataclass(frozen=True)
class Phrasing:
    text: str  # as typed (may differ from normalised text in case/spacing)
    tags: str  # comma-separated phenomena: synonym, misspelling, word_order, filler, negation, ...
    canonical: bool


def generate_intents(
    catalog: pd.DataFrame, n_intents: int, rng: np.random.Generator
) -> pd.DataFrame:
    """Distinct intents anchored on random products; duplicates of a constraint set are redrawn."""
    seen: set[tuple] = set()
    rows: list[dict] = []
    attempts = 0
    while len(rows) < n_intents and attempts < n_intents * 20:
        attempts += 1
        p = catalog.iloc[int(rng.integers(len(catalog)))]
        row: dict = {"category": p["category"], "product_type": p["product_type"]}
        for col in ("brand", "colour", "material", "size"):
            take = p[col] is not None and rng.random() < CONSTRAINT_RATES[col]
            row[col] = p[col] if take else None
        gender = p["gender"]
        if gender is not None and rng.random() < CONSTRAINT_RATES["gender"]:
            # A unisex product serves shoppers who say "mens" or "womens".
            row["gender"] = ("Men", "Women")[int(rng.integers(2))] if gender == "Unisex" else gender
        else:
            row["gender"] = None
        if p["feature"] is not None and rng.random() < CONSTRAINT_RATES["feature"]:
            row["feature"], row["feature_required"] = p["feature"], bool(p["has_feature"])
        else:
            row["feature"], row["feature_required"] = None, None
        if rng.random() < CONSTRAINT_RATES["price_max"]:
            row["price_max"] = float(np.ceil(p["price"] * 1.3 / 10.0) * 10.0)
        else:
            row["price_max"] = None
        key = tuple(row[c] for c in INTENT_COLUMNS[1:])
        if key in seen:
            continue
        seen.add(key)
        row["intent_id"] = len(rows)
        rows.append(row)
    df = pd.DataFrame(rows, columns=INTENT_COLUMNS)
    df["feature_required"] = df["feature_required"].astype("boolean")
    df["price_max"] = df["price_max"].astype("float64")
    return df


def misspell(word: str, rng: np.random.Generator) -> str:
    """One typing error: a dropped, doubled, swapped or neighbouring-key letter."""
    if len(word) < 4 or not word.isalpha():
        return word
    typo = _one_typo(word, rng)
    # Swapping or doubling equal letters ("ff") changes nothing; drop a letter instead.
    return typo if typo != word else word[:-2] + word[-1]


def _one_typo(word: str, rng: np.random.Generator) -> str:
    i = int(rng.integers(1, len(word) - 1))
    op = int(rng.integers(4))
    if op == 0:
        return word[:i] + word[i + 1 :]
    if op == 1:
        return word[:i] + word[i] + word[i:]
    if op == 2:
        return word[: i - 1] + word[i] + word[i - 1] + word[i + 1 :]
    neighbours = _KEYBOARD.get(word[i], "")
    if not neighbours:
        return word[:i] + word[i + 1 :]
    return word[:i] + neighbours[int(rng.integers(len(neighbours)))] + word[i + 1 :]


def _variant(forms: tuple[str, ...], rng: np.random.Generator, gap: bool) -> tuple[str, bool]:
    """The catalog form, or (when ``gap``) one of the shopper forms."""
    if gap and len(forms) > 1:
        return forms[1 + int(rng.integers(len(forms) - 1))], True
    return forms[0], False


def phrase_intent(intent: dict, rng: np.random.Generator, canonical: bool) -> Phrasing:
    """One phrasing of an intent. ``canonical`` uses catalog words only, in catalog order."""
    _, ptype = TYPES_BY_TITLE[intent["product_type"]]
    p_gap = 0.0 if canonical else 0.5
    tags: list[str] = []
    pre: list[str] = []
    post: list[str] = []

    def add(forms: tuple[str, ...], where: list[str], p: float = p_gap) -> None:
        word, used_gap = _variant(forms, rng, rng.random() < p)
        where.append(word)
        if used_gap:
            tags.append("synonym")

    if intent["brand"]:
        pre.append(intent["brand"].lower())
    if intent["gender"]:
        add(GENDERS[intent["gender"]][1:], pre)
    if intent["colour"]:
        add(COLOURS[intent["colour"]], pre)
    if intent["material"]:
        add(MATERIALS[intent["material"]], pre)
    feature_required = intent["feature_required"]
    if intent["feature"] and feature_required is not None and not pd.isna(feature_required):
        f = ptype.feature
        assert f is not None
        if feature_required:
            add(f.present_query, pre)
        elif not canonical and rng.random() < 0.6:
            # "coffee without caffeine": the negation a lexical engine turns into its opposite.
            post.append(f.absent_query_negated[int(rng.integers(len(f.absent_query_negated)))])
            tags.append("negation")
        else:
            pre.append(f.absent_query_lexical[int(rng.integers(len(f.absent_query_lexical)))])
    type_forms = (ptype.title.lower(), *ptype.gap_terms)
    type_word, type_gap = _variant(type_forms, rng, rng.random() < (0.0 if canonical else 0.55))
    if type_gap:
        tags.append("synonym")
    if intent["size"]:
        add(SIZES[intent["size"]], post)
    if intent["price_max"] is not None and not pd.isna(intent["price_max"]):
        price = int(intent["price_max"])
        forms = (
            f"under {price}",
            f"under ${price}",
            f"below {price}",
            f"less than {price} dollars",
        )
        post.append(forms[0] if canonical else forms[int(rng.integers(len(forms)))])
        tags.append("price")

    words = [*pre, type_word, *post]
    if not canonical:
        if rng.random() < 0.25 and len(words) > 1:
            words = list(rng.permutation(words))
            tags.append("word_order")
        if rng.random() < 0.2:
            filler = FILLER_WORDS[int(rng.integers(len(FILLER_WORDS)))]
            words = [filler, *words] if rng.random() < 0.5 else [*words, filler]
            tags.append("filler")
        if rng.random() < 0.18:
            candidates = [i for i, w in enumerate(words) if len(w) >= 4 and w.isalpha()]
            if candidates:
                i = candidates[int(rng.integers(len(candidates)))]
                words[i] = misspell(words[i], rng)
                tags.append("misspelling")
    text = " ".join(words)
    return Phrasing(text=text, tags=",".join(sorted(set(tags))), canonical=canonical)


def phrase_intents(
    intents: pd.DataFrame, rng: np.random.Generator, mean_variants: float
) -> pd.DataFrame:
    """The query universe: every phrasing of every intent with its in-intent weight.

    Texts are lower-case and single-spaced; the simulator adds per-search surface noise.
    ``intents`` needs a ``popularity`` column. Popular intents get more variants (more
    shoppers, more ways of saying it). Returns one row per distinct (intent, normalised text)
    with ``weight`` (share of the intent's searches) and ``clarity`` (how strongly a
    reformulating shopper moves towards it).
    """
    n = len(intents)
    ranks = intents["popularity"].rank(ascending=False, method="first").to_numpy() - 1
    rows: list[dict] = []
    for rank, rec in zip(ranks, intents.to_dict("records"), strict=True):
        n_variants = int(rng.poisson(mean_variants * (2.0 if rank < 0.1 * n else 1.0)))
        seen: set[str] = set()
        for j in range(1 + n_variants):
            ph = phrase_intent(rec, rng, canonical=(j == 0))
            key = normalize_query(ph.text)
            if not key or key in seen:
                continue
            seen.add(key)
            gaps = len(ph.tags.split(",")) if ph.tags else 0
            rows.append(
                {
                    "intent_id": rec["intent_id"],
                    "query": ph.text,
                    "tags": ph.tags,
                    "canonical": ph.canonical,
                    # Canonical wording is common but far from all traffic.
                    "weight": float(rng.gamma(2.0)) * (1.5 if ph.canonical else 1.0),
                    "clarity": 1.0 / (1.0 + gaps) ** 2,
                }
            )
    uni = pd.DataFrame(rows)
    uni["weight"] = uni["weight"] / uni.groupby("intent_id")["weight"].transform("sum")
    return uni
