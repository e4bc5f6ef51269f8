"""Query normalisation and tokenisation shared by mining, the search engine and evaluation.

Every step that compares queries must normalise them the same way, so this module is the only
place that defines it (documented in docs/data.md#query-normalisation).
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Collection, Iterable

_WHITESPACE = re.compile(r"\s+")
# Characters a shopper cannot see: C0/C1 controls other than whitespace, NUL among them,
# zero-width characters and joiners, bidi marks and embeddings, the byte-order mark. Removed, so
# that "running\u200b shoes" and "running shoes" are one query and one made of them is empty.
INVISIBLE = re.compile(
    "[\x00-\x08\x0e-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]"
)
_TOKEN = re.compile(r"[0-9a-z]+")
# Apostrophes inside words ("men's") are dropped rather than split so "men's" == "mens".
_APOSTROPHES = re.compile(r"['’`´]")


# words that join a title's parts; never a product's name or attribute on their own
JOINING_WORDS = frozenset(
    ("a", "an", "and", "as", "at", "by", "for", "from", "in", "of", "on", "or", "the", "to", "with")
)


def normalize_query(text: str) -> str:
    """Remove invisible characters (:data:`INVISIBLE`), NFKC-normalise, case-fold, and
    collapse/strip whitespace.

    NFKC folds compatibility forms (full-width letters, ligatures, non-breaking spaces) that
    shoppers' keyboards and copy-paste produce; case-folding is Unicode-aware lower-casing.
    """
    visible = INVISIBLE.sub("", text)
    return _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", visible).casefold()).strip()


def _light_stem(token: str) -> str:
    # A deliberately small stemmer: plural "s" only. Production lexical engines stem; a richer
    # stemmer would hide the lexical gap that query rewriting exists to close.
    if len(token) > 3 and token.endswith("s") and not token.endswith("ss"):
        return token[:-1]
    return token


def tokenize(text: str) -> list[str]:
    """Tokens the lexical engine indexes and matches: normalised alphanumerics, plural-stemmed."""
    text = _APOSTROPHES.sub("", normalize_query(text))
    return [_light_stem(t) for t in _TOKEN.findall(text)]


# letters and digits of any script: a word of a query in Chinese or with accents counts too
_ANY_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The words of ``text`` as the lexical engine compares them (normalised, no apostrophes,
    plural-stemmed), in any script: :func:`tokenize` for Latin text, and the letters
    :func:`tokenize` leaves out ("café", "连衣裙") kept as words of their own."""
    text = _APOSTROPHES.sub("", normalize_query(text))
    return [_light_stem(t) for t in _ANY_WORD.findall(text)]


def catalog_word_counts(titles: Iterable[str]) -> Counter[str]:
    """How many of ``titles`` write each word (:func:`words`): the spellings a shop uses.

    >>> catalog_word_counts(["Ironpeak Dumbbells 20 lb", "Ironpeak Yoga Mat"])["ironpeak"]
    2
    """
    return Counter(w for title in titles for w in set(words(title)))


def repeated_words(query: str, rewrite: str) -> list[str]:
    """The words ``rewrite`` holds more often than ``query``: a stutter, which retrieves
    nothing the words once would not.

    >>> repeated_words("cowboy boots", "cowboy boot boots")
    ['boot']
    """
    have = Counter(words(query))
    return sorted(w for w, n in Counter(words(rewrite)).items() if n > max(1, have[w]))


def same_words(query: str, rewrite: str) -> bool:
    """Does ``rewrite`` name the query's words and no others, in any order or number? To a
    lexical engine it is the query again ("grass cat cat" for "cat grass"). False for a query
    without words ("!!!"): only its text can be copied."""
    mine = set(words(query))
    return bool(mine) and mine == set(words(rewrite))


def is_copy(query: str, rewrite: str) -> bool:
    """Is ``rewrite`` the query again: the same text after normalisation, or its words and no
    others (:func:`same_words`)? The one test of a copy for ranking, metrics and rewards.

    >>> is_copy("cat grass", "Grass  cat cat"), is_copy("!!!", "!!!"), is_copy("cat", "cats bed")
    (True, True, False)
    """
    return normalize_query(query) == normalize_query(rewrite) or same_words(query, rewrite)


@functools.lru_cache(maxsize=1 << 18)
def trigrams(word: str) -> frozenset[str]:
    """Character trigrams of ``word`` with boundary marks: what spelling closeness compares."""
    w = f"#{word}#"
    return frozenset(w[i : i + 3] for i in range(len(w) - 2))


def closeness(word: str, others: list[frozenset[str]]) -> float:
    """Best character-trigram Jaccard of ``word`` against ``others`` (1.0 for the same word):
    "sneakr" is close to "sneaker", "red" is far from "bed"."""
    g = trigrams(word)
    return max((len(g & o) / len(g | o) for o in others), default=0.0)


def deletions(word: str) -> set[str]:
    """``word`` with one letter left out, each way: two words are one edit apart (insertion,
    deletion, substitution, adjacent transposition) when their deletion sets meet, or one is
    in the other's."""
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def one_edit_apart(a: str, b: str) -> bool:
    if a == b or abs(len(a) - len(b)) > 1:
        return False
    da, db = deletions(a), deletions(b)
    return a in db or b in da or bool(da & db)


# a shorter word one edit from another is as often a different word ("red", "bed") as a typo
MIN_RESPELT_LETTERS = 4

# a hyphenated word as written ("t-shirt", "x-large")
_HYPHENATED = re.compile(r"[^\W_]+(?:-[^\W_]+)+")


def respells(query: str, rewrite: str) -> bool:
    """Does ``rewrite`` only correct the spelling of the query: the same words in the same
    order, at least one of them respelt by one edit (a word of at least
    :data:`MIN_RESPELT_LETTERS` letters, no digits: "20 lb" is never "30 lb"), or the same
    letters with the spaces moved ("ear buds", "earbuds") and every hyphenated word kept
    whole ("t-shirt" is never "tshirt": the shop wrote its hyphen)? A correction of this kind
    keeps everything the shopper asked for.

    >>> respells("ironpeak dumbgells 20 lb", "ironpeak dumbbells 20 lb")
    True
    >>> respells("blu saucpan", "blue coffee"), respells("red mug", "bed mug")
    (False, False)
    """
    mine, theirs = words(query), words(rewrite)
    if mine == theirs:
        return False
    if "".join(mine) == "".join(theirs):
        written = normalize_query(rewrite)
        return all(h in written for h in _HYPHENATED.findall(normalize_query(query)))
    return len(mine) == len(theirs) and all(
        a == b or (len(a) >= MIN_RESPELT_LETTERS and (a + b).isalpha() and one_edit_apart(a, b))
        for a, b in zip(mine, theirs, strict=True)
    )


def corrects_to_catalog(query: str, answer: str, catalog_words: Collection[str]) -> bool:
    """Does ``answer`` fix the query's spelling with the catalog's own words: the query's words
    in any order, each word no title writes (:func:`catalog_word_counts`) replaced by one a
    title writes one edit away (a word of at least :data:`MIN_RESPELT_LETTERS` letters, no
    digits), and nothing else changed? The rule a search engine's spelling check uses; the
    order is free, since the engine ignores it.

    >>> shop = {"purelle", "shampoo", "8", "oz", "croc"}
    >>> corrects_to_catalog("puurelle 8 oz shampoo", "purelle shampoo 8 oz", shop)
    True
    >>> corrects_to_catalog("crocs", "cros", shop), corrects_to_catalog("puurelle", "shampoo", shop)
    (False, False)
    """
    mine, theirs = Counter(words(query)), Counter(words(answer))
    dropped, added = list((mine - theirs).elements()), list((theirs - mine).elements())
    if not dropped or len(dropped) != len(added):
        return False
    if any(w in catalog_words for w in dropped) or any(w not in catalog_words for w in added):
        return False
    # each word no title writes takes one of the added words, one edit from it
    free = list(added)
    for w in dropped:
        match = next(
            (
                a
                for a in free
                if len(a) >= MIN_RESPELT_LETTERS and (w + a).isalpha() and one_edit_apart(w, a)
            ),
            None,
        )
        if match is None:
            return False
        free.remove(match)
    return True
