"""Opening a search log for mining: schema checks, quarantine, dedup, time window, normalisation.

Everything set aside is counted and written to ``quarantine/``; nothing is dropped silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qrewrite.errors import DataError
from qrewrite.schemas import SEARCH_LOG_REQUIRED
from qrewrite.text import normalize_query


def _type_ok(column: str, t: pa.DataType) -> bool:
    if column in ("session_id", "user_id", "search_id"):
        return pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_large_string(t)
    if column == "timestamp":
        return pa.types.is_timestamp(t) or pa.types.is_date(t)
    if column in ("query", "product_id"):
        return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_dictionary(t)
    if column == "position":
        return pa.types.is_integer(t)
    if column in ("clicked", "carted", "purchased"):
        return pa.types.is_boolean(t) or pa.types.is_integer(t)
    return True


def parquet_schema(path: Path, table: str) -> pa.Schema:
    """The Arrow schema of a parquet file, or a one-line DataError saying why it can't be read."""
    if not path.exists():
        raise DataError(f"{path}: {table} file not found (run `qrewrite synth` or `import-judged`)")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"{path}: {table} file is empty (0 bytes)")
    try:
        return pq.read_schema(path) if path.is_file() else pq.ParquetDataset(path).schema
    except (pa.ArrowInvalid, OSError) as e:
        raise DataError(f"{path}: not a readable parquet file ({e})") from e


def check_search_log_schema(path: Path) -> pa.Schema:
    """Fail with one line naming the file and each missing or mistyped column."""
    schema = parquet_schema(path, "search_log")
    names = set(schema.names)
    missing = [c for c in SEARCH_LOG_REQUIRED if c not in names]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; a search log needs "
            f"{', '.join(SEARCH_LOG_REQUIRED)} (and optionally search_id)"
        )
    wrong = [
        f"{c} is {schema.field(c).type}, expected {SEARCH_LOG_REQUIRED[c]}"
        for c in SEARCH_LOG_REQUIRED
        if not _type_ok(c, schema.field(c).type)
    ]
    if "search_id" in names and not _type_ok("search_id", schema.field("search_id").type):
        wrong.append(f"search_id is {schema.field('search_id').type}, expected integer or string")
    if wrong:
        raise DataError(f"{path}: wrong column type(s): {'; '.join(wrong)}")
    return schema


@dataclass
class LogInputReport:
    """What happened to the rows of the log on their way into mining."""

    rows_read: int = 0
    rows_rejected: dict[str, int] = field(default_factory=dict)
    rows_outside_window: int = 0
    duplicate_impressions: int = 0
    duplicate_engaged_events: int = 0
    searches: int = 0
    distinct_raw_queries: int = 0
    distinct_queries: int = 0
    data_start: str | None = None
    data_end: str | None = None

    def as_dict(self) -> dict:
        return dict(self.__dict__)


_REJECT_REASON = """
    CASE
        WHEN query IS NULL THEN 'null_or_empty_query'
        WHEN session_id IS NULL THEN 'null_session_id'
        WHEN search_id IS NULL THEN 'null_search_id'
        WHEN "timestamp" IS NULL THEN 'null_timestamp'
        WHEN position IS NOT NULL AND position < 1 THEN 'position_below_1'
        WHEN (position IS NULL) <> (product_id IS NULL) THEN 'position_without_product'
        WHEN clicked IS NULL OR carted IS NULL OR purchased IS NULL THEN 'bad_engagement_flag'
    END
"""


def fetch_row(con: duckdb.DuckDBPyConnection, sql: str) -> tuple:
    """The single row of a small query, fully fetched (DuckDB 2 treats a result read with
    ``fetchone`` as unfinished and then refuses ``register`` on the connection)."""
    rows = con.execute(sql).fetchall()
    return tuple(rows[0]) if rows else ()


def sql_literal(value: str) -> str:
    """A single-quoted SQL string literal (paths and dates interpolated into DuckDB SQL)."""
    return "'" + value.replace("'", "''") + "'"


def open_search_log(
    con: duckdb.DuckDBPyConnection,
    path: Path,
    quarantine_dir: Path,
    start: str | None,
    end: str | None,
) -> LogInputReport:
    """Create the tables the miners read:

    - ``search_facts``: one row per search: search_id, session_id, user_id, ts, query_id,
      n_results (impression rows shown), clicks, carts, purchases, any_click, any_purchase;
    - ``engaged``: one row per distinct (search_id, position, product_id) that was clicked, carted
      or purchased, with the three flags;
    - ``queries``: query_id and the normalised query text.

    Rows failing a row-level rule go to ``quarantine/search_log_rejected.parquet`` with a reason.
    """
    schema = check_search_log_schema(path)
    report = LogInputReport()
    source = f"read_parquet({sql_literal(str(path if path.is_file() else path / '**/*.parquet'))})"
    search_id = (
        "search_id"
        if "search_id" in schema.names
        # Logs without a request id: a search is one (session, time, query).
        else ('hash(session_id, "timestamp", query)')
    )
    # 0/1 integer flags are accepted; any other integer becomes null and is quarantined as
    # null_engagement_flag rather than silently read as "true".
    flags = {
        c: c
        if pa.types.is_boolean(schema.field(c).type)
        else f"CASE WHEN {c} IN (0, 1) THEN CAST({c} AS BOOLEAN) END"
        for c in ("clicked", "carted", "purchased")
    }
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW raw_log AS
        SELECT session_id, user_id, {search_id} AS search_id,
               CAST("timestamp" AS TIMESTAMP) AS "timestamp", CAST(query AS VARCHAR) AS query,
               position, CAST(product_id AS VARCHAR) AS product_id,
               {flags["clicked"]} AS clicked, {flags["carted"]} AS carted,
               {flags["purchased"]} AS purchased
        FROM {source}
        """
    )
    try:
        stats = fetch_row(con, 'SELECT count(*), min("timestamp"), max("timestamp") FROM raw_log')
    except duckdb.Error as e:  # e.g. invalid UTF-8 in a string column, flags not 0/1
        raise DataError(f"{path}: cannot read the search log ({str(e).splitlines()[0]})") from e
    report.rows_read = int(stats[0])
    if report.rows_read == 0:
        raise DataError(f"{path}: the search log has no rows")
    report.data_start = str(stats[1])
    report.data_end = str(stats[2])

    window = ["TRUE"]
    for bound, op, name in ((start, ">=", "--start"), (end, "<", "--end")):
        if bound:
            try:
                datetime.fromisoformat(bound)
            except ValueError as e:
                raise DataError(f"mine: {name} {bound!r} is not an ISO date (YYYY-MM-DD)") from e
            window.append(f'"timestamp" {op} TIMESTAMP {sql_literal(bound)}')
    in_window = " AND ".join(window)

    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE rejected AS
        SELECT * FROM (SELECT *, {_REJECT_REASON} AS reject_reason FROM raw_log)
        WHERE reject_reason IS NOT NULL
        """
    )
    con.execute(
        f"""
        CREATE OR REPLACE TEMP VIEW clean_log AS
        SELECT * FROM raw_log WHERE ({_REJECT_REASON}) IS NULL AND {in_window}
        """
    )
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE searches AS
        SELECT search_id, any_value(session_id) AS session_id, any_value(user_id) AS user_id,
               min("timestamp") AS ts, any_value(query) AS raw_query,
               count(*) AS n_rows, count(position) AS n_results,
               -- Exact duplicate positions without a DISTINCT aggregate (3x slower): a bitmask
               -- of positions 1..63; the rare deeper positions are counted separately below.
               count(position) FILTER (WHERE position < 64) - bit_count(bit_or(
                   CASE WHEN position < 64 THEN 1::UBIGINT << position::INTEGER END
               )) AS duplicate_rows
        FROM clean_log GROUP BY search_id
        """
    )

    # Normalise each distinct raw query once (not once per impression). A query that normalises
    # to nothing (spaces, a lone non-breaking space) is blank: its searches are quarantined here,
    # which is far cheaper than trimming every impression's text in SQL.
    raw_queries = con.execute("SELECT DISTINCT raw_query FROM searches").df()["raw_query"]
    qnorm = pd.DataFrame({"raw_query": raw_queries, "query": raw_queries.map(normalize_query)})
    blank = qnorm[qnorm["query"] == ""]
    qnorm = qnorm[qnorm["query"] != ""].copy()
    # Integer ids make every later GROUP BY and window cheaper than grouping by text; sorted so
    # ids do not depend on DuckDB's thread scheduling.
    qnorm["query_id"] = pd.factorize(qnorm["query"], sort=True)[0]
    if len(blank):
        con.register("blank_df", blank[["raw_query"]])
        con.execute(
            """CREATE OR REPLACE TEMP TABLE blank_searches AS
               SELECT search_id FROM searches WHERE raw_query IN (SELECT raw_query FROM blank_df)"""
        )
        con.execute(
            """INSERT INTO rejected
               SELECT *, 'null_or_empty_query' FROM raw_log
               WHERE search_id IN (SELECT search_id FROM blank_searches)"""
        )
        con.execute(
            "DELETE FROM searches WHERE search_id IN (SELECT search_id FROM blank_searches)"
        )
        con.unregister("blank_df")
    report.distinct_raw_queries = len(qnorm)
    report.distinct_queries = int(qnorm["query"].nunique())

    for reason, n in con.execute(
        "SELECT reject_reason, count(*) FROM rejected GROUP BY 1 ORDER BY 1"
    ).fetchall():
        report.rows_rejected[reason] = int(n)
    if report.rows_rejected:
        quarantine_dir.mkdir(parents=True, exist_ok=True)
        target = quarantine_dir / "search_log_rejected.parquet"
        con.execute(f"COPY rejected TO {sql_literal(str(target))} (FORMAT parquet)")

    n = fetch_row(con, "SELECT count(*), sum(duplicate_rows), sum(n_rows) FROM searches")
    deep = fetch_row(
        con,
        """SELECT count(*) - count(DISTINCT (search_id, position))
           FROM clean_log WHERE position >= 64""",
    )
    report.searches = int(n[0])
    report.duplicate_impressions = int(n[1] or 0) + int(deep[0] or 0)
    # Rows neither rejected nor in a kept search fell outside the window (saves a scan).
    rejected_rows = sum(report.rows_rejected.values())
    report.rows_outside_window = report.rows_read - rejected_rows - int(n[2] or 0)
    if report.searches == 0:
        span = f"the log spans {report.data_start} .. {report.data_end}"
        raise DataError(
            f"{path}: no valid searches between {start or 'the beginning'} and "
            f"{end or 'the end'} ({span}); widen --start/--end"
        )
    con.register("qnorm_df", qnorm)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE queries AS
           SELECT DISTINCT query_id, query FROM qnorm_df"""
    )
    # Blank-query searches were deleted from ``searches``; keep their engagement out too.
    not_blank = "AND search_id NOT IN (SELECT search_id FROM blank_searches)" if len(blank) else ""

    con.execute(
        f"""
        CREATE OR REPLACE TEMP TABLE engaged AS
        SELECT search_id, position, product_id, bool_or(clicked) AS clicked,
               bool_or(carted) AS carted, bool_or(purchased) AS purchased, count(*) AS copies
        FROM clean_log WHERE product_id IS NOT NULL AND (clicked OR carted OR purchased)
          {not_blank}
        GROUP BY search_id, position, product_id
        """
    )
    dup = fetch_row(con, "SELECT coalesce(sum(copies - 1), 0) FROM engaged")
    report.duplicate_engaged_events = int(dup[0])

    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE search_facts AS
        WITH per_search AS (
            SELECT search_id, count(*) FILTER (WHERE clicked) AS clicks,
                   count(*) FILTER (WHERE carted) AS carts,
                   count(*) FILTER (WHERE purchased) AS purchases
            FROM engaged GROUP BY search_id
        )
        SELECT s.search_id, s.session_id, s.user_id, s.ts, q.query_id, s.n_results,
               coalesce(p.clicks, 0) AS clicks, coalesce(p.carts, 0) AS carts,
               coalesce(p.purchases, 0) AS purchases,
               coalesce(p.clicks, 0) > 0 AS any_click, coalesce(p.purchases, 0) > 0 AS any_purchase
        FROM searches s JOIN qnorm_df q USING (raw_query)
        LEFT JOIN per_search p USING (search_id)
        """
    )
    con.unregister("qnorm_df")
    con.execute("DROP TABLE searches")
    return report
