"""Data contracts: Great Expectations 1.x suites (``data_contracts/*.json``) at each hand-off.

Suites are stored in GE's own JSON form (``name``, ``expectations`` with ``type``/``kwargs``/
``meta``) and loaded into an ephemeral context, so no GE project directory is needed anywhere.
Tables are validated as pandas DataFrames converted from Arrow with pandas' defaults (an integer
column with nulls becomes float64); strict Arrow types are checked where the data is read.
"""

from __future__ import annotations

import json
import logging
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from qrewrite.errors import ConfigError, DataError
from qrewrite.outputs import check_output_folder

# GE would otherwise try to send usage statistics over a network this tool must not need.
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

log = logging.getLogger(__name__)

CONTRACTS_ENV = "QREWRITE_CONTRACTS_DIR"
DEFAULT_MAX_ROWS = 5_000_000


def contracts_dir() -> Path:
    """The suites' folder: ``$QREWRITE_CONTRACTS_DIR``, else ``data_contracts/`` above here."""
    env = os.environ.get(CONTRACTS_ENV)
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        candidate = parent / "data_contracts"
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        f"data_contracts/ not found above {Path(__file__).parent}; set {CONTRACTS_ENV}"
    )


def available_contracts(directory: Path | None = None) -> list[str]:
    return sorted(p.stem for p in (directory or contracts_dir()).glob("*.json"))


def load_suite_json(name: str, directory: Path | None = None) -> dict[str, Any]:
    directory = directory or contracts_dir()
    path = directory / f"{name}.json"
    if not path.exists():
        known = ", ".join(available_contracts(directory)) or "none"
        raise ConfigError(f"unknown contract {name!r} (no {path}); known contracts: {known}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path}: not valid JSON ({e})") from e


# expectations about a whole table (its size, a mean, which values occur at all), which only a
# batch of real volume can meet; every other expectation is a rule each row must keep
AGGREGATE_EXPECTATIONS = frozenset(
    {
        "expect_table_row_count_to_be_between",
        "expect_column_mean_to_be_between",
        "expect_column_distinct_values_to_contain_set",
        "expect_column_proportion_of_unique_values_to_be_between",
    }
)


@dataclass
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    detail: str
    why: str = ""


@dataclass
class ContractResult:
    contract: str
    data: str
    success: bool
    rows_checked: int
    rows_total: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)
    data_docs: str | None = None

    @property
    def failures(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    @property
    def row_rule_failures(self) -> list[ExpectationOutcome]:
        """The failures that are not about the whole table (``AGGREGATE_EXPECTATIONS``)."""
        return [f for f in self.failures if f.expectation not in AGGREGATE_EXPECTATIONS]

    def summary_line(self) -> str:
        if self.success:
            return f"{self.contract}: {len(self.outcomes)} expectations passed on {self.data}"
        schema = [f for f in self.failures if f.expectation == "expect_table_columns_to_match_set"]
        if schema:  # every other failure follows from the wrong columns
            return (
                f"{self.contract}: wrong table for this contract ({self.data}): {schema[0].detail}"
            )
        parts = [
            f"{f.expectation}({f.column})" + (f": {f.detail}" if f.detail else "")
            if f.column
            else f"{f.expectation}: {f.detail}"
            for f in self.failures
        ]
        return (
            f"{self.contract}: {len(self.failures)} of {len(self.outcomes)} expectations failed on "
            f"{self.data}: " + "; ".join(parts)
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "contract": self.contract,
            "data": self.data,
            "success": self.success,
            "rows_checked": self.rows_checked,
            "rows_total": self.rows_total,
            "data_docs": self.data_docs,
            "expectations": [o.__dict__ for o in self.outcomes],
        }

    def to_markdown(self) -> str:
        status = "PASSED" if self.success else "FAILED"
        lines = [
            f"# Data contract `{self.contract}`: {status}",
            "",
            f"- data: `{self.data}`",
            f"- rows checked: {self.rows_checked:,} of {self.rows_total:,}"
            + ("" if self.rows_checked == self.rows_total else " (evenly spread sample)"),
            f"- expectations: {len(self.outcomes) - len(self.failures)} passed, "
            f"{len(self.failures)} failed",
        ]
        if self.data_docs:
            lines.append(f"- Data Docs: `{self.data_docs}`")
        lines += ["", "| | expectation | column | result | why |", "|---|---|---|---|---|"]
        for o in self.outcomes:
            mark = "ok" if o.success else "**FAIL**"
            detail = o.detail.replace("|", "\\|")
            lines.append(f"| {mark} | `{o.expectation}` | {o.column or ''} | {detail} | {o.why} |")
        return "\n".join(lines) + "\n"


def read_table_for_validation(
    path: Path, max_rows: int = DEFAULT_MAX_ROWS
) -> tuple[pd.DataFrame, int]:
    """Load a parquet file (or folder) as pandas; above ``max_rows``, an evenly spread sample of
    row groups. Returns (frame, total rows in the file)."""
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")
    try:
        if path.is_dir():
            table = pq.read_table(path)
            return table.to_pandas(), table.num_rows
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"{path}: not a readable parquet file ({e})") from e
    total = pf.metadata.num_rows
    if total <= max_rows:
        return pf.read().to_pandas(), total
    n_groups = pf.num_row_groups
    per_group = max(1, total // n_groups)
    take = max(1, min(n_groups, max_rows // per_group))
    groups = sorted({int(i * n_groups / take) for i in range(take)})
    table = pf.read_row_groups(groups)
    if table.num_rows > max_rows:  # few, large row groups: thin out evenly within them
        table = table.take(np.linspace(0, table.num_rows - 1, max_rows).astype(np.int64))
    log.warning(
        "%s: %d rows exceed --max-rows %d; validating %d rows spread over the file",
        path,
        total,
        max_rows,
        table.num_rows,
    )
    return table.to_pandas(), total


def _detail(result: dict[str, Any], kwargs: dict[str, Any]) -> str:
    if "column_set" in kwargs and isinstance(result.get("observed_value"), list):
        missing = sorted(set(kwargs["column_set"]) - set(result["observed_value"]))
        extra = sorted(set(result["observed_value"]) - set(kwargs["column_set"]))
        parts = ([f"missing columns {', '.join(missing)}"] if missing else []) + (
            [f"unexpected columns {', '.join(extra)}"]
            if extra and kwargs.get("exact_match")
            else []
        )
        if parts:
            return "; ".join(parts)
    if "unexpected_count" in result and result.get("unexpected_count"):
        examples = result.get("partial_unexpected_list") or []
        shown = ", ".join(repr(x) for x in examples[:3])
        pct = result.get("unexpected_percent")
        pct_text = f" ({pct:.2f}%)" if isinstance(pct, int | float) else ""
        return f"{result['unexpected_count']} unexpected value(s){pct_text}" + (
            f", e.g. {shown}" if shown else ""
        )
    if "observed_value" in result:
        return f"observed {result['observed_value']!r}"
    return ""


def validate_frame(
    df: pd.DataFrame,
    contract: str,
    data_label: str,
    report_dir: Path | None = None,
    rows_total: int | None = None,
    directory: Path | None = None,
) -> ContractResult:
    """Validate a DataFrame against a named suite; optionally write Markdown, JSON and Data Docs."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

    suite_json = load_suite_json(contract, directory)
    # GE logs skipped expectations and pins a module logger to INFO; the result says it all.
    for name in ("great_expectations", "great_expectations.data_context.types.base"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    # One site per contract: GE rebuilds a site from its own (ephemeral) store, so contracts
    # sharing a site would overwrite each other's pages.
    docs_dir = (report_dir / "data_docs" / contract).resolve() if report_dir else None
    actions = []
    if docs_dir is not None:
        context.add_data_docs_site(
            site_name="qrewrite",
            site_config={
                "class_name": "SiteBuilder",
                "store_backend": {
                    "class_name": "TupleFilesystemStoreBackend",
                    "base_directory": str(docs_dir),
                },
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
            },
        )
        actions.append(gx.checkpoint.UpdateDataDocsAction(name="docs", site_names=["qrewrite"]))
    batch_definition = (
        context.data_sources.add_pandas("qrewrite")
        .add_dataframe_asset(contract)
        .add_batch_definition_whole_dataframe("whole_table")
    )
    try:
        suite = context.suites.add(
            gx.ExpectationSuite(
                name=suite_json["name"],
                expectations=suite_json["expectations"],
                meta=suite_json.get("meta", {}),
            )
        )
    except Exception as e:
        raise ConfigError(f"contract {contract!r}: invalid suite ({e})") from e
    # GE logs and skips expectations it cannot build; a contract must never shrink silently.
    if len(suite.expectations) != len(suite_json["expectations"]):
        built = {e.expectation_type for e in suite.expectations}
        dropped = sorted({e["type"] for e in suite_json["expectations"]} - built)
        raise ConfigError(
            f"contract {contract!r}: Great Expectations could not build "
            f"{', '.join(dropped) or 'some expectations'}; fix data_contracts/{contract}.json"
        )
    validation = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{contract}_validation", data=batch_definition, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=f"{contract}_checkpoint",
            validation_definitions=[validation],
            actions=actions,
            result_format={"result_format": "SUMMARY"},
        )
    )
    run = checkpoint.run(batch_parameters={"dataframe": df})
    outcomes: list[ExpectationOutcome] = []
    for vr in run.run_results.values():
        for r in vr.results:
            cfg = r.expectation_config
            kwargs = cfg.kwargs
            column = (
                kwargs.get("column")
                or (",".join(kwargs["column_list"]) if "column_list" in kwargs else None)
                or (f"{kwargs['column_A']}>={kwargs['column_B']}" if "column_A" in kwargs else None)
            )
            detail = _detail(r.result or {}, kwargs)
            if r.exception_info and r.exception_info.get("raised_exception"):
                detail = f"could not evaluate: {r.exception_info.get('exception_message')}"
            outcomes.append(
                ExpectationOutcome(
                    expectation=cfg.type,
                    column=column,
                    success=bool(r.success),
                    detail=detail,
                    why=(cfg.meta or {}).get("why", ""),
                )
            )
    result = ContractResult(
        contract=contract,
        data=data_label,
        success=bool(run.success),
        rows_checked=len(df),
        rows_total=len(df) if rows_total is None else rows_total,
        outcomes=outcomes,
        data_docs=str(docs_dir / "index.html") if docs_dir else None,
    )
    if report_dir is not None:
        report_dir.mkdir(parents=True, exist_ok=True)
        (report_dir / f"{contract}.md").write_text(result.to_markdown(), encoding="utf-8")
        (report_dir / f"{contract}.json").write_text(
            json.dumps(result.as_dict(), indent=2, default=str) + "\n", encoding="utf-8"
        )
    return result


def validate_path(
    contract: str,
    data: str | Path,
    report_dir: str | Path | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    directory: Path | None = None,
) -> ContractResult:
    """Validate a parquet file against the named contract (what ``qrewrite validate`` runs)."""
    path = Path(data)
    if report_dir is not None:
        check_output_folder("validate", report_dir)
    df, total = read_table_for_validation(path, max_rows)
    return validate_frame(
        df, contract, str(path), Path(report_dir) if report_dir else None, total, directory
    )
