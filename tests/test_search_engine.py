import numpy as np

from qrewrite.search_engine import NO_RESULT, LexicalSearchEngine

TITLES = [
    "Nordvik Men's Running Shoes - Lace-Up, Black, Size 10",
    "Bruvva Decaf Coffee, 12 oz",
    "Bruvva Coffee, 1 lb",
    "Stridex Women's Sandals, Red",
]


def test_best_lexical_match_ranks_first() -> None:
    idx, score = LexicalSearchEngine(TITLES).search(["mens running shoes", "decaf coffee"], k=3)
    assert idx[0, 0] == 0
    assert idx[1, 0] == 1 and idx[1, 1] == 2  # both coffees match, decaf ranks first
    assert score[1, 0] > score[1, 1] > 0


def test_queries_without_known_tokens_retrieve_nothing() -> None:
    idx, score = LexicalSearchEngine(TITLES).search(["kicks", "", "zzz qqq"], k=2)
    assert (idx == NO_RESULT).all() and (score == 0).all()


def test_pages_are_padded_and_deterministic() -> None:
    engine = LexicalSearchEngine(TITLES)
    a, _ = engine.search(["coffee"], k=10)
    b, _ = engine.search(["coffee"], k=10)
    assert a.shape == (1, 10)
    assert np.array_equal(a, b)
    assert list(a[0, :2]) == [1, 2] or list(a[0, :2]) == [2, 1]
    assert (a[0, 2:] == NO_RESULT).all()
