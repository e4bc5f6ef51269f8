from pathlib import Path

import pandas as pd
import pytest

from qrewrite.mining.config import MiningConfig
from qrewrite.mining.mine import MiningReport, mine
from tests.mining.logs import reference_log, search, write_market


@pytest.fixture(scope="module")
def mined(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[pd.DataFrame, pd.DataFrame, MiningReport]:
    folder = tmp_path_factory.mktemp("ref")
    write_market(folder / "data", reference_log())
    report = mine(MiningConfig(), data_dir=folder / "data", out_dir=folder / "out")
    cands = pd.read_parquet(folder / "out" / "rewrite_candidates.parquet")
    stats = pd.read_parquet(folder / "out" / "query_stats.parquet").set_index("query")
    return cands, stats, report


def _pairs(cands: pd.DataFrame, source: str) -> dict[tuple[str, str], int]:
    sub = cands[cands["source"] == source]
    return {
        (q, r): int(s) for q, r, s in zip(sub["query"], sub["rewrite"], sub["support"], strict=True)
    }


def test_session_reformulations_exact(mined) -> None:
    cands, _, _ = mined
    # "Kicks " normalises to "kicks"; S3's pair is outside the window; S2's "sneakers" only
    # clicked, so its next converted search counts too.
    assert _pairs(cands, "session_reformulation") == {
        ("kicks", "running shoes"): 2,
        ("sneakers", "running shoes"): 1,
    }
    row = cands[(cands["source"] == "session_reformulation") & (cands["query"] == "kicks")]
    assert row["shared_purchases"].item() == 0  # kicks never bought anything


def test_co_engagement_exact(mined) -> None:
    cands, _, _ = mined
    co = cands[cands["source"] == "co_engagement"].set_index(["query", "rewrite"])
    # P2 bought under both coffee queries; P3 clicked under "decaf coffee" only.
    assert co.loc[("decaf coffee", "coffee without caffeine"), "shared_purchases"] == 1
    assert co.loc[("decaf coffee", "coffee without caffeine"), "score"] == pytest.approx(1.3)
    # P1 bought under "running shoes" only; clicked under sneakers: 0.3 < the 1.0 threshold.
    assert set(co.index) == {
        ("decaf coffee", "coffee without caffeine"),
        ("coffee without caffeine", "decaf coffee"),
    }


def test_engaged_titles_exact(mined) -> None:
    cands, _, _ = mined
    titles = cands[cands["source"] == "engaged_title"]
    got = {
        (q, p): s
        for q, p, s in zip(titles["query"], titles["product_id"], titles["support"], strict=True)
    }
    # support = purchases + carts, counted per search (4 purchases and 4 carts of P1)
    assert got == {
        ("running shoes", "P1"): 8,
        ("decaf coffee", "P2"): 2,
        ("coffee without caffeine", "P2"): 2,
    }
    assert titles.set_index("product_id").loc["P1", "rewrite"] == "Nordvik Men's Running Shoes"
    assert titles["rewrite_cvr"].isna().all()


def test_query_stats_exact(mined) -> None:
    _, stats, report = mined
    kicks = stats.loc["kicks"]
    assert (kicks["searches"], kicks["sessions"], kicks["purchases"]) == (3, 3, 0)
    assert kicks["zero_result_searches"] == 1 and kicks["cvr"] == 0
    shoes = stats.loc["running shoes"]
    assert (shoes["searches"], shoes["purchases"], shoes["cvr"]) == (4, 4, 1.0)
    assert list(shoes["purchased_products"]) == ["P1"]
    assert list(stats.loc["decaf coffee", "clicked_products"]) == ["P2", "P3"]
    assert stats.loc["sneakers", "ctr"] == 1.0 and stats.loc["sneakers", "cvr"] == 0.0
    assert report.input["distinct_raw_queries"] == 6  # "Kicks " and "kicks"
    assert report.input["distinct_queries"] == 5


def test_candidate_evidence_joins_both_sides(mined) -> None:
    cands, _, _ = mined
    row = cands[(cands["query"] == "sneakers") & (cands["source"] == "session_reformulation")]
    assert row["query_searches"].item() == 1 and row["query_cvr"].item() == 0.0
    assert row["rewrite_searches"].item() == 4 and row["rewrite_cvr"].item() == 1.0
    assert row["shared_clicks"].item() == 1  # P1 clicked under both


def test_thresholds_come_from_config(tmp_path: Path) -> None:
    write_market(tmp_path / "data", reference_log())
    cfg = MiningConfig(
        min_reformulation_support=2, min_co_engagement_score=2.0, max_titles_per_query=0
    )
    report = mine(cfg, data_dir=tmp_path / "data", out_dir=tmp_path / "out")
    cands = pd.read_parquet(tmp_path / "out" / "rewrite_candidates.parquet")
    assert _pairs(cands, "session_reformulation") == {("kicks", "running shoes"): 2}
    assert report.candidates == {
        "session_reformulation": 1,
        "co_engagement": 0,
        "engaged_title": 0,
        "engaged_title_rewrite": 0,  # no titles to reduce
        "judged_title": 0,  # a log without judgments
        "judged_shared_relevant": 0,
    }


def test_time_window_filters_searches(tmp_path: Path) -> None:
    late = search(7, 70, 3 * 86_400, "mug", [("P3", "cb")])  # three days later
    write_market(tmp_path / "data", [*reference_log(), *late])
    report = mine(
        MiningConfig(start="2026-03-02", end="2026-03-03"),
        data_dir=tmp_path / "data",
        out_dir=tmp_path / "out",
    )
    assert report.input["searches"] == 10
    assert report.input["rows_outside_window"] == 1
    stats = pd.read_parquet(tmp_path / "out" / "query_stats.parquet")
    assert "mug" not in set(stats["query"])
