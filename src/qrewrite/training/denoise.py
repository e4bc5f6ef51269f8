"""Conditional pretraining pairs made for free from the shop's own text: a noisy query -> its clean
form, in the rewrite task's own prompt.

A small model pretrained only as a language model learns what shop text looks like, not that an
answer depends on the prompt: on some seeds SFT then never learns to read the query and its
rewrites ignore it. Denoising pairs teach the reading first, with the catalog's words as the
target vocabulary:

- **query forms from the catalog**: each product named as a shopper would name it, its type plus
  a few of its attributes in catalog words ("mens green denim trousers size xl"), read from the
  attribute columns and the title (the title's leftover head words are the feature: "lace up");
  a product without a type (an imported catalog has titles only) is named by one to three
  words of its title's head, in order ("nike air max shoes" -> "nike shoes");
- **queries from the logs** (eval-split queries left out), as typed;
- each clean text corrupted as shoppers corrupt queries: typing errors, shopper words for catalog
  values (the synonyms the teacher's lexicon mines from the logs), words in another order, filler
  words ("cheap", "near me", also mined), truncated words. The model answers the clean text.

Nothing here reads the simulator: every input is a catalog column, a logged query, or a rule
about keyboards.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from qrewrite.text import JOINING_WORDS, normalize_query

_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")


def _keyboard_neighbours() -> dict[str, str]:
    """Letters next to each other on a QWERTY keyboard: the same row, and the two keys touching
    from the row above and the row below (each row sits half a key to the right of the one
    above it)."""
    out: dict[str, str] = {}
    for r, row in enumerate(_ROWS):
        for c, ch in enumerate(row):
            near = {row[j] for j in (c - 1, c + 1) if 0 <= j < len(row)}
            if r > 0:
                near |= {_ROWS[r - 1][j] for j in (c, c + 1) if j < len(_ROWS[r - 1])}
            if r + 1 < len(_ROWS):
                near |= {_ROWS[r + 1][j] for j in (c - 1, c) if 0 <= j < len(_ROWS[r + 1])}
            out[ch] = "".join(sorted(near))
    return out


KEYBOARD_NEIGHBOURS = _keyboard_neighbours()

# How often a shopper's query names each attribute it could name (a rough prior; SFT teaches
# the shop's own mix)
FORM_RATES = {"brand": 0.25, "gender": 0.45, "colour": 0.4, "feature": 0.3, "material": 0.25}
SIZE_RATE, PRICE_RATE = 0.2, 0.08


@dataclass
class NoiseConfig:
    """How clean texts are corrupted (rates per text, or per word where said)."""

    typo: float = 0.12  # per word of four letters or more
    synonym: float = 0.5  # per word that has a mined shopper synonym
    truncate: float = 0.03  # per word of five letters or more: "medium" -> "med"
    reorder: float = 0.25
    filler: float = 0.2
    min_changed: float = 0.85  # share of pairs whose input differs from the answer


def typo(word: str, rng: np.random.Generator) -> str:
    """One typing error inside ``word``: a dropped, doubled or swapped letter, or a neighbouring
    key; the first letter stays, as shoppers keep it. Words under four letters, and words with
    digits, are left alone."""
    if len(word) < 4 or not word.isalpha():
        return word
    i = int(rng.integers(1, len(word) - 1))
    op = int(rng.integers(4))
    if op == 0:
        out = word[:i] + word[i + 1 :]
    elif op == 1:
        out = word[:i] + word[i] + word[i:]
    elif op == 2 and i + 1 < len(word):  # two letters swapped (never the first)
        out = word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    else:
        near = KEYBOARD_NEIGHBOURS.get(word[i], "")
        out = word[:i] + (near[int(rng.integers(len(near)))] if near else "") + word[i + 1 :]
    return out if out != word else word[:i] + word[i + 1 :]


def corrupt(
    text: str,
    rng: np.random.Generator,
    noise: NoiseConfig,
    shopper_words: dict[str, list[str]],
    filler: Sequence[str],
) -> str:
    """``text`` as a shopper might type it. ``shopper_words`` maps a catalog word to the shopper
    words that mean it ("black" -> ["blk"])."""
    words = text.split()
    out: list[str] = []
    for w in words:
        alts = shopper_words.get(w)
        if alts and rng.random() < noise.synonym:
            w = alts[int(rng.integers(len(alts)))]
        elif len(w) >= 5 and w.isalpha() and rng.random() < noise.truncate:
            w = w[:3]
        elif rng.random() < noise.typo:
            w = typo(w, rng)
        out.append(w)
    if len(out) > 1 and rng.random() < noise.reorder:
        out = [out[i] for i in rng.permutation(len(out))]
    if filler and rng.random() < noise.filler:
        f = filler[int(rng.integers(len(filler)))]
        out = [f, *out] if rng.random() < 0.5 else [*out, f]
    return " ".join(out)


_WORD = re.compile(r"[0-9a-z]+")
_APOSTROPHES = re.compile(r"['’`´]")


def _words(value: object) -> str:
    """Lower-case words as a shopper types them ("Men's" -> "mens"; no stemming)."""
    if value is None or pd.isna(value):
        return ""
    return " ".join(_WORD.findall(_APOSTROPHES.sub("", normalize_query(str(value)))))


def _feature_phrase(title: str, named: set[str]) -> str:
    """The words of the title's head ("Brand Men's White Lace-Up Canvas Running Shoes", before
    " - " or ",") that name no column value: the product's feature ("lace up")."""
    head = title.split(" - ", 1)[0].split(",", 1)[0]
    return " ".join(t for t in _words(head).split() if t not in named)


def size_words(value: object) -> str:
    """A size as shoppers and titles say it: "size 10", "size xl"; a size with a unit or a
    device name ("12 oz", "pixel 8") as it is."""
    size = _words(value)
    return size if not size or " " in size else f"size {size}"


def gender_words(value: object) -> str:
    """ "Men" -> "mens", "Women" -> "womens"; "Kids" and "Unisex" as they are."""
    gender = _words(value)
    return f"{gender}s" if gender in ("men", "women") else gender


TITLE_FORM_WORDS = (1, 2, 3)
TITLE_FORM_RATES = (0.2, 0.5, 0.3)


def title_form(title: str, rng: np.random.Generator) -> str:
    """One to three words of the title's head (before " - ", "," or "|"), in the title's order:
    how a shopper names a product whose catalog row has a title only."""
    head = re.split(r" - |,|\||\(", title, maxsplit=1)[0]
    words = [w for w in _words(head).split() if w not in JOINING_WORDS]
    if not words:
        return ""
    k = min(len(words), int(rng.choice(TITLE_FORM_WORDS, p=TITLE_FORM_RATES)))
    return " ".join(words[i] for i in sorted(rng.choice(len(words), size=k, replace=False)))


def query_forms(catalog: pd.DataFrame, n: int, rng: np.random.Generator) -> list[str]:
    """``n`` query-length names of random catalog products: the type and a few attributes, or,
    for a product without a type, a few words of its title."""
    rows = catalog.to_dict("records")
    out: list[str] = []
    for i in rng.integers(len(rows), size=n):
        p = rows[int(i)]
        ptype = _words(p.get("product_type"))
        if not ptype:
            form = title_form(str(p.get("title") or ""), rng)
            if form:
                out.append(form)
            continue
        parts = {a: _words(p.get(a)) for a in ("brand", "colour", "material")}
        parts["gender"] = gender_words(p.get("gender"))
        named = {t for v in (*parts.values(), ptype, _words(p.get("size"))) for t in v.split()}
        named |= {"size", "for"}
        parts["feature"] = (
            _feature_phrase(str(p.get("title", "")), named) if p.get("has_feature") else ""
        )
        pre = [
            parts[a]
            for a in ("brand", "gender", "colour", "feature", "material")
            if parts[a] and rng.random() < FORM_RATES[a]
        ]
        post = []
        size = size_words(p.get("size"))
        if size and rng.random() < SIZE_RATE:
            post.append(size)
        price = p.get("price")
        if price is not None and not pd.isna(price) and rng.random() < PRICE_RATE:
            post.append(f"under {int(math.ceil(float(price) / 10.0) * 10 + 10)}")
        out.append(" ".join([*pre, ptype, *post]))
    return out


def shopper_word_map(synonyms: dict[str, tuple[str, str]]) -> dict[str, list[str]]:
    """Mined synonyms (shopper word -> (attribute, catalog value)) turned around: each catalog
    word with the shopper words for it. Multi-word values are left out."""
    out: dict[str, list[str]] = {}
    for word, (_, value) in sorted(synonyms.items()):
        target = _words(value)
        if target and " " not in target and word != target:
            out.setdefault(target, []).append(word)
    return out


def denoising_pairs(
    catalog: pd.DataFrame,
    queries: Sequence[str],
    *,
    n_pairs: int,
    synonyms: dict[str, tuple[str, str]],
    filler: Sequence[str],
    noise: NoiseConfig,
    seed: int,
    query_share: float = 0.3,
) -> list[tuple[str, str]]:
    """``n_pairs`` (noisy, clean) pairs: catalog query forms and (a ``query_share`` of) logged
    queries, each with its corruption. Seeded: the same inputs give the same pairs."""
    rng = np.random.default_rng(seed)
    shopper_words = shopper_word_map(synonyms)
    fill = sorted(set(filler))
    logged = sorted({normalize_query(q) for q in queries if q and q.strip()})
    n_logged = round(n_pairs * query_share) if logged else 0
    clean = query_forms(catalog, n_pairs - n_logged, rng)
    clean += [logged[int(i)] for i in rng.integers(len(logged), size=n_logged)] if n_logged else []
    pairs = []
    for target in clean:
        noisy = corrupt(target, rng, noise, shopper_words, fill)
        if noisy == target and rng.random() < noise.min_changed:
            # one more, stronger try: a pair that changes nothing teaches copying
            strong = NoiseConfig(typo=0.5, synonym=1.0, truncate=0.0, reorder=0.5, filler=0.5)
            noisy = corrupt(target, rng, strong, shopper_words, fill)
        pairs.append((noisy, target))
    order = rng.permutation(len(pairs))
    return [pairs[i] for i in order]


def shop_denoising_pairs(
    catalog: pd.DataFrame,
    query_stats: pd.DataFrame,
    candidates: pd.DataFrame,
    *,
    exclude_queries: set[str],
    n_pairs: int,
    seed: int,
    query_share: float = 0.3,
) -> list[tuple[str, str]]:
    """:func:`denoising_pairs` for a shop: its catalog, its logged queries (``query_stats``) and
    the shopper synonyms and filler words the teacher's lexicon mines from its mined rewrite
    ``candidates``. Queries in ``exclude_queries`` (normalised) are neither targets nor
    evidence, and no pair has one as its input or its answer."""
    from qrewrite.labeling.lexicon import CatalogLexicon, mine_filler_words, mine_synonyms

    queries = [
        q for q in query_stats["query"].astype(str) if normalize_query(q) not in exclude_queries
    ]
    product_ids = (
        candidates["product_id"] if "product_id" in candidates else [None] * len(candidates)
    )
    query_pairs = [
        (q, r)
        for q, r, pid in zip(
            candidates["query"].astype(str),
            candidates["rewrite"].astype(str),
            product_ids,
            strict=True,
        )
        if (pid is None or pd.isna(pid))
        and normalize_query(q) not in exclude_queries
        and normalize_query(r) not in exclude_queries
    ]
    lexicon = CatalogLexicon(catalog)
    synonyms = mine_synonyms(lexicon, query_pairs)
    # a word the catalog itself prints has its own meaning there: no synonym for another value
    synonyms = {w: v for w, v in synonyms.items() if w not in lexicon.token_counts}
    lexicon.add_synonyms(synonyms)
    filler = mine_filler_words(lexicon, queries)
    pairs = denoising_pairs(
        catalog,
        queries,
        n_pairs=n_pairs,
        synonyms=synonyms,
        filler=sorted(filler),
        noise=NoiseConfig(),
        seed=seed,
        query_share=query_share,
    )
    # a catalog form can read like a held-out query, and a corruption can land on one
    return [
        (noisy, clean)
        for noisy, clean in pairs
        if normalize_query(noisy) not in exclude_queries
        and normalize_query(clean) not in exclude_queries
    ]
