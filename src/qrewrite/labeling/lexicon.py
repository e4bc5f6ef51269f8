"""A lexicon mined from the catalog: which words name which attribute values, and which words say
a product has or lacks a feature. The teacher reads queries through it.

Everything here comes from the catalog a shop already has (attribute columns and titles), never
from the simulator's vocabulary of shopper slang, so the same code works on a real catalog.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field

import pandas as pd

from qrewrite.text import tokenize

ATTRIBUTES = ("product_type", "brand", "colour", "material", "size", "gender")
SOFT_ATTRIBUTES = ("brand", "colour", "material", "size")
# "non" is no negator here: catalogs print "Non-Stick" and "Non-Slip" as features.
NEGATORS = frozenset({"without", "no", "not", "zero"})
# "x free", "x less" after a feature word say the product lacks it.
NEGATING_SUFFIXES = frozenset({"free", "less"})
_STOPWORDS = frozenset(
    {"with", "on", "up", "free", "non", "for", "and", "the", "of", "a", "in", "to", "by"}
)
# Price limits ("under 50", "less than 20 dollars") are not catalog words but are not unknown.
_PRICE = re.compile(r"\b(under|below|less than|max|upto|up to)\s+(\d+)")
PRICE_WORDS = frozenset({"under", "below", "less", "than", "dollar", "max", "cheaper", "upto"})
GENDER_COMPATIBLE = {("Unisex", "Men"), ("Unisex", "Women"), ("Men", "Unisex"), ("Women", "Unisex")}
# Letter sizes as any shopper spells them: "XL" is also "x-large", "extra large"; "XXL" is also
# "2xl", "xx-large". General apparel convention, not a shop's own words; without it the "x" of
# "x-large" is unread and "t-shirt x-large" -> "t-shirt size xxl" looks like a narrower rewrite.
_LETTER_SIZE = re.compile(r"^(x*|[2-5]x)(s|l)$")
_LETTER_SIZE_WORDS = {"s": "small", "l": "large"}
# a typo fix of a word this long with one catalog word in reach is read, not guessed: a type it
# names can conflict ("ironpeak dumbgells" is not "ironpeak handbag")
SURE_FIX_LETTERS = 7


@dataclass
class Reading:
    """What the lexicon understood of one text."""

    tokens: list[str]
    attributes: dict[str, str] = field(default_factory=dict)  # attribute -> catalog value
    features: dict[str, bool] = field(default_factory=dict)  # feature -> present (False: absent)
    unknown: list[str] = field(default_factory=list)  # tokens the catalog never uses
    corrected: int = 0  # tokens fixed by the typo corrector
    inferred_type: bool = False  # product type guessed by the encoder, not read
    guessed: set[str] = field(default_factory=set)  # attributes read through mined synonyms
    price_max: float | None = None  # "under 50", "less than 20 dollars"


def _gram_counts(rows: list[list[str]]) -> Counter:
    """In how many of ``rows`` each word and each pair of adjacent words occurs."""
    counts: Counter = Counter()
    for toks in rows:
        counts.update({(t,) for t in toks} | set(itertools.pairwise(toks)))
    return counts


def _deletions(token: str) -> set[str]:
    return {token[:i] + token[i + 1 :] for i in range(len(token))}


def _letter_size_forms(size: str) -> list[tuple[str, ...]]:
    """The spellings of a letter size ("xl", "xxl", "3xl"): its "size" form always; the bare
    letters when there are two or more ("xl" names nothing else, a bare "l" or "m" could); and
    the spelled-out forms with "x", "extra", "2x"."""
    match = _LETTER_SIZE.match(size)
    assert match is not None
    xs, base = match.group(1), match.group(2)
    n = int(xs[0]) if xs[:1].isdigit() else len(xs)
    word = _LETTER_SIZE_WORDS[base]
    forms: list[tuple[str, ...]] = [("size", size)]
    if n == 0:
        return forms
    letters = "x" * n + base
    forms += [(letters,), ("size", letters), ("x" * n, word), ("extra",) * n + (word,)]
    if n >= 2:
        forms += [(f"{n}x{base}",), ("size", f"{n}x{base}")]
    return list(dict.fromkeys(forms))


class CatalogLexicon:
    """Attribute forms, feature words and a typo corrector, all mined from one catalog."""

    def __init__(self, catalog: pd.DataFrame, min_feature_lift: float = 4.0) -> None:
        self.filler: set[str] = set()
        self.synonym_forms: set[tuple[str, ...]] = set()
        self.forms: dict[tuple[str, ...], tuple[str, str]] = {}
        for attr in ATTRIBUTES:
            if attr not in catalog:
                continue
            for value in catalog[attr].dropna().unique():
                for form in self._forms_of(attr, str(value)):
                    self.forms.setdefault(form, (attr, str(value)))
        self.max_form = max((len(f) for f in self.forms), default=1)
        title_tokens = [tokenize(t) for t in catalog["title"].astype(str)]
        self.token_counts = Counter(t for toks in title_tokens for t in toks)
        for form in self.forms:
            for t in form:
                self.token_counts.setdefault(t, 1)
        attribute_tokens = {t for form in self.forms for t in form if t != "size"}
        self.feature_words = self._mine_feature_words(
            catalog, title_tokens, min_feature_lift, attribute_tokens
        )
        for words in self.feature_words.values():
            for name in words["name"]:
                for t in name:
                    self.token_counts.setdefault(t, 1)
        self._deletion_index: dict[str, list[str]] = {}
        for tok in self.token_counts:
            if len(tok) >= 3 and tok.isalpha():
                for d in _deletions(tok) | {tok}:
                    self._deletion_index.setdefault(d, []).append(tok)
        self.product_types = sorted(
            str(v) for v in catalog.get("product_type", pd.Series(dtype=object)).dropna().unique()
        )

    @staticmethod
    def _forms_of(attr: str, value: str) -> list[tuple[str, ...]]:
        toks = tuple(tokenize(value))
        if not toks:
            return []
        if attr == "size" and len(toks) == 1 and _LETTER_SIZE.match(toks[0]):
            return _letter_size_forms(toks[0])
        if attr == "size" and (len(toks) == 1 or all(t.isdigit() for t in toks)):
            # A bare "10" or "m" is too ambiguous (prices, counts); sizes need their "size" word.
            return [("size", *toks)]
        if len(toks) == 2 and toks[0].isdigit():
            return [toks, (toks[0] + toks[1],)]  # "16 oz" is also typed "16oz"
        return [toks]

    @staticmethod
    def _mine_feature_words(
        catalog: pd.DataFrame,
        title_tokens: list[list[str]],
        min_lift: float,
        attribute_tokens: set[str],
    ) -> dict[str, dict[str, set[tuple[str, ...]]]]:
        """Per feature: its own name, the product types that have it, and the shortest title
        phrases (one or two words) that mark presence or absence. A phrase marks a side when it
        is ``min_lift`` times more frequent there and on at least 30% of that side's titles.
        Words that name catalog attributes (types, colours, ...) are never markers: they
        co-occur with features by chance only."""
        out: dict[str, dict[str, set[tuple[str, ...]]]] = {}
        if "feature" not in catalog or "has_feature" not in catalog:
            return out
        for feature in catalog["feature"].dropna().unique():
            rows = catalog.index[catalog["feature"] == feature]
            has = catalog.loc[rows, "has_feature"].astype("boolean")
            pos_rows = [title_tokens[i] for i in rows[has.fillna(False).to_numpy()]]
            neg_rows = [title_tokens[i] for i in rows[(~has.fillna(True)).to_numpy()]]
            if not pos_rows or not neg_rows:
                continue
            name = tuple(tokenize(str(feature)))
            pos, neg = _gram_counts(pos_rows), _gram_counts(neg_rows)
            qualifying: dict[str, set[tuple[str, ...]]] = {"present": set(), "absent": set()}
            for gram in set(pos) | set(neg):
                if gram == name or any(t in attribute_tokens for t in gram):
                    continue
                if all(t in _STOPWORDS for t in gram):
                    continue
                p = (pos[gram] + 0.5) / (len(pos_rows) + 1)
                n = (neg[gram] + 0.5) / (len(neg_rows) + 1)
                if p / n >= min_lift and p >= 0.3:
                    qualifying["present"].add(gram)
                elif n / p >= min_lift and n >= 0.3:
                    qualifying["absent"].add(gram)
            entry: dict[str, set[tuple[str, ...]]] = {"name": {name}}
            for kind, grams in qualifying.items():
                single = {g[0] for g in grams if len(g) == 1 and g[0] not in _STOPWORDS}
                # the shortest phrase that marks the feature: "decaf", not "decaf organic"
                entry[kind] = {(t,) for t in single} | {
                    g for g in grams if len(g) == 2 and not (set(g) & single)
                }
            types = (
                catalog.loc[rows, "product_type"].dropna().unique()
                if ("product_type" in catalog)
                else []
            )
            entry["types"] = {(str(t),) for t in types}
            out[str(feature)] = entry
        return out

    def add_synonyms(self, synonyms: dict[str, tuple[str, str]]) -> None:
        """Teach the lexicon shopper words for catalog values (see :func:`mine_synonyms`)."""
        for word, value in synonyms.items():
            if (word,) not in self.forms:
                self.forms[(word,)] = value
                self.synonym_forms.add((word,))
            self.token_counts.setdefault(word, 1)

    def correct(self, token: str) -> str | None:
        """The most frequent catalog token one edit away."""
        return self._fix(token)[0]

    def _fix(self, token: str) -> tuple[str | None, bool]:
        """:meth:`correct`'s fix, and whether it is as good as reading the word: a long word
        ("dumbgells", "sneekers") one edit from a single catalog word. A short one ("tee" ->
        "tea") or one with several words in reach stays a guess."""
        candidates = self._one_edit_away(token)
        if not candidates:
            return None, False
        fix = max(sorted(candidates), key=lambda c: self.token_counts.get(c, 0))
        return fix, len(token) >= SURE_FIX_LETTERS and len(candidates) == 1

    def _one_edit_away(self, token: str) -> set[str]:
        if len(token) < 3 or not token.isalpha():
            return set()
        # A missing letter ("blu" -> "blue") is always tried; swaps, replacements and extra
        # letters only on words of five letters or more, where they rarely land on another
        # real word ("bean" is one letter from "jean").
        candidates: set[str] = set(self._deletion_index.get(token, []))
        if len(token) >= 5:
            for d in _deletions(token):
                candidates.update(self._deletion_index.get(d, []))
                if d in self.token_counts:
                    candidates.add(d)
        candidates.discard(token)
        return candidates

    def read(self, text: str) -> Reading:
        raw = tokenize(text)
        tokens: list[str] = []
        fixed: set[int] = set()  # positions of fixes that stay guesses
        corrected = 0
        for tok in raw:
            if tok in self.token_counts or tok in NEGATORS or not tok.isalpha():
                tokens.append(tok)
                continue
            fix, sure = self._fix(tok)
            if fix is not None and not sure:
                fixed.add(len(tokens))
            corrected += fix is not None
            tokens.append(fix or tok)
        reading = Reading(tokens=tokens, corrected=corrected)
        used = [False] * len(tokens)
        i = 0
        while i < len(tokens):
            for n in range(min(self.max_form, len(tokens) - i), 0, -1):
                form = tuple(tokens[i : i + n])
                hit = self.forms.get(form)
                if hit is not None:
                    attr, value = hit
                    # The catalog's own words outrank words learned from shoppers.
                    # A short word's typo fix ("tee" -> "tea") can change the meaning: a guess.
                    guess = form in self.synonym_forms or bool(fixed & set(range(i, i + n)))
                    if attr not in reading.attributes or (attr in reading.guessed and not guess):
                        reading.attributes[attr] = value
                        reading.guessed.discard(attr)
                        if guess:
                            reading.guessed.add(attr)
                    used[i : i + n] = [True] * n
                    i += n - 1
                    break
            i += 1
        self._read_features(tokens, used, reading)
        price = _PRICE.search(" ".join(raw))
        if price:
            reading.price_max = float(price.group(2))
            for j, t in enumerate(tokens):
                if t == price.group(2):
                    used[j] = True
        reading.unknown = [
            t
            for t, u in zip(tokens, used, strict=True)
            if not u
            and t not in self.token_counts
            and t not in NEGATORS
            and t.isalpha()
            and t not in self.filler
            and t not in PRICE_WORDS
        ]
        return reading

    def _read_features(self, tokens: list[str], used: list[bool], reading: Reading) -> None:
        ptype = reading.attributes.get("product_type")
        for feature, words in self.feature_words.items():
            # A feature belongs to some product types ("caffeine" to coffee and tea).
            if ptype is not None and (ptype,) not in words["types"]:
                continue
            for i in range(len(tokens)):
                for kind in ("absent", "present", "name"):
                    for form in words[kind]:
                        n = len(form)
                        if tuple(tokens[i : i + n]) != form:
                            continue
                        before = tokens[max(0, i - 2) : i]
                        after = tokens[i + n : i + n + 1]
                        negated = any(t in NEGATORS for t in before) or any(
                            t in NEGATING_SUFFIXES for t in after
                        )
                        present = (kind != "absent") != negated
                        reading.features.setdefault(feature, present)
                        used[i : i + n] = [True] * n
                        for j in range(i + n, min(len(tokens), i + n + 1)):
                            if tokens[j] in NEGATING_SUFFIXES:
                                used[j] = True
                        for j in range(max(0, i - 2), i):
                            if tokens[j] in NEGATORS:
                                used[j] = True


def mine_filler_words(
    lexicon: CatalogLexicon, queries: list[str], min_type_share: float = 0.2, min_types: int = 4
) -> set[str]:
    """Words shoppers add to queries of every kind ("cheap", "deals", "near me"): unknown to the
    catalog and seen with at least ``min_type_share`` of the product types read in ``queries``."""
    spread: dict[str, set[str]] = {}
    types: set[str] = set()
    for q in dict.fromkeys(queries):
        r = lexicon.read(q)
        t = r.attributes.get("product_type")
        if t is None:
            continue
        types.add(t)
        for w in r.unknown:
            spread.setdefault(w, set()).add(t)
    need = max(min_types, int(min_type_share * len(types)))
    return {w for w, ts in spread.items() if len(ts) >= need}


def mine_synonyms(
    lexicon: CatalogLexicon,
    pairs: list[tuple[str, str]],
    min_count: int = 3,
    min_share: float = 0.6,
    min_types_for_values: int = 3,
    min_lift: float = 2.5,
    min_support: float = 0.1,
) -> dict[str, tuple[str, str]]:
    """Shopper words for catalog values, learned from mined pairs: when one side has an unread
    word and the other side names an attribute value the first lacks, they line up. Votes are
    kept per attribute; a word is a synonym of the value it lines up with at least ``min_count``
    times and in ``min_share`` of that attribute's votes. A word for a colour, material, size or
    gender is used with many product types ("navy" shorts, jackets, bags), a word for a product
    type with one or two ("kicks"), so each kind must show that spread. Brands are names and get
    no synonyms (their typos are the corrector's job). A filler word ("affordable", "online")
    lines up with some rare value a few times by chance; a synonym must line up with its value
    in at least ``min_support`` of all the pairs where it is unread."""
    votes: dict[str, dict[str, Counter]] = {}
    unread: Counter = Counter()  # pairs (either direction) in which each word is unread
    types_seen: dict[str, set[str]] = {}
    readings: dict[str, Reading] = {}  # texts recur across pairs: read each once
    for a, b in pairs:
        ra = readings.get(a) or readings.setdefault(a, lexicon.read(a))
        rb = readings.get(b) or readings.setdefault(b, lexicon.read(b))
        for x, y in ((ra, rb), (rb, ra)):
            ptype = y.attributes.get("product_type") or x.attributes.get("product_type")
            for w in set(x.unknown):
                unread[w] += 1
                if ptype:
                    types_seen.setdefault(w, set()).add(ptype)
                for attr, value in y.attributes.items():
                    if attr not in x.attributes and attr != "brand":
                        votes.setdefault(w, {}).setdefault(attr, Counter())[value] += 1
    # Common values ("Men", "Organic") line up with any word by sheer frequency: a synonym must
    # line up ``min_lift`` times more often than the value's base rate among all votes.
    base: dict[str, Counter] = {}
    for by_attr in votes.values():
        for attr, counter in by_attr.items():
            base.setdefault(attr, Counter()).update(counter)
    out: dict[str, tuple[str, str]] = {}
    for w, by_attr in votes.items():
        spread = len(types_seen.get(w, ()))
        best: tuple[float, int, str, str] | None = None
        for attr, counter in by_attr.items():
            if (attr == "product_type") != (spread < min_types_for_values):
                continue
            value, n = max(counter.items(), key=lambda kv: (kv[1], kv[0]))
            share = n / sum(counter.values())
            prior = base[attr][value] / sum(base[attr].values())
            if n < min_count or share < min_share or share / prior < min_lift:
                continue
            if n < min_support * unread[w]:
                continue
            if best is None or (share, n) > best[:2]:
                best = (share, n, attr, value)
        if best is not None:
            out[w] = (best[2], best[3])
    return out
