"""Bad search logs: each gets a one-line error naming file and column, or a counted quarantine."""

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from qrewrite.cli import main
from qrewrite.errors import DataError
from qrewrite.mining.config import MiningConfig
from qrewrite.mining.mine import mine
from tests.mining.logs import CATALOG, reference_log, search, write_market


def _write_raw(root: Path, table: pa.Table) -> Path:
    """A data folder under ``root``, beside where the tests write their outputs (an output may
    not be inside an input)."""
    folder = root / "data"
    folder.mkdir(parents=True, exist_ok=True)
    CATALOG.to_parquet(folder / "catalog.parquet", index=False)
    pq.write_table(table, folder / "search_log.parquet")
    return folder


def _ref_table() -> pa.Table:
    return pa.Table.from_pylist(reference_log())  # inferred, loose types


def test_missing_column_names_file_and_column(tmp_path: Path) -> None:
    data = _write_raw(tmp_path, _ref_table().drop(["purchased"]))
    with pytest.raises(DataError, match=r"search_log.parquet: missing column\(s\) purchased"):
        mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "out")


def test_wrong_type_names_column_and_expectation(tmp_path: Path) -> None:
    t = _ref_table()
    t = t.set_column(
        t.schema.get_field_index("position"),
        "position",
        pa.array([str(p) for p in t.column("position").to_pylist()]),
    )
    data = _write_raw(tmp_path, t)
    with pytest.raises(DataError, match=r"position is string, expected integer"):
        mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "out")


def test_non_utf8_query_bytes_are_a_type_error(tmp_path: Path) -> None:
    t = _ref_table()
    raw = [q.encode() if i else b"caf\xe9" for i, q in enumerate(t.column("query").to_pylist())]
    t = t.set_column(t.schema.get_field_index("query"), "query", pa.array(raw, pa.binary()))
    data = _write_raw(tmp_path, t)
    with pytest.raises(DataError, match=r"query is binary, expected string"):
        mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "out")


def test_empty_and_corrupt_files(tmp_path: Path) -> None:
    data = _write_raw(tmp_path / "a", _ref_table())
    (data / "search_log.parquet").write_bytes(b"")
    with pytest.raises(DataError, match=r"file is empty \(0 bytes\)"):
        mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "out")
    (data / "search_log.parquet").write_text("session_id,query\n1,shoes\n")
    with pytest.raises(DataError, match="not a readable parquet file"):
        mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "out")
    empty = _write_raw(tmp_path / "b", _ref_table().slice(0, 0))
    with pytest.raises(DataError, match="has no rows"):
        mine(MiningConfig(), data_dir=empty, out_dir=tmp_path / "out")


def test_bad_rows_are_quarantined_and_counted(tmp_path: Path) -> None:
    rows = reference_log()
    rows += search(8, 80, 5, "", [("P1", "cb")])  # empty query
    rows += search(9, 90, 5, "   ", [("P1", "")])  # blank query
    rows += search(14, 140, 5, "\u00a0", [("P1", "cb")])  # blank once NFKC-normalised
    bad_pos = search(10, 100, 5, "mug", [("P3", "cb")])
    bad_pos[0]["position"] = -1
    rows += bad_pos
    null_query = search(11, 110, 5, "x", [("P3", "")])
    null_query[0]["query"] = None
    rows += null_query
    data = _write_raw(tmp_path, pa.Table.from_pylist(rows))
    report = mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "out")
    assert report.input["rows_rejected"] == {
        "null_or_empty_query": 4,
        "position_below_1": 1,
    }
    rejected = pd.read_parquet(tmp_path / "out" / "quarantine" / "search_log_rejected.parquet")
    assert len(rejected) == 5 and set(rejected["reject_reason"]) == {
        "null_or_empty_query",
        "position_below_1",
    }
    stats = pd.read_parquet(tmp_path / "out" / "query_stats.parquet")
    assert "mug" not in set(stats["query"]) and "" not in set(stats["query"])
    assert stats.set_index("query").loc["running shoes", "purchases"] == 4  # P1 bought under blank
    assert report.input["searches"] == 10


def test_duplicated_events_count_once(tmp_path: Path) -> None:
    rows = reference_log()
    bought = [r for r in rows if r["search_id"] == 40]
    data = write_market(tmp_path / "data", rows + bought)  # search 40 logged twice
    report = mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "out")
    assert report.input["duplicate_impressions"] == 2
    assert report.input["duplicate_engaged_events"] == 2
    stats = pd.read_parquet(tmp_path / "out" / "query_stats.parquet").set_index("query")
    assert stats.loc["decaf coffee", "purchases"] == 1
    assert stats.loc["decaf coffee", "searches"] == 1


def test_window_without_data_says_what_the_data_spans(tmp_path: Path) -> None:
    data = write_market(tmp_path / "data", reference_log())
    with pytest.raises(
        DataError, match=r"no valid searches between 2027-01-01 .* spans 2026-03-02"
    ):
        mine(MiningConfig(start="2027-01-01"), data_dir=data, out_dir=tmp_path / "out")
    with pytest.raises(DataError, match="--start 'yesterday' is not an ISO date"):
        mine(MiningConfig(start="yesterday"), data_dir=data, out_dir=tmp_path / "out")


def test_catalog_problems(tmp_path: Path) -> None:
    dup = pd.concat([CATALOG, CATALOG.head(1)])
    data = write_market(tmp_path / "data", reference_log(), catalog=dup)
    with pytest.raises(DataError, match="product_id has 1 duplicated value"):
        mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "out")


def test_unknown_products_are_counted(tmp_path: Path) -> None:
    rows = reference_log() + search(12, 120, 5, "mug", [("P9", "cb")])
    data = write_market(tmp_path / "data", rows)
    report = mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "out")
    assert report.engaged_pairs_with_unknown_product == 1


def test_cli_reports_one_line_and_exit_code(tmp_path: Path, capsys) -> None:
    data = _write_raw(tmp_path, _ref_table().drop(["clicked", "carted"]))
    code = main(["mine", "--data", str(data), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "missing column(s) clicked, carted" in err


def test_duplicates_beyond_position_63_are_counted(tmp_path: Path) -> None:
    deep = search(13, 130, 5, "mug", [(f"P{i % 3 + 1}", "") for i in range(70)])
    data = write_market(tmp_path / "data", [*reference_log(), *deep, deep[65], deep[2]])
    report = mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "out")
    assert report.input["duplicate_impressions"] == 2  # one at position 66, one at 3


def test_integer_flags_other_than_0_1_are_quarantined(tmp_path: Path) -> None:
    t = _ref_table()
    for flag in ("clicked", "carted", "purchased"):
        values = [int(v) for v in t.column(flag).to_pylist()]
        if flag == "clicked":
            values[0] = 2
        t = t.set_column(t.schema.get_field_index(flag), flag, pa.array(values, pa.int8()))
    data = _write_raw(tmp_path, t)
    report = mine(MiningConfig(), data_dir=data, out_dir=tmp_path / "out")
    assert report.input["rows_rejected"] == {"bad_engagement_flag": 1}
    # search 10 had one row, now rejected; the other 0/1 integer rows read as booleans
    assert report.input["searches"] == 9
