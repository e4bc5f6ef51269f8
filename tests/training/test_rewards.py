"""Every reward function on hand-computed cases, and the TRL adapter."""

from __future__ import annotations

import pandas as pd
import pytest

from qrewrite.training.prompts import is_well_formed
from qrewrite.training.rewards import (
    DEFAULT_WEIGHTS,
    REWARDS,
    RewardContext,
    attribute_values,
    catalog_vocabulary,
    hit_rate,
    increment,
    keeps_values,
    length,
    no_drift,
    no_repeats,
    not_copy,
    relevance,
    relevant_hit_rate,
    trl_reward,
    well_formed,
)

# what a tiny engine "retrieves" for each text
RETRIEVED = {
    "running shoes": frozenset({"P1", "P2", "P3"}),
    "red running shoes": frozenset({"P1", "P4"}),
    "sneakers": frozenset({"P5"}),
    "": frozenset(),
}


def ctx(**kw) -> RewardContext:
    seen: list[tuple[str, str]] = []

    def judge(queries, rewrites):
        seen.extend(zip(queries, rewrites, strict=True))
        return [0.9 if "shoes" in r else 0.1 for r in rewrites]

    c = RewardContext(
        judge=judge,
        retrieve=lambda texts: [RETRIEVED.get(t, frozenset()) for t in texts],
        brands=frozenset({"aeroflex", "trailhawk"}),
        product_types=frozenset({"running shoes", "sneakers", "boots"}),
        **kw,
    )
    c.seen = seen  # type: ignore[attr-defined]
    return c


def test_registry_names_match_functions_and_default_weights() -> None:
    assert set(DEFAULT_WEIGHTS) == set(REWARDS)
    for name, fn in REWARDS.items():
        assert fn.__name__ == name and fn.__doc__


def test_relevance_asks_the_judge_only_for_well_formed_rewrites() -> None:
    c = ctx()
    out = relevance(
        ["runing shoe", "runing shoe", "x"], ["running shoes", "grade: relevant", "sneakers"], c
    )
    assert out == [0.9, 0.0, 0.1]
    assert c.seen == [("runing shoe", "running shoes"), ("x", "sneakers")]


def test_hit_rate_is_the_share_of_purchases_retrieved() -> None:
    out = hit_rate(
        ["q", "q", "q"],
        ["running shoes", "red running shoes", "sneakers"],
        ctx(),
        purchased=[["P1", "P2"], ["P1", "P2"], []],
        relevant=[["P9"], ["P9"], ["P5", "P6"]],
    )
    # 2/2; 1/2; nothing bought -> share of relevant: 1/2
    assert out == [1.0, 0.5, 0.5]


def test_relevant_hit_rate_weighs_hits_by_the_judge() -> None:
    out = relevant_hit_rate(
        ["q", "q", "q"],
        ["running shoes", "sneakers", "grade: relevant"],
        ctx(),
        purchased=[["P1", "P2"], ["P5"], ["P1"]],
        relevant=[[], [], []],
    )
    # judge 0.9 x 2/2; judge 0.1 x 1/1; malformed -> judged 0
    assert out == pytest.approx([0.9, 0.1, 0.0])


def test_hit_rate_without_targets_is_zero() -> None:
    assert hit_rate(["q"], ["sneakers"], ctx(), purchased=[[]], relevant=[[]]) == [0.0]


def test_increment_counts_relevant_products_only_the_rewrite_finds() -> None:
    out = increment(
        ["q", "q", "q"],
        ["red running shoes", "running shoes", "sneakers"],
        ctx(),
        relevant=[["P1", "P4", "P7"], ["P1", "P4"], ["P5"]],
        original_retrieved=[["P1"], ["P1", "P4"], ["P2"]],
    )
    # missed {P4, P7}: P4 found -> 1/2; original missed nothing -> 0; missed {P5}, found -> 1
    assert out == [0.5, 0.0, 1.0]


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("red running shoes", True),
        ("", False),
        ("   ", False),
        ("shoes\nboots", False),
        ("query: shoes", False),
        ("relevant", False),
        ("shoes<|im_end|>", False),
    ],
)
def test_well_formed(text: str, ok: bool) -> None:
    assert is_well_formed(text) is ok
    assert well_formed(["q"], [text], ctx()) == [1.0 if ok else 0.0]


def test_length_bounds_are_inclusive() -> None:
    c = ctx(min_words=2, max_words=3)
    assert length(["q"] * 4, ["a", "a b", "a b c", "a b c d"], c) == [0.0, 1.0, 1.0, 0.0]


def test_not_copy_normalises_before_comparing() -> None:
    assert not_copy(["Running  Shoes", "running shoes"], ["running shoes", "sneakers"], ctx()) == [
        0.0,
        1.0,
    ]


def test_a_reordered_or_stuttered_query_is_a_copy() -> None:
    queries = ["cat grass", "cat grass", "cowboy boot", "cowboy boots"]
    rewrites = ["grass cat", "grass cat cat", "cowboy boots", "western cowboy boots"]
    assert not_copy(queries, rewrites, ctx()) == [0.0, 0.0, 0.0, 1.0]


def test_no_repeats_scores_a_stutter_zero_unless_the_query_repeats_it() -> None:
    queries = ["boyfriend jeans", "cowboy boots", "2 pack 2 in 1 cable", "oak desk"]
    rewrites = ["anime jeans jeans", "cowboy boot boots", "2 pack 2 in 1 usb cable", "oak desk"]
    assert no_repeats(queries, rewrites, ctx()) == [0.0, 0.0, 1.0, 1.0]


def test_no_drift_catches_new_brands_and_other_product_types() -> None:
    out = no_drift(
        ["aeroflex running shoes", "running shoes", "running shoes", "joe", "trailhawk boots"],
        ["aeroflex running shoes red", "trailhawk running shoes", "boots", "coffee beans", "boots"],
        ctx(),
    )
    # same brand ok; new brand; other type; query names no type; brand and type kept
    assert out == [1.0, 0.0, 0.0, 1.0, 1.0]


def test_keeps_values_counts_the_numbers_and_attribute_values_kept() -> None:
    c = ctx(attribute_values=frozenset({"blue", "cotton", "red"}))
    out = keeps_values(
        [
            "blue jump rope under 20",  # the price bound dropped
            "100% cotton jeans size 10",  # a share is no value; the size and material kept
            "jeans",  # nothing to keep
            "red running shoes 9.5",
            "blue mug",
        ],
        ["blue jump rope", "cotton jeans size 10", "denim", "running shoes size 9.5", ""],
        c,
    )
    # half kept; all kept; none named; the size kept, the colour lost; malformed
    assert out == [0.5, 1.0, 1.0, 0.5, 0.0]


def test_attribute_values_are_the_catalog_one_word_colours_materials_genders() -> None:
    catalog = pd.DataFrame(
        {
            "colour": ["Navy", "Snow White", None],
            "material": ["Cotton", "Cotton", "Suede"],
            "gender": ["Women", "Men", "Unisex"],
            "feature": ["laces", "waterproof", "laces"],  # what a product has, not a value
        }
    )
    assert attribute_values(catalog) == {"navy", "cotton", "suede", "women", "men", "unisex"}
    assert attribute_values(pd.DataFrame({"title": ["an imported title"]})) == frozenset()


def test_catalog_vocabulary_is_normalised() -> None:
    brands, types = catalog_vocabulary(
        pd.DataFrame({"brand": ["AeroFlex", None], "product_type": ["Running Shoes", "Boots"]})
    )
    assert brands == {"aeroflex"} and types == {"running shoes", "boots"}


def test_trl_adapter_parses_completions_and_passes_columns() -> None:
    reward = trl_reward("hit_rate", ctx())
    assert reward.__name__ == "hit_rate"
    out = reward(
        prompts=[[{"role": "user", "content": "x"}]] * 2,
        completions=[
            [{"role": "assistant", "content": " running shoes "}],
            [{"role": "assistant", "content": "sneakers<|im_end|>"}],
        ],
        query=["q", "q"],
        purchased=[["P1"], ["P1"]],
        relevant=[["P1"], ["P1"]],
        original_retrieved=[[], []],
        clicked=[[], []],
        trainer_state=None,
    )
    assert out == [1.0, 0.0]
