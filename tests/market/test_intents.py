import numpy as np
import pandas as pd

from qrewrite.market.catalog import generate_catalog
from qrewrite.market.domain import CATEGORIES
from qrewrite.market.intents import generate_intents, misspell, phrase_intent
from qrewrite.text import tokenize


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def test_catalog_has_every_category_and_shop_like_titles() -> None:
    catalog = generate_catalog(3000, np.random.default_rng(0))
    assert len(CATEGORIES) >= 8
    assert set(catalog["category"]) == {c.name for c in CATEGORIES}
    assert catalog["product_id"].is_unique
    first = catalog.iloc[0]
    assert first["title"].startswith(first["brand"])
    assert (catalog["price"] > 0).all()
    # titles carry attributes a lexical engine can match
    has_colour = catalog["colour"].notna()
    assert catalog[has_colour].apply(lambda r: r["colour"] in r["title"], axis=1).all()


def test_misspelling_is_one_typo_away() -> None:
    rng = np.random.default_rng(1)
    for word in ["sneakers", "coffee", "backpack", "shampoo"]:
        for _ in range(20):
            typo = misspell(word, rng)
            assert typo != word
            assert _edit_distance(typo, word) <= 2  # a swap counts as two edits here
    assert misspell("xl", rng) == "xl"  # too short to misspell


def test_canonical_phrasing_uses_catalog_words_and_negation_variants_exist() -> None:
    rng = np.random.default_rng(2)
    catalog = generate_catalog(800, rng)
    intents = generate_intents(catalog, 300, rng)
    for rec in intents.head(50).to_dict("records"):
        ph = phrase_intent(rec, rng, canonical=True)
        assert ph.tags in ("", "price")
        # every canonical token appears in some title of that product type
        titles = catalog.loc[catalog["product_type"] == rec["product_type"], "title"]
        vocab = {t for title in titles for t in tokenize(title)}
        type_tokens = tokenize(rec["product_type"])
        assert set(type_tokens) <= set(tokenize(ph.text)) and set(type_tokens) <= vocab
    negated = intents[intents["feature_required"].eq(False).fillna(False)]
    assert len(negated) > 0
    texts = [
        phrase_intent(rec, rng, canonical=False)
        for rec in negated.to_dict("records")
        for _ in range(10)
    ]
    assert any("negation" in p.tags for p in texts)
    assert pd.Series([p.tags for p in texts]).str.contains("synonym").any()
