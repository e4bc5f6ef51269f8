"""Every contract passes on good data and fails, naming the expectation, on broken data."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qrewrite.cli import main
from qrewrite.contracts import available_contracts, validate_frame, validate_path
from qrewrite.errors import ConfigError

CONTRACTS = ["catalog", "search_log", "rewrite_candidates", "query_stats"]


def _source(name: str, market: Path, mined: Path) -> Path:
    return (market if name in ("catalog", "search_log") else mined) / f"{name}.parquet"


def _break(name: str, df: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """A realistic fault per table and the expectation that must catch it."""
    df = df.copy()
    if name == "catalog":
        df.loc[1, "product_id"] = df.loc[0, "product_id"]
        return df, "expect_column_values_to_be_unique"
    if name == "search_log":
        df.loc[df.index[:3], "position"] = -1
        return df, "expect_column_values_to_be_between"
    if name == "rewrite_candidates":
        df.loc[0, "source"] = "llm_guess"
        return df, "expect_column_values_to_be_in_set"
    df.loc[0, "cvr"] = 1.5
    return df, "expect_column_values_to_be_between"


def test_all_contracts_are_shipped() -> None:
    assert set(CONTRACTS) <= set(available_contracts())


@pytest.mark.parametrize("name", CONTRACTS)
def test_contract_passes_on_good_data(
    name: str, tiny_market: Path, tiny_mined: Path, tmp_path: Path
) -> None:
    result = validate_path(name, _source(name, tiny_market, tiny_mined), tmp_path)
    assert result.success, result.summary_line()
    assert len(result.outcomes) >= 9
    assert (tmp_path / f"{name}.md").read_text().startswith(f"# Data contract `{name}`: PASSED")
    assert json.loads((tmp_path / f"{name}.json").read_text())["success"] is True
    assert (tmp_path / "data_docs" / name / "index.html").exists()


@pytest.mark.parametrize("name", CONTRACTS)
def test_contract_fails_on_broken_data(name: str, tiny_market: Path, tiny_mined: Path) -> None:
    df = pd.read_parquet(_source(name, tiny_market, tiny_mined))
    broken, expectation = _break(name, df)
    result = validate_frame(broken, name, "broken")
    assert not result.success
    assert expectation in {f.expectation for f in result.failures}
    assert expectation in result.summary_line()


def test_sampling_is_reported(tiny_market: Path, tmp_path: Path) -> None:
    result = validate_path("search_log", tiny_market / "search_log.parquet", tmp_path, max_rows=10)
    assert result.rows_checked < result.rows_total
    assert "evenly spread sample" in (tmp_path / "search_log.md").read_text()


def test_suite_that_ge_cannot_build_is_refused(tmp_path: Path) -> None:
    (tmp_path / "t.json").write_text(
        json.dumps(
            {
                "name": "t",
                "expectations": [
                    {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},
                    {"type": "expect_column_values_to_be_awesome", "kwargs": {"column": "a"}},
                ],
            }
        )
    )
    with pytest.raises(ConfigError, match="could not build expect_column_values_to_be_awesome"):
        validate_frame(pd.DataFrame({"a": [1]}), "t", "x", directory=tmp_path)


def test_cli_exit_codes(tiny_market: Path, tmp_path: Path, capsys) -> None:
    catalog = pd.read_parquet(tiny_market / "catalog.parquet")
    catalog["price"] = np.where(catalog.index < 5, -1.0, catalog["price"])
    bad = tmp_path / "catalog.parquet"
    catalog.to_parquet(bad)
    assert main(["validate", "--contract", "catalog", "--data", str(bad)]) == 4
    err = capsys.readouterr().err
    assert "expect_column_values_to_be_between(price): 5 unexpected value(s)" in err
    assert (
        main(["validate", "--contract", "catalog", "--data", str(tiny_market / "catalog.parquet")])
        == 0
    )
    assert main(["validate", "--contract", "nope", "--data", str(bad)]) == 3
    assert "known contracts: catalog" in capsys.readouterr().err


def test_reports_of_several_contracts_share_a_folder(tiny_market: Path, tmp_path: Path) -> None:
    for name in ("catalog", "search_log"):
        validate_path(name, tiny_market / f"{name}.parquet", tmp_path)
    for name in ("catalog", "search_log"):
        assert (tmp_path / f"{name}.md").exists()
        pages = list((tmp_path / "data_docs" / name / "validations").rglob("*.html"))
        assert len(pages) == 1, f"{name}: Data Docs page missing"
