"""The GRPO reward functions: a registry of small, named, pure functions.

Each takes the queries, the generated rewrites (one per completion, already parsed) and what the
dataset row carries (products bought, clicked and known relevant for the query; what the original
query retrieves), plus a :class:`RewardContext` with the frozen tools (the relevance judge, the
lexical engine, the catalog vocabulary). Each returns one float per rewrite. The fused reward is
their weighted sum, weights from config (``grpo.reward_weights``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qrewrite.text import is_copy, normalize_query, repeated_words
from qrewrite.training.prompts import is_well_formed, parse_rewrite

ProductSets = Sequence[Sequence[str]]


@dataclass
class RewardContext:
    """The frozen tools rewards consult.

    ``judge(queries, rewrites)`` returns P(grade 2) per pair; ``retrieve(texts)`` returns the
    product ids the lexical engine ranks in its top k for each text.
    """

    judge: Callable[[Sequence[str], Sequence[str]], Sequence[float]]
    retrieve: Callable[[Sequence[str]], Sequence[frozenset[str]]]
    brands: frozenset[str] = frozenset()
    product_types: frozenset[str] = frozenset()
    attribute_values: frozenset[str] = frozenset()  # one-word colours, materials, genders
    min_words: int = 1
    max_words: int = 12


def relevance(
    queries: Sequence[str], rewrites: Sequence[str], ctx: RewardContext, **_: Any
) -> list[float]:
    """P(relevant | query, rewrite) by the frozen judge: the SFT model in tagging mode (the paper's
    self-relevance) or the teacher labeler. A malformed rewrite scores 0."""
    ok = [i for i, r in enumerate(rewrites) if is_well_formed(r)]
    out = [0.0] * len(rewrites)
    if ok:
        scores = ctx.judge([queries[i] for i in ok], [rewrites[i] for i in ok])
        for i, s in zip(ok, scores, strict=True):
            out[i] = float(s)
    return out


def hit_rate(
    queries: Sequence[str],
    rewrites: Sequence[str],
    ctx: RewardContext,
    purchased: ProductSets,
    relevant: ProductSets,
    **_: Any,
) -> list[float]:
    """Share of the products bought under the query that the rewrite retrieves (of the known
    relevant products when nothing was bought)."""
    retrieved = ctx.retrieve(list(rewrites))
    out = []
    for got, bought, rel in zip(retrieved, purchased, relevant, strict=True):
        target = set(bought) or set(rel)
        out.append(len(got & target) / len(target) if target else 0.0)
    return out


def relevant_hit_rate(
    queries: Sequence[str],
    rewrites: Sequence[str],
    ctx: RewardContext,
    purchased: ProductSets,
    relevant: ProductSets,
    **_: Any,
) -> list[float]:
    """Hit rate counted only as far as the judge finds the rewrite relevant: P(relevant) x hit
    rate. Conversion bought with relevance earns nothing, so GRPO cannot trade one for the other
    (a rewrite the serving policy would hold back adds no recall in production either)."""
    hits = hit_rate(queries, rewrites, ctx, purchased=purchased, relevant=relevant)
    rel = relevance(queries, rewrites, ctx)
    return [h * r for h, r in zip(hits, rel, strict=True)]


def increment(
    queries: Sequence[str],
    rewrites: Sequence[str],
    ctx: RewardContext,
    relevant: ProductSets,
    original_retrieved: ProductSets,
    **_: Any,
) -> list[float]:
    """BEQUE's increment: relevant products the rewrite retrieves that the original query does
    not, as a share of the relevant products the original misses (0 when it misses none)."""
    retrieved = ctx.retrieve(list(rewrites))
    out = []
    for got, rel, orig in zip(retrieved, relevant, original_retrieved, strict=True):
        missed = set(rel) - set(orig)
        out.append(len(got & missed) / len(missed) if missed else 0.0)
    return out


def well_formed(
    queries: Sequence[str], rewrites: Sequence[str], ctx: RewardContext, **_: Any
) -> list[float]:
    """1 for a single non-empty line of search words; 0 for empty output, several lines, an
    echo of the prompt's fields, a grade word, or special tokens."""
    return [1.0 if is_well_formed(r) else 0.0 for r in rewrites]


def length(
    queries: Sequence[str], rewrites: Sequence[str], ctx: RewardContext, **_: Any
) -> list[float]:
    """1 when the rewrite has between ``min_words`` and ``max_words`` words, else 0."""
    return [1.0 if ctx.min_words <= len(r.split()) <= ctx.max_words else 0.0 for r in rewrites]


def not_copy(
    queries: Sequence[str], rewrites: Sequence[str], ctx: RewardContext, **_: Any
) -> list[float]:
    """1 unless the rewrite is the query again: after normalisation, or its words and no others
    in any order or number ("grass cat cat" for "cat grass"). A copy adds no recall."""
    return [0.0 if is_copy(q, r) else 1.0 for q, r in zip(queries, rewrites, strict=True)]


def no_repeats(
    queries: Sequence[str], rewrites: Sequence[str], ctx: RewardContext, **_: Any
) -> list[float]:
    """1 unless the rewrite repeats a word the query does not: "cowboy boots" -> "western
    cowboy boots boots" scores 0. A stutter keeps the judge's relevance of the words it
    repeats and passes ``not_copy``, so without this GRPO learns it (on Crowdflower's queries
    60% of GRPO's greedy rewrites stuttered; docs/benchmarks.md, "Stutters")."""
    return [0.0 if repeated_words(q, r) else 1.0 for q, r in zip(queries, rewrites, strict=True)]


def _mentions(text: str, vocabulary: frozenset[str]) -> set[str]:
    padded = f" {normalize_query(text)} "
    return {v for v in vocabulary if f" {v} " in padded}


def no_drift(
    queries: Sequence[str], rewrites: Sequence[str], ctx: RewardContext, **_: Any
) -> list[float]:
    """1 unless the rewrite brings in a brand the query does not name, or names a product type
    while the query names a different one (the catalog's vocabulary decides)."""
    out = []
    for q, r in zip(queries, rewrites, strict=True):
        new_brands = _mentions(r, ctx.brands) - _mentions(q, ctx.brands)
        q_types, r_types = _mentions(q, ctx.product_types), _mentions(r, ctx.product_types)
        type_drift = bool(q_types and r_types and not (q_types & r_types))
        out.append(0.0 if new_brands or type_drift else 1.0)
    return out


# a size, a count, a price bound; not a share ("100% cotton" names the material, not 100)
_NUMBER = re.compile(r"(?<![0-9.])[0-9]+(?:\.[0-9]+)?(?![0-9.]*%)")
_WORD = re.compile(r"[0-9a-z][0-9a-z'-]*")


def named_values(text: str, vocabulary: frozenset[str]) -> set[str]:
    """The numbers and the catalog's attribute values (``vocabulary``) that ``text`` names.

    >>> sorted(named_values("100% cotton jeans size 10 under $20", frozenset({"cotton"})))
    ['10', '20', 'cotton']
    """
    norm = normalize_query(text)
    return set(_NUMBER.findall(norm)) | (set(_WORD.findall(norm)) & vocabulary)


def keeps_values(
    queries: Sequence[str], rewrites: Sequence[str], ctx: RewardContext, **_: Any
) -> list[float]:
    """Share of the numbers and attribute values the query names (sizes, counts, price bounds,
    colours, materials) that the rewrite names too; 1 when the query names none, 0 for a
    malformed rewrite. "blue jump rope under 20" -> "blue jump rope" keeps 1 of 2: 0.5. On the
    demo's held-out queries a quarter of the SFT model's top rewrites drop one, and 39% of
    those are relevant against 68% of the rest (docs/benchmarks.md)."""
    out = []
    for q, r in zip(queries, rewrites, strict=True):
        wanted = named_values(q, ctx.attribute_values)
        if not is_well_formed(r):
            out.append(0.0)
        elif not wanted:
            out.append(1.0)
        else:
            out.append(len(wanted & named_values(r, ctx.attribute_values)) / len(wanted))
    return out


RewardFunction = Callable[..., list[float]]

REWARDS: dict[str, RewardFunction] = {
    "relevance": relevance,
    "hit_rate": hit_rate,
    "relevant_hit_rate": relevant_hit_rate,
    "increment": increment,
    "well_formed": well_formed,
    "length": length,
    "not_copy": not_copy,
    "no_repeats": no_repeats,
    "no_drift": no_drift,
    "keeps_values": keeps_values,
}

DEFAULT_WEIGHTS: dict[str, float] = {
    "relevance": 1.0,
    "hit_rate": 1.0,
    "relevant_hit_rate": 0.0,
    "increment": 0.5,
    "well_formed": 0.25,
    "length": 0.25,
    "not_copy": 0.5,
    "no_repeats": 1.0,
    "no_drift": 0.5,
    "keeps_values": 0.0,
}


def catalog_vocabulary(catalog: Any) -> tuple[frozenset[str], frozenset[str]]:
    """Normalised brand names and product-type names of a catalog DataFrame."""

    def names(column: str) -> frozenset[str]:
        if column not in catalog:
            return frozenset()
        values = catalog[column].dropna().astype(str).unique()
        return frozenset(n for n in (normalize_query(v) for v in values) if n)

    return names("brand"), names("product_type")


def attribute_values(catalog: Any) -> frozenset[str]:
    """The one-word colours, materials and genders a catalog DataFrame's columns hold,
    normalised (none for an imported catalog, which has titles only)."""
    values: set[str] = set()
    for column in ("colour", "material", "gender"):
        if column in catalog:
            for v in catalog[column].dropna().astype(str).unique():
                n = normalize_query(v)
                if n and " " not in n:
                    values.add(n)
    return frozenset(values)


def trl_reward(name: str, ctx: RewardContext) -> Callable[..., list[float]]:
    """Adapt registry function ``name`` to TRL's reward signature ``(prompts, completions,
    **dataset_columns)``; the adapter carries the name TRL logs it under (``rewards/<name>``)."""
    fn = REWARDS[name]

    def reward(prompts: Any, completions: Any, query: Sequence[str], **columns: Any) -> list[float]:
        rewrites = [parse_rewrite(c) for c in completions]
        return fn(list(query), rewrites, ctx, **columns)

    reward.__name__ = name
    reward.__doc__ = fn.__doc__
    return reward
