"""Query-length rewrites from product titles: the words of the titles that answer a query.

A title names the product type and its attributes in the catalog's own words ("Oakhaus
Bookshelf, Black"), but it is no query: too long, a brand the shopper never typed. Reduced to
the query's words in the titles' spelling plus the words most of those titles share, it is a
rewrite that a shopper could have typed ("bookshelf blak" -> "bookshelf black",
"black bookshelf" -> "black bookshelf oakhaus"). Two miners use it:

- ``engaged_title_rewrite`` (any log): the titles of the products bought or carted after the
  query (:func:`engaged_title_rewrites`); the purchases are the rewrite's conversion evidence;
- ``judged_title`` (a judged import, :mod:`qrewrite.mining.judged`): the titles people graded
  relevant.
"""

from __future__ import annotations

import re
from collections import Counter

import pandas as pd

from qrewrite.text import (
    JOINING_WORDS,
    closeness,
    normalize_query,
    one_edit_apart,
    tokenize,
    trigrams,
)

ENGAGED_TITLE_REWRITE = "engaged_title_rewrite"
# a title's words; a hyphenated word is one ("non-stick", "t-shirt"), as the query writes it
_WORD = re.compile(r"[0-9a-z]+(?:-[0-9a-z]+)*")
# never the product or an attribute: joining words, and units, sizes and pack words without
# their number
STOPWORDS = JOINING_WORDS | frozenset(
    ("w", "x", "your", "our", "new", "set", "pack", "pc", "pcs", "inch", "ft", "oz", "lb", "size")
)
_CANDIDATE_COLUMNS = (
    "query",
    "rewrite",
    "source",
    "score",
    "support",
    "shared_purchases",
    "shared_clicks",
    "product_id",
)
CLOSE_SPELLING = 0.5  # trigram Jaccard at which a title word is the query word's spelling


def title_words(text: str) -> list[str]:
    """The words of a title, lower-case, apostrophes dropped, hyphenated words kept whole.

    >>> title_words("Bellwood Non-Stick Saucepan, Men's")
    ['bellwood', 'non-stick', 'saucepan', 'mens']
    """
    return _WORD.findall(normalize_query(text).replace("'", ""))


def _joined(word: str) -> str:
    return word.replace("-", "")


def reduce_titles(
    query: str, titles: list[str], *, max_rewrites: int = 3, min_share: float = 0.5
) -> list[str]:
    """Query-length rewrites of ``query`` from titles that answer it: its words in the
    titles' spelling, then that plus the one or two words at least ``min_share`` of the titles
    (and at least two) share. A query word with a digit or a sign ("100%", "12oz") is kept as
    written; rewrites with the query's words again (plural, case) are left out.

    >>> reduce_titles("runing shoe", ["Trail Running Shoe", "Trail Running Shoe Men", "Road Shoe"])
    ['running shoe', 'running shoe trail']
    >>> reduce_titles("100% cotton tee", ["Halden Cotton Tee", "Halden T-Shirt Cotton Tee"])
    ['100% cotton tee halden']
    """
    words_of = [list(dict.fromkeys(title_words(t))) for t in titles]
    vocab = sorted({w for ws in words_of for w in ws})
    grams = [trigrams(w) for w in vocab]
    stems = set(tokenize(" ".join(vocab)))
    counts = Counter(w for ws in words_of for w in ws)
    fixed = []
    for w in normalize_query(query).split():
        if w in vocab or set(tokenize(w)) <= stems or not w.isalpha() or len(w) < 3:
            fixed.append(w)
            continue
        # the titles' most frequent word one edit away, else the closest by trigrams
        near = [v for v in vocab if len(v) >= 4 and one_edit_apart(w, v)]
        best = max(range(len(vocab)), key=lambda i: len(trigrams(w) & grams[i]), default=None)
        if near:
            fixed.append(max(near, key=lambda v: (counts[v], v)))
        elif best is not None and closeness(w, [grams[best]]) >= CLOSE_SPELLING:
            fixed.append(vocab[best])
        else:
            fixed.append(w)
    base = list(dict.fromkeys(fixed))
    base_stems = set(tokenize(" ".join(base)))  # "bag" adds nothing to "sleeping bags"
    base_joined = {_joined(w) for w in base}  # nor "non-stick" to "nonstick"
    first_at = {w: min(ws.index(w) for ws in words_of if w in ws) for w in counts}
    need = max(2, min_share * len(titles))
    shared = [
        w
        for w, n in sorted(counts.items(), key=lambda kv: (-kv[1], first_at[kv[0]], kv[0]))
        if n >= need
        and not set(tokenize(w)) & base_stems
        and _joined(w) not in base_joined
        and w not in STOPWORDS
        and _joined(w).isalpha()
        and len(w) > 2
    ]
    out: list[str] = []
    for extra in range(0, 3):
        if extra > len(shared):
            break
        text = " ".join(base + shared[:extra])
        # the same words for the engine (plural, case) are no rewrite
        if tokenize(text) != tokenize(query) and text not in out:
            out.append(text)
    return out[:max_rewrites]


def engaged_title_rewrites(
    engaged: pd.DataFrame, *, max_rewrites_per_query: int = 3, min_share: float = 0.5
) -> pd.DataFrame:
    """Candidates from the titles of the products bought or carted after each query.

    ``engaged`` has one row per (query, product): query, title, purchases, carts, clicks (the
    miner's ``engaged_titles``). Each query's titles are reduced by :func:`reduce_titles`; a
    rewrite's support is the purchases and carts of those titles, its score that support over
    its rank (1, 1/2, 1/3). Columns: query, rewrite, source, score, support, shared_purchases
    (purchases of the titled products), shared_clicks, product_id (none: the rewrite is a
    query, not a title).
    """
    rows = []
    for query, group in engaged.groupby("query", sort=True):
        purchases, clicks = int(group["purchases"].sum()), int(group["clicks"].sum())
        support = purchases + int(group["carts"].sum())
        rewrites = reduce_titles(
            str(query),
            group["title"].astype(str).tolist(),
            max_rewrites=max_rewrites_per_query,
            min_share=min_share,
        )
        for rank, rewrite in enumerate(rewrites):
            score = support / (rank + 1)
            rows.append((query, rewrite, ENGAGED_TITLE_REWRITE, score, support, purchases, clicks))
    out = pd.DataFrame(rows, columns=list(_CANDIDATE_COLUMNS[:-1]))
    out["product_id"] = None
    return out
