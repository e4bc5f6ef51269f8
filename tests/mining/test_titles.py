"""Query-length rewrites from the titles of products bought after a query
(``engaged_title_rewrite``)."""

from pathlib import Path

import pandas as pd
import pytest

from qrewrite.mining.config import MiningConfig
from qrewrite.mining.mine import mine
from qrewrite.mining.titles import engaged_title_rewrites, reduce_titles
from tests.mining.logs import search, write_market

SHELVES = ["Oakhaus Bookshelf, Black", "Oakhaus Black Bookshelf - 5-Shelf", "Modula Grey Bookshelf"]


def test_the_query_keeps_its_words_and_gains_what_most_titles_share() -> None:
    assert reduce_titles("black bookshelf", SHELVES) == ["black bookshelf oakhaus"]
    assert reduce_titles("bookshelf blak", SHELVES) == [
        "bookshelf black",
        "bookshelf black oakhaus",
    ]
    # a word with a digit or sign is kept as written, never split ("100%" is not "100")
    tees = ["Halden Cotton Tee", "Halden T-Shirt Cotton Tee"]
    assert reduce_titles("100% cotton tee", tees) == ["100% cotton tee halden"]
    # a hyphenated title word is one word: the query that writes it joined takes the titles'
    # spelling (what the engine indexes), and is not given it twice
    pans = ["Bellwood Non-Stick Saucepan, Red", "Ferro Non-Stick Saucepan"]
    assert reduce_titles("nonstick saucepan", pans) == ["non-stick saucepan"]
    assert reduce_titles("red saucepan", pans) == ["red saucepan non-stick"]
    # a size, unit or pack word without its number is never the attribute added
    jeans = ["Halden Jeans, Blue, Size L", "Urbanloom Jeans, Blue, Size M"]
    assert reduce_titles("jeans", jeans) == ["jeans blue"]


def test_candidates_carry_their_titles_purchases_and_nothing_when_asked_for_none() -> None:
    engaged = pd.DataFrame(
        {
            "query": ["black bookshelf"] * 3 + ["mug"],
            "title": [*SHELVES, "Cucina Mug"],
            "purchases": [2, 1, 0, 1],
            "carts": [2, 1, 1, 1],
            "clicks": [3, 1, 2, 1],
        }
    )
    got = engaged_title_rewrites(engaged)
    assert got[["query", "rewrite", "source"]].values.tolist() == [
        ["black bookshelf", "black bookshelf oakhaus", "engaged_title_rewrite"]
    ]
    row = got.iloc[0]
    assert (row["support"], row["shared_purchases"], row["shared_clicks"]) == (7, 3, 6)
    assert row["score"] == pytest.approx(7.0) and row["product_id"] is None
    none = engaged_title_rewrites(engaged, max_rewrites_per_query=0)
    assert none.empty and list(none.columns) == list(got.columns)


def test_mining_reduces_the_engaged_titles_and_can_be_switched_off(tmp_path: Path) -> None:
    catalog = pd.DataFrame({"product_id": ["B1", "B2", "B3"], "title": SHELVES})
    log = [
        *search(1, 10, 0, "black bookshelf", [("B1", "cb"), ("B3", "")]),
        *search(2, 20, 0, "black bookshelf", [("B2", "cab")]),
        *search(3, 30, 0, "bookshelf", [("B3", "c")]),  # clicked only: no engaged title
    ]
    data = write_market(tmp_path / "data", log, catalog)
    report = mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "on")
    cands = pd.read_parquet(tmp_path / "on" / "rewrite_candidates.parquet")
    titled = cands[cands["source"] == "engaged_title_rewrite"]
    assert titled[["query", "rewrite"]].values.tolist() == [
        ["black bookshelf", "black bookshelf oakhaus"]
    ]
    assert titled["product_id"].isna().all() and (titled["query_searches"] == 2).all()
    assert titled["shared_purchases"].item() == 2  # B1 and B2, one purchase each
    assert report.candidates["engaged_title_rewrite"] == 1
    off = mine(MiningConfig(engaged_title_rewrites=False), data_dir=data, out_dir=tmp_path / "off")
    assert off.candidates["engaged_title_rewrite"] == 0
    assert off.candidates["engaged_title"] == report.candidates["engaged_title"] == 2
