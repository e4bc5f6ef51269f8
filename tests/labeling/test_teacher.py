import json

import numpy as np
import pandas as pd
import pytest

from qrewrite.labeling.teacher import Teacher, grade_distribution, lower_median
from qrewrite.market.catalog import generate_catalog
from tests.labeling.fakes import TrigramEncoder


@pytest.fixture(scope="module")
def teacher() -> Teacher:
    return Teacher(generate_catalog(3000, np.random.default_rng(3)), encoder=TrigramEncoder())


def _grade(teacher: Teacher, rows: list[dict]) -> pd.DataFrame:
    pairs = pd.DataFrame(rows)
    return pd.concat([pairs, teacher.grade(pairs, learn=False)], axis=1)


def test_distribution_and_median() -> None:
    assert grade_distribution(0, [], []) == [0.0, 0.0, 1.0]
    assert grade_distribution(1, [], []) == [0.0, 1.0, 0.0]
    d = grade_distribution(0, [0.8], [])  # a dropped colour most products do not have
    assert d == pytest.approx([0.0, 0.8, 0.2]) and lower_median(d) == 1
    assert lower_median([0.0, 0.5, 0.5]) == 1  # a tie rounds down, like the truth's median
    assert grade_distribution(0, [], [1.0])[0] == 1.0


def test_guideline_cases(teacher: Teacher) -> None:
    out = _grade(
        teacher,
        [
            {"query": "running shoes", "rewrite": "running shoes", "source": "co_engagement"},
            {"query": "running shoes", "rewrite": "nordvik running shoes"},  # narrower
            {"query": "decaf coffee", "rewrite": "coffee"},  # lost negation
            {"query": "coffee without caffeine", "rewrite": "decaf coffee"},
            {"query": "mens running shoes", "rewrite": "womens running shoes"},  # gender
            {"query": "running shoes", "rewrite": "frying pan"},  # another type
            {"query": "black running shoes", "rewrite": "running shoes"},  # broader by a colour
        ],
    )
    assert list(out["grade"]) == [2, 2, 0, 2, 0, 0, 1]
    probs = out[["p_irrelevant", "p_partial", "p_relevant"]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0)
    assert (probs.argmax(axis=1) == out["grade"].to_numpy()).all()
    lost = out.iloc[2]["signals"]
    assert lost["dropped"] == ["feature:caffeine"]
    json.dumps(list(out["signals"]))  # signals are JSON-able


def test_a_misspelt_type_conflicts_like_a_spelt_one(teacher: Teacher) -> None:
    # GRPO once learned "ironpeak dumbgells 20 lb" -> "ironpeak green handbag 20 lb": the
    # typo left the query's type a guess, and the teacher graded the handbag partly relevant
    out = _grade(
        teacher,
        [
            {"query": "ironpeak dumbgells 20 lb", "rewrite": "ironpeak green handbag 20 lb"},
            {"query": "ironpeak dumbgells 20 lb", "rewrite": "ironpeak dumbbells 20 lb"},
            {"query": "cfofee beans", "rewrite": "frying pan"},  # a short word's fix: a guess
        ],
    )
    assert list(out["grade"])[:2] == [0, 2]
    assert out.iloc[0]["signals"]["hard"] == ["product_type"]
    assert out.iloc[2]["signals"]["soft"] == ["product_type?"]


def test_title_pairs_use_the_catalog_attributes(teacher: Teacher) -> None:
    catalog = teacher.catalog
    shoe = catalog[(catalog["product_type"] == "Running Shoes")].iloc[0]
    other_colour = next(c for c in ("Black", "Red", "Blue", "White") if c != shoe["colour"])
    out = _grade(
        teacher,
        [
            {
                "query": f"{shoe['colour']} running shoes",
                "rewrite": shoe["title"],
                "product_id": shoe["product_id"],
            },
            {
                "query": f"{other_colour} running shoes",
                "rewrite": shoe["title"],
                "product_id": shoe["product_id"],
            },
            {"query": "coffee", "rewrite": shoe["title"], "product_id": shoe["product_id"]},
        ],
    )
    assert list(out["grade"]) == [2, 1, 0]


def test_behaviour_is_evidence_for_relevance(teacher: Teacher) -> None:
    base = {"query": "zorbly shoes", "rewrite": "sneakers"}
    out = _grade(
        teacher,
        [
            {**base, "source": "co_engagement", "shared_purchases": 0},
            {**base, "source": "session_reformulation", "shared_purchases": 3},
        ],
    )
    assert out["p_relevant"].iloc[1] > out["p_relevant"].iloc[0]


def test_hard_conflicts_beat_behaviour(teacher: Teacher) -> None:
    out = _grade(
        teacher,
        [
            {
                "query": "mens running shoes",
                "rewrite": "womens running shoes",
                "source": "session_reformulation",
                "shared_purchases": 10,
            }
        ],
    )
    assert out["grade"].item() == 0


def test_catalog_without_types_lets_closeness_decide_titles() -> None:
    """Imported catalogs (ESCI-like) have titles and brands but no product types."""
    catalog = pd.DataFrame(
        {
            "product_id": ["A", "B"],
            "title": ["Nordvik Running Shoes for Men", "Bruvva Ground Coffee Medium Roast"],
            "brand": ["Nordvik", "Bruvva"],
        }
    )
    teacher = Teacher(catalog, encoder=TrigramEncoder())
    out = _grade(
        teacher,
        [
            {
                "query": "nordvik running shoes men",
                "rewrite": "Nordvik Running Shoes for Men",
                "product_id": "A",
            },
            {
                "query": "nordvik running shoes men",
                "rewrite": "Bruvva Ground Coffee Medium Roast",
                "product_id": "B",
            },
        ],
    )
    assert out["grade"].iloc[0] > out["grade"].iloc[1]
    assert out["signals"].iloc[0]["similarity"] > out["signals"].iloc[1]["similarity"]
