"""Rewrite candidates from a judged set: relevant titles reduced to query-length rewrites, and
queries that share relevant products."""

from pathlib import Path

import pandas as pd

from qrewrite.importing.judged import JudgedImportConfig, import_judged
from qrewrite.mining.config import MiningConfig
from qrewrite.mining.judged import judged_candidates
from qrewrite.mining.mine import mine
from qrewrite.mining.titles import reduce_titles
from tests.labeling.fakes import write_judged_tsv


def test_titles_fix_the_spelling_and_add_what_most_of_them_share() -> None:
    titles = ["Solar Bollard Light Black", "LED Bollard Light 24in", "Bollard Light Post", "Chair"]
    assert reduce_titles("bolard", titles) == ["bollard", "bollard light"]
    assert reduce_titles("bollard lights", titles) == []  # "light" adds nothing; no typo
    assert reduce_titles("bollard", titles[:1]) == []  # one title is no consensus
    # never more than asked, and never the query again
    shoes = ["Trail Running Shoes Men", "Trail Running Shoes Women", "Trail Running Shoes Kids"]
    assert reduce_titles("runing shoes", shoes, max_rewrites=2) == [
        "running shoes",
        "running shoes trail",
    ]


def test_only_relevant_judgments_make_candidates() -> None:
    catalog = pd.DataFrame(
        {"product_id": ["a", "b", "c", "d"], "title": ["Red Kettle", "Red Kettle", "Lamp", "X"]}
    )
    judgments = pd.DataFrame(
        {
            "query": ["red kettel", "red kettel", "crimson kettle", "crimson kettle", "lamp"],
            "product_id": ["a", "b", "a", "c", "d"],
            "grade": [2, 2, 2, 0, 1],
        }
    )
    got = judged_candidates(judgments, catalog)
    titles = got[got["source"] == "judged_title"]
    assert titles[["query", "rewrite"]].values.tolist() == [["red kettel", "red kettle"]]
    shared = got[got["source"] == "judged_shared_relevant"]
    assert sorted(map(tuple, shared[["query", "rewrite"]].values.tolist())) == [
        ("crimson kettle", "red kettel"),
        ("red kettel", "crimson kettle"),
    ]
    assert "lamp" not in set(got["query"])  # graded partial only


def test_mining_a_judged_import_counts_the_judged_sources(tmp_path: Path) -> None:
    data = tmp_path / "data"
    src = write_judged_tsv(tmp_path / "j.tsv")
    import_judged(JudgedImportConfig(grade_scale="numeric:1:3"), input_path=src, out_dir=data)
    report = mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "mined")
    assert report.candidates["judged_title"] > 0
    off = mine(MiningConfig(judged_rewrites=False), data_dir=data, out_dir=tmp_path / "off")
    assert off.candidates["judged_title"] == 0
    cands = pd.read_parquet(tmp_path / "mined" / "rewrite_candidates.parquet")
    judged = cands[cands["source"] == "judged_title"]
    assert judged["query_searches"].gt(0).all() and judged["product_id"].isna().all()


def test_the_candidates_contract_knows_every_source(tmp_path: Path) -> None:
    import json

    from qrewrite.contracts import validate_path
    from qrewrite.mining.mine import SOURCES

    contract = json.loads(
        (Path(__file__).resolve().parents[2] / "data_contracts/rewrite_candidates.json").read_text()
    )
    (sources,) = [
        e["kwargs"]["value_set"]
        for e in contract["expectations"]
        if e["type"] == "expect_column_values_to_be_in_set" and e["kwargs"]["column"] == "source"
    ]
    assert set(sources) == set(SOURCES)
    data = tmp_path / "data"
    import_judged(
        JudgedImportConfig(grade_scale="numeric:1:3"),
        input_path=write_judged_tsv(tmp_path / "j.tsv"),
        out_dir=data,
    )
    mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "mined")
    assert validate_path(
        "rewrite_candidates", tmp_path / "mined/rewrite_candidates.parquet"
    ).success
