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


def test_ties_at_the_page_edge_keep_the_lowest_document_indices() -> None:
    # 40 identical titles tie for every slot: which ones bm25s keeps depends on the CPU's sort
    # kernels; the page must hold documents 0-9 in order on every machine
    titles = ["Nordvik Men's Running Shoes, Black"] * 40 + ["Bruvva Coffee, 1 lb"] * 5
    engine = LexicalSearchEngine(titles)
    idx, score = engine.search(["running shoes", "coffee", "black coffee"], k=10)
    assert idx[0].tolist() == list(range(10))
    assert idx[1].tolist() == [40, 41, 42, 43, 44] + [NO_RESULT] * 5
    # a stronger match first, then the tied ones by index
    assert idx[2, :5].tolist() == [40, 41, 42, 43, 44] and idx[2, 5:].tolist() == list(range(5))
    assert score[2, 0] > score[2, 5] > 0


def test_pages_match_every_documents_score_ranked_by_score_then_index() -> None:
    rng = np.random.default_rng(0)
    words = ["red", "blue", "shoe", "boot", "coffee", "decaf", "mens", "womens"]
    titles = [" ".join(rng.choice(words, size=rng.integers(1, 4))) for _ in range(300)]
    queries = [" ".join(rng.choice(words, size=2)) for _ in range(50)]
    engine = LexicalSearchEngine(titles)
    idx, score = engine.search(queries, k=10)
    for q, row, row_scores in zip(queries, idx, score, strict=True):
        every = engine.scores(q)
        expected = np.lexsort((np.arange(len(titles)), -every))[:10]
        expected = [int(d) if every[d] > 0 else NO_RESULT for d in expected]
        assert row.tolist() == expected, q
        assert np.array_equal(row_scores[row != NO_RESULT], every[row[row != NO_RESULT]])
