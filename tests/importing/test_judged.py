import hashlib
from pathlib import Path

import pandas as pd
import pytest

from qrewrite.cli import main
from qrewrite.contracts import validate_path
from qrewrite.errors import DataError
from qrewrite.importing.judged import JudgedImportConfig, import_judged
from qrewrite.mining.config import MiningConfig
from qrewrite.mining.mine import mine

ESCI = """query_id\tquery\tproduct_id\tproduct_title\tproduct_brand\tproduct_color\tesci_label
1\tRunning shoes men\tB01\tNordvik Men's Running Shoes\tNordvik\tBlack\tE
1\tRunning shoes men\tB02\tWomen's Sandals\tVelora\tRed\tI
1\tRunning shoes men\tB03\tMen's Trail Sneakers\tStridex\t\tS
2\tdecaf coffee\tB04\tDecaf Coffee Beans 12 oz\tBruvva\t\tE
2\tdecaf coffee\tB05\tCoffee Mug\tCucina\tWhite\tC
2\t\tB06\tBlank query row\tY\t\tE
2\tdecaf coffee\tB05\tCoffee Mug\tCucina\tWhite\tC
3\tmug\tB05\tCoffee Mug\tCucina\tWhite\tE
3\tmug\tB07\tTravel Mug\tCucina\t\tS
4\tRUNNING  SHOES MEN\tB09\tStrange Item\t\t\tI
"""


def _write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def test_esci_import_maps_grades_quarantines_and_replays(tmp_path: Path) -> None:
    src = _write(tmp_path, "esci.tsv", ESCI)
    manifest = import_judged(JudgedImportConfig(), input_path=src, out_dir=tmp_path / "out")
    c = manifest.counts
    assert manifest.grade_scale == "esci"
    assert c["rows_rejected"] == {"duplicate_judgment": 1, "null_or_empty_query": 1}
    assert (c["judgments"], c["queries"], c["products"]) == (8, 3, 7)
    judgments = pd.read_parquet(tmp_path / "out" / "truth" / "judgments.parquet")
    grades = dict(
        zip(
            zip(judgments["query"], judgments["product_id"], strict=True),
            judgments["grade"],
            strict=True,
        )
    )
    assert grades[("running shoes men", "B01")] == 2
    assert grades[("running shoes men", "B03")] == 1  # Substitute
    assert grades[("decaf coffee", "B05")] == 1  # Complement
    assert grades[("running shoes men", "B09")] == 0  # same query after normalisation
    catalog = pd.read_parquet(tmp_path / "out" / "catalog.parquet").set_index("product_id")
    assert catalog.loc["B01", "brand"] == "Nordvik" and catalog.loc["B01", "colour"] == "Black"
    log = pd.read_parquet(tmp_path / "out" / "search_log.parquet")
    assert len(log) == 8 * 3  # every judgment shown in each of 3 replayed searches
    assert (
        log.groupby("search_id")["position"]
        .apply(lambda p: sorted(p) == list(range(1, len(p) + 1)))
        .all()
    )
    rejected = pd.read_parquet(tmp_path / "out" / "quarantine" / "judged_rejected.parquet")
    assert sorted(rejected["row"]) == [7, 8]  # file lines, header is line 1


def test_imported_data_passes_contracts_and_mines(tmp_path: Path) -> None:
    rows = ["query\tproduct_id\tproduct_title\tesci_label"]
    for q in range(30):
        for p in range(8):
            label = "E" if p < 2 else ("S" if p < 4 else "I")
            rows.append(f"query {q}\tP{q}_{p}\tproduct {q} {p}\t{label}")
    src = _write(tmp_path, "big.tsv", "\n".join(rows) + "\n")
    import_judged(
        JudgedImportConfig(sessions_per_query=20), input_path=src, out_dir=tmp_path / "out"
    )
    for name in ("catalog", "search_log"):
        result = validate_path(name, tmp_path / "out" / f"{name}.parquet")
        assert result.success, result.summary_line()
    report = mine(MiningConfig(), data_dir=tmp_path / "out", out_dir=tmp_path / "mined")
    assert report.queries == 30 and report.candidates["engaged_title"] > 0
    log = pd.read_parquet(tmp_path / "out" / "search_log.parquet")
    judged = pd.read_parquet(tmp_path / "out" / "truth" / "judgments.parquet")
    merged = log.merge(judged, on="product_id")
    rate = merged.groupby("grade")["clicked"].mean()
    assert rate[2] > rate[0]  # grades drive engagement


def test_wands_and_numeric_scales(tmp_path: Path) -> None:
    wands = _write(
        tmp_path,
        "wands.csv",
        "query,product_id,product_name,label\n"
        "sofa,1,Grey Sofa,Exact\nsofa,2,Lamp,Irrelevant\nsofa,3,Loveseat,Partial\n",
    )
    m = import_judged(JudgedImportConfig(), input_path=wands, out_dir=tmp_path / "w")
    assert m.grade_scale == "wands" and m.counts["grades"] == {0: 1, 1: 1, 2: 1}

    hd = _write(
        tmp_path,
        "hd.csv",
        "search_term,product_uid,product_title,relevance\n"
        "drill,1,Cordless Drill,3\ndrill,2,Drill Bits,2\ndrill,3,Paint,1\n"
        "drill,4,Hammer,7\n",
    )
    with pytest.raises(DataError, match=r"numeric \(1..7\); declare their range"):
        import_judged(JudgedImportConfig(), input_path=hd, out_dir=tmp_path / "h")
    m = import_judged(
        JudgedImportConfig(grade_scale="numeric:1:3"), input_path=hd, out_dir=tmp_path / "h"
    )
    assert m.counts["grades"] == {0: 1, 1: 1, 2: 1}
    assert m.counts["rows_rejected"] == {"grade_not_on_scale": 1}  # 7 is outside 1..3


def test_explicit_columns_and_missing_columns(tmp_path: Path) -> None:
    src = _write(tmp_path, "x.csv", "q,item,name,score\nshoes,1,Shoe,E\n")
    with pytest.raises(DataError, match=r"cannot find column\(s\) for query: one of query"):
        import_judged(JudgedImportConfig(), input_path=src, out_dir=tmp_path / "o")
    cfg = JudgedImportConfig(
        query_column="q", product_id_column="item", title_column="name", grade_column="score"
    )
    assert import_judged(cfg, input_path=src, out_dir=tmp_path / "o").counts["judgments"] == 1
    with pytest.raises(DataError, match=r"column 'qq' \(given for query\) not found"):
        import_judged(JudgedImportConfig(query_column="qq"), input_path=src, out_dir=tmp_path / "o")


def test_unreadable_files(tmp_path: Path) -> None:
    bad = _write(
        tmp_path,
        "latin.tsv",
        b"query\tproduct_id\tproduct_title\tesci_label\ncaf\xe9\t1\tCafe\tE\n",
    )
    with pytest.raises(DataError, match=r"latin.tsv: line 2: byte 0xe9 is not valid UTF-8"):
        import_judged(JudgedImportConfig(), input_path=bad, out_dir=tmp_path / "o")
    with pytest.raises(DataError, match="file is empty"):
        import_judged(
            JudgedImportConfig(), input_path=_write(tmp_path, "e.tsv", ""), out_dir=tmp_path / "o"
        )
    header = _write(tmp_path, "h.tsv", "query\tproduct_id\tproduct_title\tesci_label\n")
    with pytest.raises(DataError, match="has a header but no rows"):
        import_judged(JudgedImportConfig(), input_path=header, out_dir=tmp_path / "o")
    with pytest.raises(DataError, match="unknown file type"):
        import_judged(
            JudgedImportConfig(),
            input_path=_write(tmp_path, "x.json", "{}"),
            out_dir=tmp_path / "o",
        )


def test_same_seed_same_bytes(tmp_path: Path) -> None:
    src = _write(tmp_path, "esci.tsv", ESCI)
    for d in ("a", "b"):
        import_judged(JudgedImportConfig(seed=3), input_path=src, out_dir=tmp_path / d)
    digest = [
        hashlib.sha256((tmp_path / d / "search_log.parquet").read_bytes()).hexdigest()
        for d in ("a", "b")
    ]
    assert digest[0] == digest[1]


def test_cli_import(tmp_path: Path, capsys) -> None:
    src = _write(tmp_path, "esci.tsv", ESCI)
    assert main(["import-judged", "--input", str(src), "--out", str(tmp_path / "o")]) == 0
    out = capsys.readouterr().out
    assert "8 judgments of 3 queries" in out
    assert "set aside 2 of 10 rows (duplicate_judgment: 1, null_or_empty_query: 1)" in out


def test_conflicting_duplicates_are_resolved_and_titles_unescaped(tmp_path: Path) -> None:
    src = _write(
        tmp_path,
        "dup.tsv",
        "query\tproduct_id\tproduct_title\tesci_label\n"
        "mug\tP1\tTom &amp; Jerry &quot;Mug&quot;\tE\n"
        "mug\tP1\tTom &amp; Jerry &quot;Mug&quot;\tI\n"
        "mug\tP1\tTom &amp; Jerry &quot;Mug&quot;\tE\n"
        "mug\tP2\tTravel Mug\tS\n"
        "mug\tP2\tTravel Mug\tS\n"
        "cup\tP2\tTravel Mug\tE\n",
    )
    manifest = import_judged(JudgedImportConfig(), input_path=src, out_dir=tmp_path / "out")
    c = manifest.counts
    # people disagreed on (mug, P1): the median grade stands, and both kinds are counted
    assert c["duplicates_with_conflicting_grades"] == 1
    assert c["rows_rejected"] == {"duplicate_judgment": 3}
    judgments = pd.read_parquet(tmp_path / "out" / "judgments.parquet")
    grade = judgments.set_index(["query", "product_id"])["grade"]
    assert grade[("mug", "P1")] == 2 and grade[("mug", "P2")] == 1 and grade[("cup", "P2")] == 2
    catalog = pd.read_parquet(tmp_path / "out" / "catalog.parquet").set_index("product_id")
    assert catalog.loc["P1", "title"] == 'Tom & Jerry "Mug"'
    assert c["titles_with_html_entities"] == 1


def test_invisible_characters_are_removed_and_counted(tmp_path: Path) -> None:
    src = _write(
        tmp_path,
        "hostile.tsv",
        "query\tproduct_id\tproduct_title\tesci_label\n"
        "blue\x00\x00 shoes\tP1\tBlue Shoes\tE\n"
        "running\u200b shoes\tP2\tRunning\u202e Shoes\tE\n"
        "running shoes\tP3\tTrail Shoes\tS\n"
        "\u200b\u200d\tP4\tInvisible\tE\n",
    )
    manifest = import_judged(JudgedImportConfig(), input_path=src, out_dir=tmp_path / "out")
    c = manifest.counts
    assert c["lines_with_nul_bytes_removed"] == 1
    assert c["rows_with_invisible_characters_removed"] == 2  # the NULs went before parsing
    assert c["rows_rejected"] == {"null_or_empty_query": 1}  # a query of zero-width only
    judgments = pd.read_parquet(tmp_path / "out" / "judgments.parquet")
    assert sorted(judgments["query"].unique()) == ["blue shoes", "running shoes"]
    titles = pd.read_parquet(tmp_path / "out" / "catalog.parquet").set_index("product_id")
    assert titles.loc["P2", "title"] == "Running Shoes"


def test_a_column_named_twice_is_refused_by_name(tmp_path: Path, capsys) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = _write(
        tmp_path,
        "twice.tsv",
        "query\tproduct_id\tproduct_title\tesci_label\tesci_label\nmug\tP1\tMug\tE\tI\n",
    )
    assert main(["import-judged", "--input", str(src), "--out", str(tmp_path / "o")]) == 2
    assert "column 'esci_label' appears twice in the header" in capsys.readouterr().err
    table = pa.table([["mug"], ["P1"], ["Mug"], ["E"], ["I"]], names=["query", "product_id",
                     "product_title", "esci_label", "esci_label"])  # fmt: skip
    pq.write_table(table, tmp_path / "twice.parquet")
    with pytest.raises(DataError, match="column 'esci_label' appears twice; keep one"):
        import_judged(
            JudgedImportConfig(), input_path=tmp_path / "twice.parquet", out_dir=tmp_path / "o"
        )


def test_quarantine_rows_are_file_lines_even_when_a_field_spans_lines(tmp_path: Path) -> None:
    src = _write(
        tmp_path,
        "multiline.csv",
        "query,product_id,product_title,esci_label\n"
        'mug,P1,"Travel Mug\nwith a lid",E\n'
        "\n"
        ",P2,Blank Query,E\n"
        "cup,P3,Cup,Q\n",
    )
    import_judged(JudgedImportConfig(grade_scale="esci"), input_path=src, out_dir=tmp_path / "out")
    rejected = pd.read_parquet(tmp_path / "out" / "quarantine" / "judged_rejected.parquet")
    assert dict(zip(rejected["row"], rejected["reject_reason"], strict=True)) == {
        5: "null_or_empty_query",
        6: "grade_not_on_scale",
    }
