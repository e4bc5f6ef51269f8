import numpy as np
import pandas as pd
import pytest

from qrewrite.market.truth import grade_products

CATALOG = pd.DataFrame(
    [
        # product_type, brand, colour, material, size, gender, price, feature, has_feature
        ("Running Shoes", "Nordvik", "Black", "Mesh", "10", "Men", 80.0, "laces", True),
        ("Running Shoes", "Nordvik", "Red", "Mesh", "10", "Men", 80.0, "laces", True),
        ("Running Shoes", "Stridex", "Red", "Mesh", "10", "Men", 80.0, "laces", True),
        ("Sneakers", "Nordvik", "Black", "Mesh", "10", "Men", 70.0, "laces", True),
        ("Sneakers", "Nordvik", "Red", "Mesh", "10", "Men", 70.0, "laces", True),
        ("Running Shoes", "Nordvik", "Black", "Mesh", "10", "Women", 80.0, "laces", True),
        ("Running Shoes", "Nordvik", "Black", "Mesh", "10", "Unisex", 80.0, "laces", True),
        ("Running Shoes", "Nordvik", "Black", "Mesh", "10", "Men", 80.0, "laces", False),
        ("Coffee", "Bruvva", None, "Organic", "1 lb", None, 14.0, "caffeine", True),
        ("Running Shoes", "Nordvik", "Black", "Mesh", "10", "Men", 200.0, "laces", True),
    ],
    columns=[
        "product_type",
        "brand",
        "colour",
        "material",
        "size",
        "gender",
        "price",
        "feature",
        "has_feature",
    ],
)
CATALOG["has_feature"] = CATALOG["has_feature"].astype("boolean")

INTENT = {
    "category": "Footwear",
    "product_type": "Running Shoes",
    "brand": "Nordvik",
    "colour": "Black",
    "material": None,
    "size": None,
    "gender": "Men",
    "feature": "laces",
    "feature_required": False,
    "price_max": 100.0,
}


def test_grading_rules() -> None:
    # The intent is "nordvik mens black running shoes without laces, under 100".
    grades = grade_products(INTENT, CATALOG)
    expected = [
        0,  # has laces though the shopper excluded them: a lost negation is irrelevant
        0,
        0,
        0,
        0,  # (same, plus colour/brand/type mismatches)
        0,  # women's shoes for a men's query: hard conflict
        0,  # unisex fits men, but it has laces
        2,  # exactly the intent
        0,  # another category
        0,  # laces again (and over budget)
    ]
    assert list(grades) == expected


@pytest.mark.parametrize(
    ("row", "grade"),
    [
        (0, 2),  # everything matches
        (1, 1),  # one soft mismatch (colour): a close substitute
        (2, 0),  # two soft mismatches (brand and colour)
        (3, 1),  # a declared substitute type, nothing else off
        (4, 0),  # substitute type with a mismatch
        (5, 0),  # wrong gender
        (6, 2),  # unisex serves a men's query
        (8, 0),  # another product type entirely
        (9, 1),  # over the price limit counts as one soft mismatch
    ],
)
def test_single_rules(row: int, grade: int) -> None:
    intent = {**INTENT, "feature": None, "feature_required": None}
    assert grade_products(intent, CATALOG)[row] == grade


def test_grades_are_int8_in_range() -> None:
    g = grade_products(INTENT, CATALOG)
    assert g.dtype == np.int8 and set(np.unique(g)) <= {0, 1, 2}


def test_rewrite_intent_grade_is_the_median_over_what_the_rewrite_retrieves() -> None:
    from qrewrite.market.truth import fully_matching_products, grade_rewrite_intents

    intents = pd.DataFrame(
        [
            # 0: nordvik running shoes; 1: running shoes (any brand, broader);
            # 2: red running shoes; 3: women's running shoes; 4: coffee
            ("Footwear", "Running Shoes", "Nordvik", None, None, None, None, None, None, None),
            ("Footwear", "Running Shoes", None, None, None, None, None, None, None, None),
            ("Footwear", "Running Shoes", None, "Red", None, None, None, None, None, None),
            ("Footwear", "Running Shoes", None, None, None, None, "Women", None, None, None),
            ("Grocery", "Coffee", None, None, None, None, None, None, None, None),
        ],
        columns=[
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
        ],
    )
    intents["feature_required"] = intents["feature_required"].astype("boolean")
    intents["price_max"] = intents["price_max"].astype(float)
    matches = fully_matching_products(intents, CATALOG, np.array([2]))
    assert list(matches[2]) == [1, 2]  # the red running shoes
    grades = grade_rewrite_intents(
        intents, CATALOG, np.array([0, 0, 0, 0, 1]), np.array([0, 1, 2, 4, 0])
    )
    # same intent: 2. Broader "running shoes" retrieves shoes that are mostly Nordvik: median 2.
    # "red running shoes" retrieves a Nordvik (2) and a Stridex (1) pair: median 1.5 -> 1.
    # Coffee: 0. Narrower "nordvik running shoes" for plain "running shoes": 2.
    assert list(grades) == [2, 2, 1, 0, 2]
