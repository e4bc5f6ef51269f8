"""Staging the run's marketplace: the simulator, or a copy of the shop's export."""

from __future__ import annotations

from pathlib import Path

import pytest

from qrewrite.errors import ConfigError, DataError
from qrewrite.market.stage import stage_marketplace


def test_a_directory_is_copied_with_its_truth(tiny_market: Path, tmp_path: Path) -> None:
    staged = stage_marketplace(source=str(tiny_market), out_dir=tmp_path / "market")
    assert staged.source == str(tiny_market)
    assert staged.rows["catalog.parquet"] == 600  # tiny scale's products
    assert staged.rows["search_log.parquet"] > 0
    assert (tmp_path / "market" / "truth").is_dir()  # evaluation scores rewrites by truth


def test_a_file_uri_is_a_directory_too(tiny_market: Path, tmp_path: Path) -> None:
    staged = stage_marketplace(source=f"file://{tiny_market}", out_dir=tmp_path / "market")
    assert (tmp_path / "market" / "catalog.parquet").is_file()
    assert staged.rows["catalog.parquet"] == 600


def test_an_export_without_its_search_log_is_refused(tiny_market: Path, tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "catalog.parquet").write_bytes((tiny_market / "catalog.parquet").read_bytes())
    with pytest.raises(DataError, match=r"missing search_log\.parquet"):
        stage_marketplace(source=str(export), out_dir=tmp_path / "market")


def test_a_broken_parquet_file_is_named(tmp_path: Path) -> None:
    export = tmp_path / "export"
    export.mkdir()
    for name in ("catalog.parquet", "search_log.parquet"):
        (export / name).write_text("not parquet")
    with pytest.raises(DataError, match=r"catalog\.parquet: not a readable parquet file"):
        stage_marketplace(source=str(export), out_dir=tmp_path / "market")


@pytest.mark.parametrize("source", ["", "/no/such/dir"])
def test_a_missing_source_says_what_is_expected(source: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="synthetic"):
        stage_marketplace(source=source, out_dir=tmp_path / "market")


def test_a_judged_import_keeps_its_judgments(tmp_path: Path) -> None:
    from qrewrite.importing.judged import JudgedImportConfig, import_judged
    from tests.labeling.fakes import write_judged_tsv

    data = tmp_path / "data"
    src = write_judged_tsv(tmp_path / "j.tsv")
    import_judged(JudgedImportConfig(grade_scale="numeric:1:3"), input_path=src, out_dir=data)
    stage_marketplace(source=str(data), out_dir=tmp_path / "market")
    # the teacher calibrates on them and mining makes rewrites from them
    assert (tmp_path / "market" / "judgments.parquet").is_file()
    assert (tmp_path / "market" / "truth" / "judgments.parquet").is_file()
