"""Conditional pretraining pairs: corruptions a shopper makes, clean forms from the catalog."""

from __future__ import annotations

import numpy as np
import pandas as pd

from qrewrite.training.denoise import (
    KEYBOARD_NEIGHBOURS,
    NoiseConfig,
    corrupt,
    denoising_pairs,
    gender_words,
    query_forms,
    shopper_word_map,
    size_words,
    typo,
)

CATALOG = pd.DataFrame(
    {
        "product_id": ["p1", "p2"],
        "title": [
            "Aeroflex Men's White Lace-Up Canvas Running Shoes - Comfortable, Size 10",
            "Ferro Black Non-Stick Saucepan - Professional",
        ],
        "product_type": ["Running Shoes", "Saucepan"],
        "brand": ["Aeroflex", "Ferro"],
        "colour": ["White", "Black"],
        "material": ["Canvas", None],
        "size": ["10", None],
        "gender": ["Men", None],
        "price": [82.2, 53.0],
        "feature": ["laces", "nonstick"],
        "has_feature": [True, True],
    }
)


def test_keyboard_neighbours_are_adjacent_keys() -> None:
    assert KEYBOARD_NEIGHBOURS["q"] == "aw"
    assert KEYBOARD_NEIGHBOURS["h"] == "bgjnuy"
    assert KEYBOARD_NEIGHBOURS["m"] == "jkn"


def test_typo_changes_one_letter_of_long_words_only() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        out = typo("saucepan", rng)
        assert out != "saucepan"
        assert abs(len(out) - len("saucepan")) <= 1
        assert out[0] == "s"  # the first letter is kept, as shoppers keep it
    assert typo("tea", rng) == "tea"
    assert typo("12oz", rng) == "12oz"


def test_query_forms_name_the_type_and_only_the_products_own_attributes() -> None:
    forms = query_forms(CATALOG, 300, np.random.default_rng(1))
    assert len(forms) == 300
    shoes = [f for f in forms if "running shoes" in f]
    pans = [f for f in forms if f.endswith("saucepan") or "saucepan " in f]
    assert shoes and pans and len(shoes) + len(pans) == 300
    allowed = {"aeroflex", "mens", "white", "lace", "up", "canvas", "running", "shoes", "size"}
    allowed |= {"10", "under"}
    for f in shoes:
        assert set(f.split()) - allowed <= {w for w in f.split() if w.isdigit()}
        words = f.split()
        if "10" in words:  # a bare number is a size only with its word
            assert words[words.index("10") - 1] == "size"
    # the feature comes from the title's head, the words no column names
    assert any("lace up" in f for f in shoes)
    assert any("non stick" in f for f in pans)


def test_sizes_and_genders_as_titles_say_them() -> None:
    assert [size_words(v) for v in ("10", "XL", "12 oz", "Pixel 8", None)] == [
        "size 10",
        "size xl",
        "12 oz",
        "pixel 8",
        "",
    ]
    assert [gender_words(v) for v in ("Men", "Women", "Kids", "Unisex")] == [
        "mens",
        "womens",
        "kids",
        "unisex",
    ]


def test_corrupt_uses_shopper_words_and_filler() -> None:
    rng = np.random.default_rng(2)
    noise = NoiseConfig(typo=0.0, synonym=1.0, truncate=0.0, reorder=0.0, filler=1.0)
    out = corrupt("black boots", rng, noise, {"boots": ["hikers"]}, ["cheap"])
    assert set(out.split()) == {"black", "hikers", "cheap"}


def test_shopper_word_map_turns_mined_synonyms_around() -> None:
    mined = {"hikers": ("product_type", "Boots"), "blk": ("colour", "Black")}
    mined["tee"] = ("product_type", "T Shirt")  # a multi-word value is left out
    assert shopper_word_map(mined) == {"boots": ["hikers"], "black": ["blk"]}


def test_denoising_pairs_are_seeded_and_mostly_change_the_input() -> None:
    kwargs = dict(
        n_pairs=400,
        synonyms={"sneaks": ("product_type", "Running Shoes")},
        filler=["cheap"],
        noise=NoiseConfig(),
        query_share=0.25,
    )
    queries = ["sneakers for the gym", "pan for eggs"]
    a = denoising_pairs(CATALOG, queries, seed=5, **kwargs)
    assert a == denoising_pairs(CATALOG, queries, seed=5, **kwargs)
    assert a != denoising_pairs(CATALOG, queries, seed=6, **kwargs)
    assert len(a) == 400
    changed = sum(noisy != clean for noisy, clean in a) / len(a)
    assert changed >= 0.8
    assert sum(clean in queries for _, clean in a) == 100  # the logged share


def test_a_catalog_of_titles_only_is_named_by_words_of_its_titles() -> None:
    import numpy as np
    import pandas as pd

    from qrewrite.training.denoise import query_forms

    catalog = pd.DataFrame(
        {"title": ["Nike Air Max Running Shoes - Men's, Size 10", "The Coffee Maker with Timer"]}
    )
    forms = query_forms(catalog, 200, np.random.default_rng(0))
    assert len(forms) == 200  # every product named, none skipped for lacking a type
    head_words = {"nike", "air", "max", "running", "shoes", "coffee", "maker", "timer"}
    assert all(1 <= len(f.split()) <= 3 and set(f.split()) <= head_words for f in forms)
    assert "nike shoes" in forms  # words kept in the title's order


def test_denoising_texts_ask_under_the_chosen_instruction(tiny_model) -> None:
    from qrewrite.training.models import load_tokenizer
    from qrewrite.training.pretrain import denoising_texts
    from qrewrite.training.prompts import NORMALIZE_INSTRUCTION, REWRITE_INSTRUCTION

    tok = load_tokenizer(tiny_model)
    pairs = [("red shoez", "red shoes")]
    (rewrite,) = denoising_texts(tok, pairs)
    (normalize,) = denoising_texts(tok, pairs, "normalize")
    assert REWRITE_INSTRUCTION in rewrite and NORMALIZE_INSTRUCTION not in rewrite
    assert NORMALIZE_INSTRUCTION in normalize and REWRITE_INSTRUCTION not in normalize
    for text in (rewrite, normalize):
        assert text.index("red shoez") < text.rindex("red shoes")  # the clean form answers


def test_denoising_pairs_grow_with_the_shops_vocabulary_up_to_the_cap() -> None:
    from qrewrite.training.pretrain import PretrainConfig

    plain = PretrainConfig(denoise_pairs=20000)
    assert plain.pairs_for(50_000) == 20000  # no per-word rule: the fixed number
    scaled = PretrainConfig(denoise_pairs=20000, denoise_pairs_per_word=6, denoise_pairs_max=100000)
    assert scaled.pairs_for(1_117) == 20000  # the simulator's shop: at least denoise_pairs
    assert scaled.pairs_for(10_771) == 64626  # Crowdflower's titles
    assert scaled.pairs_for(40_000) == 100000  # capped
