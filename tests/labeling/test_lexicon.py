import numpy as np
import pandas as pd
import pytest

from qrewrite.labeling.lexicon import CatalogLexicon, mine_filler_words, mine_synonyms
from qrewrite.market.catalog import generate_catalog


@pytest.fixture(scope="module")
def lexicon() -> CatalogLexicon:
    return CatalogLexicon(generate_catalog(3000, np.random.default_rng(3)))


def test_reads_catalog_attributes(lexicon: CatalogLexicon) -> None:
    r = lexicon.read("Nordvik mens black running shoes size 10")
    assert r.attributes == {
        "brand": "Nordvik",
        "gender": "Men",
        "colour": "Black",
        "product_type": "Running Shoes",
        "size": "10",
    }
    assert r.unknown == [] and r.guessed == set()
    assert lexicon.read("body wash 16oz").attributes["size"] == "16 oz"
    assert lexicon.read("mug 10").attributes == {"product_type": "Mug"}  # bare number: no size


def test_corrects_typos_and_marks_them_guessed(lexicon: CatalogLexicon) -> None:
    r = lexicon.read("cfofee beans")
    assert r.attributes["product_type"] == "Coffee" and r.corrected == 1
    assert "product_type" in r.guessed
    assert lexicon.read("blu mug").attributes["colour"] == "Blue"  # a missing letter
    assert lexicon.correct("bean") is None  # short words are not "fixed" into other words


def test_a_long_words_single_fix_is_read_not_guessed(lexicon: CatalogLexicon) -> None:
    # "dumbgells" is one edit from one catalog word only: as good as reading "dumbbells";
    # "cfofee" (six letters) stays a guess (above)
    r = lexicon.read("ironpeak dumbgells 20 lb")
    assert r.attributes["product_type"] == "Dumbbells" and r.corrected == 1
    assert r.guessed == set()


def test_feature_words_and_negations(lexicon: CatalogLexicon) -> None:
    assert lexicon.feature_words["caffeine"]["absent"] == {("decaf",)}
    assert lexicon.read("decaf coffee").features == {"caffeine": False}
    assert lexicon.read("coffee without caffeine").features == {"caffeine": False}
    assert lexicon.read("lace up sneakers").features == {"laces": True}
    assert lexicon.read("sneakers no laces").features == {"laces": False}
    assert lexicon.read("non stick frying pan").features == {"nonstick": True}
    assert lexicon.read("fragrance free shampoo").features == {"fragrance": False}
    # a feature of another product type is not read into this one
    assert lexicon.read("fragrance free coffee").features == {}


def test_price_limits(lexicon: CatalogLexicon) -> None:
    assert lexicon.read("mug under $20").price_max == 20.0
    assert lexicon.read("mug less than 15 dollars").price_max == 15.0
    assert lexicon.read("mug less than 15 dollars").unknown == []
    assert lexicon.read("mug 20").price_max is None


def test_synonyms_are_learned_from_aligned_pairs(lexicon: CatalogLexicon) -> None:
    slang = {"kicks": "sneakers", "joe": "coffee", "rucksack": "backpack", "cuppa": "tea"}
    colours = {"navy": "blue", "crimson": "red", "charcoal": "grey", "blush": "pink"}
    pairs = [
        (f"{w} {extra}".strip(), f"{t} {extra}".strip())
        for w, t in slang.items()
        for extra in ("", "cheap", "nordvik", "size 9")
    ]
    pairs += [
        (f"{w} {t}", f"{c} {t}")
        for w, c in colours.items()
        for t in ("shorts", "jacket", "backpack", "mug")
    ]
    pairs += [("cheap mug", "nordvik mug")] * 3
    learned = mine_synonyms(lexicon, pairs)
    assert learned["kick"] == ("product_type", "Sneakers")
    assert learned["joe"] == ("product_type", "Coffee")
    assert learned["navy"] == ("colour", "Blue")
    assert learned["charcoal"] == ("colour", "Grey")
    assert "cheap" not in learned  # it only ever lines up with a brand: brands get no synonyms
    small = CatalogLexicon(
        pd.DataFrame(
            {
                "product_id": ["1"],
                "title": ["Blue Sneakers"],
                "product_type": ["Sneakers"],
                "colour": ["Blue"],
            }
        )
    )
    small.add_synonyms(learned)
    r = small.read("navy kicks")
    assert r.attributes == {"colour": "Blue", "product_type": "Sneakers"}
    assert r.guessed == {"colour", "product_type"}


def test_filler_words_span_product_types(lexicon: CatalogLexicon) -> None:
    queries = [f"cheap {t.lower()}" for t in lexicon.product_types] + ["zorbly mug"]
    filler = mine_filler_words(lexicon, queries)
    assert "cheap" in filler and "zorbly" not in filler


def test_letter_sizes_are_read_in_every_common_spelling(lexicon: CatalogLexicon) -> None:
    for text in ("t-shirt size xl", "t-shirt xl", "t-shirt x-large", "t-shirt extra large"):
        assert lexicon.read(text).attributes == {"product_type": "T-Shirt", "size": "XL"}, text
        assert lexicon.read(text).unknown == [], text
    for text in ("t-shirt xxl", "t-shirt 2xl", "t-shirt xx-large", "t-shirt size 2xl"):
        assert lexicon.read(text).attributes["size"] == "XXL", text
    assert lexicon.read("jeans x-small").attributes["size"] == "XS"
    # the longest spelling wins: "x-large" is XL, not L
    assert lexicon.read("hoodie x-large").attributes["size"] == "XL"
    # a bare single letter stays ambiguous ("m" could be anything); it needs its "size" word
    assert "size" not in lexicon.read("t-shirt m").attributes
    assert lexicon.read("t-shirt size m").attributes["size"] == "M"


def test_a_filler_word_is_no_synonym_of_a_rare_value(lexicon: CatalogLexicon) -> None:
    # "affordable" is unread in many pairs and lines up with "12 Count" only a few times by
    # chance: the value is rare, so share and lift alone would make it a synonym
    types = ("mug", "jacket", "shorts", "backpack", "tea", "sneakers")
    pairs = [(f"affordable {t}", f"black {t}") for t in types] * 5
    pairs += [(f"affordable {t}", f"{t} 12 count") for t in ("tea", "coffee", "protein bars")]
    # words that do name sizes, for the base rates
    pairs += [(f"huge {t}", f"{t} size xl") for t in ("jacket", "t-shirt", "hoodie", "shorts")] * 2
    pairs += [(f"tiny {t}", f"{t} size xs") for t in ("jacket", "t-shirt", "hoodie", "shorts")] * 2
    pairs += [(f"pintsize {t}", f"{t} 16 oz") for t in ("mug", "shampoo", "coffee", "tea")] * 2
    learned = mine_synonyms(lexicon, pairs)
    assert learned["huge"] == ("size", "XL") and learned["tiny"] == ("size", "XS")
    assert "affordable" not in learned
    # without the support rule, chance makes it one
    assert mine_synonyms(lexicon, pairs, min_support=0.0)["affordable"] == ("size", "12 Count")
