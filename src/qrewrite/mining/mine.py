"""``qrewrite mine``: search log + catalog -> ``rewrite_candidates`` and ``query_stats``."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd
import pyarrow.parquet as pq

from qrewrite import __version__
from qrewrite.errors import ConfigError, DataError
from qrewrite.mining.config import MiningConfig
from qrewrite.mining.inputs import fetch_row, open_search_log, parquet_schema, sql_literal
from qrewrite.mining.judged import JUDGED_SOURCES, judged_candidates
from qrewrite.mining.miners import (
    build_query_products,
    compute_query_stats,
    mine_co_engagement,
    mine_engaged_titles,
    mine_session_reformulations,
)
from qrewrite.mining.report import write_mining_report
from qrewrite.mining.titles import ENGAGED_TITLE_REWRITE, engaged_title_rewrites
from qrewrite.outputs import staged_output
from qrewrite.tables import read_judgments, table_fingerprint

log = logging.getLogger(__name__)

SOURCES = (
    "session_reformulation",
    "co_engagement",
    "engaged_title",
    ENGAGED_TITLE_REWRITE,
    *JUDGED_SOURCES,
)
# what mine writes into its output folder, and replaces as a whole on every run
MINED_OUTPUTS = (
    "rewrite_candidates.parquet",
    "query_stats.parquet",
    "mining_report.json",
    "mining_report.md",
    "query_frequency.png",
    "quarantine",
)


def _open_catalog(con: duckdb.DuckDBPyConnection, path: Path) -> int:
    schema = parquet_schema(path, "catalog")
    missing = [c for c in ("product_id", "title") if c not in schema.names]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}")
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE catalog AS
            SELECT CAST(product_id AS VARCHAR) AS product_id, CAST(title AS VARCHAR) AS title
            FROM read_parquet({sql_literal(str(path))})"""
    )
    n, distinct, null_titles = fetch_row(
        con, "SELECT count(*), count(DISTINCT product_id), count(*) - count(title) FROM catalog"
    )
    if n == 0:
        raise DataError(f"{path}: the catalog has no rows")
    if distinct != n:
        raise DataError(f"{path}: column product_id has {n - distinct} duplicated value(s)")
    if null_titles:
        raise DataError(f"{path}: column title has {null_titles} null value(s)")
    return int(n)


_CANDIDATE_TYPES = {
    "query": "string",
    "rewrite": "string",
    "source": "string",
    "score": "float64",
    "support": "int64",
    "shared_purchases": "int64",
    "shared_clicks": "int64",
    "product_id": "string",
}


def _title_rewrites(config: MiningConfig, con: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Candidates from the engaged titles mined into ``engaged_titles`` (none when off)."""
    engaged = con.sql(
        "SELECT query, rewrite AS title, purchases, carts, clicks FROM engaged_titles"
        + ("" if config.engaged_title_rewrites else " LIMIT 0")
    ).df()
    out = engaged_title_rewrites(
        engaged,
        max_rewrites_per_query=config.max_engaged_title_rewrites_per_query,
        min_share=config.engaged_title_min_share,
    )
    return out.astype(_CANDIDATE_TYPES)


def _judged_rewrites(config: MiningConfig, data: Path) -> pd.DataFrame:
    """Candidates from the data's judgments (empty without them, or when switched off)."""
    judgments = read_judgments(data) if config.judged_rewrites else None
    if judgments is None:  # a log without judgments: the catalog need not be read again
        judgments = pd.DataFrame({"query": [], "product_id": [], "grade": []})
        catalog = pd.DataFrame({"product_id": [], "title": []})
    else:
        catalog = pd.read_parquet(data / "catalog.parquet", columns=["product_id", "title"])
    out = judged_candidates(
        judgments,
        catalog,
        max_rewrites_per_query=config.max_judged_rewrites_per_query,
        min_share=config.judged_min_share,
        max_queries_per_product=config.max_queries_per_product,
    )
    return out.astype(_CANDIDATE_TYPES)


def _candidates_sql(cfg: MiningConfig) -> str:
    return f"""
    WITH reform AS (
        SELECT r.query, r.rewrite, 'session_reformulation' AS source,
               r.support::DOUBLE AS score, r.support::BIGINT AS support
        FROM reformulations r
    ),
    reform_evidence AS (
        SELECT p.query, p.rewrite,
               count(*) FILTER (WHERE a.purchases > 0 AND b.purchases > 0) AS shared_purchases,
               count(*) FILTER (WHERE a.clicks > 0 AND b.clicks > 0) AS shared_clicks
        FROM reform p
        JOIN query_products a ON a.query = p.query
        JOIN query_products b ON b.query = p.rewrite AND b.product_id = a.product_id
        GROUP BY p.query, p.rewrite
    ),
    unioned AS (
        SELECT r.*, coalesce(e.shared_purchases, 0) AS shared_purchases,
               coalesce(e.shared_clicks, 0) AS shared_clicks, NULL::VARCHAR AS product_id
        FROM reform r LEFT JOIN reform_evidence e USING (query, rewrite)
        UNION ALL
        SELECT query, rewrite, 'co_engagement', score, shared_products, shared_purchases,
               shared_clicks, NULL
        FROM co_engagement
        UNION ALL
        SELECT query, rewrite, 'engaged_title', (purchases + carts)::DOUBLE,
               purchases + carts, purchases, clicks, product_id
        FROM engaged_titles
        UNION ALL
        SELECT query, rewrite, source, score, support, shared_purchases, shared_clicks,
               product_id
        FROM title_rewrites
        UNION ALL
        SELECT query, rewrite, source, score, support, shared_purchases, shared_clicks,
               product_id
        FROM judged_rewrites
    ),
    capped AS (
        SELECT * FROM unioned
        QUALIFY row_number() OVER (
            PARTITION BY query, source ORDER BY score DESC, rewrite, product_id
        ) <= {int(cfg.max_candidates_per_query)}
    )
    SELECT c.query, c.rewrite, c.source, c.score, c.support, c.shared_purchases, c.shared_clicks,
           c.product_id, qs.searches AS query_searches, qs.cvr AS query_cvr,
           rs.searches AS rewrite_searches, rs.cvr AS rewrite_cvr
    FROM capped c
    JOIN query_stats qs ON qs.query = c.query
    LEFT JOIN query_stats rs ON rs.query = c.rewrite AND c.source <> 'engaged_title'
    ORDER BY c.query, c.source, c.score DESC, c.rewrite, c.product_id
    """


@dataclass
class MiningReport:
    """What ``mine`` did; :meth:`to_dict` is ``mining_report.json``."""

    qrewrite_version: str
    data_dir: str
    config: dict[str, Any]  # ``asdict`` of :class:`MiningConfig`
    input: dict[str, Any]  # what the search log held: rows read, set aside, duplicates, window
    catalog_products: int
    engaged_pairs_with_unknown_product: int
    queries: int
    candidates: dict[str, int]  # per source
    outputs: dict[str, str]  # rewrite_candidates, query_stats
    fingerprints: dict[str, str]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The report as a mapping, keys in the order of ``mining_report.json``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary_lines(self, out_dir: str | Path) -> list[str]:
        """What ``mine`` says when it is done: counts, rows set aside, duplicates, outputs."""
        inp = self.input
        cands = ", ".join(f"{k} {v:,}" for k, v in self.candidates.items())
        lines = [
            f"mine: {inp['rows_read']:,} impressions, {inp['searches']:,} searches, "
            f"{self.queries:,} queries -> candidates: {cands} ({self.seconds:.1f}s)"
        ]
        set_aside = {
            **inp["rows_rejected"],
            **(
                {"outside_window": inp["rows_outside_window"]} if inp["rows_outside_window"] else {}
            ),
        }
        if set_aside:
            lines.append(
                "mine: set aside rows: "
                + ", ".join(f"{k} {v:,}" for k, v in set_aside.items())
                + (
                    f"; rejected rows in {Path(out_dir) / 'quarantine'}"
                    if inp["rows_rejected"]
                    else ""
                )
            )
        if inp["duplicate_impressions"] + inp["duplicate_engaged_events"]:
            lines.append(
                f"mine: counted duplicated events once: {inp['duplicate_impressions']:,} "
                f"impressions, {inp['duplicate_engaged_events']:,} engagement events"
            )
        if self.engaged_pairs_with_unknown_product:
            lines.append(
                f"mine: {self.engaged_pairs_with_unknown_product:,} (query, product) engagements"
                " name products missing from the catalog; they give no engaged_title candidates"
            )
        lines.append(
            f"mine: wrote {out_dir}/rewrite_candidates.parquet, query_stats.parquet, "
            "mining_report.json; read mining_report.md"
        )
        return lines


def mine(config: MiningConfig, *, data_dir: str | Path, out_dir: str | Path) -> MiningReport:
    """Mine ``data_dir/search_log.parquet`` (+ ``catalog.parquet``) into ``out_dir``.

    Writes ``rewrite_candidates.parquet``, ``query_stats.parquet``, ``mining_report.json``,
    ``mining_report.md`` (with ``query_frequency.png``) and, when rows were set aside,
    ``quarantine/search_log_rejected.parquet``, all at once when mining succeeds
    (:func:`qrewrite.outputs.staged_output`). Returns the report.
    """
    data, out = Path(data_dir), Path(out_dir)
    with staged_output(out, MINED_OUTPUTS, step="mine", inputs=[data]) as stage:
        return _mine(config, data, stage, out)


def _mine(config: MiningConfig, data: Path, stage: Path, out: Path) -> MiningReport:
    """:func:`mine`, writing into ``stage``; the report names the final paths in ``out``."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="qrewrite-duckdb-", dir=stage) as spill:
        con = duckdb.connect()
        try:
            try:
                con.execute(f"SET memory_limit = {sql_literal(config.duckdb_memory_limit)}")
            except duckdb.Error as e:  # the setting's fault, not the data's
                raise ConfigError(
                    f"mine.duckdb_memory_limit={config.duckdb_memory_limit!r}: DuckDB cannot use "
                    f"it ({str(e).splitlines()[0][:120]}); expected a size such as 3GB"
                ) from e
            con.execute(f"SET temp_directory = {sql_literal(spill)}")
            if config.duckdb_threads:
                con.execute(f"SET threads = {int(config.duckdb_threads)}")
            n_products = _open_catalog(con, data / "catalog.parquet")
            log.info("mine: reading %s", data / "search_log.parquet")
            inputs = open_search_log(
                con, data / "search_log.parquet", stage / "quarantine", config.start, config.end
            )
            log.info("mine: %d searches; running the miners", inputs.searches)
            build_query_products(con)
            con.execute("CREATE TEMP TABLE query_stats AS " + compute_query_stats(con).sql_query())
            for name, miner in (
                ("reformulations", mine_session_reformulations),
                ("co_engagement", mine_co_engagement),
                ("engaged_titles", mine_engaged_titles),
            ):
                con.execute(f"CREATE TEMP TABLE {name} AS " + miner(con, config).sql_query())
            for name, frame in (
                ("title_rewrites", _title_rewrites(config, con)),
                ("judged_rewrites", _judged_rewrites(config, data)),
            ):
                con.register("frame", frame)
                con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM frame")
                con.unregister("frame")
            unknown = fetch_row(
                con,
                """SELECT count(*) FROM query_products
                   WHERE purchases + carts > 0
                     AND product_id NOT IN (SELECT product_id FROM catalog)""",
            )
            con.execute(
                f"COPY (SELECT * FROM query_stats ORDER BY query) TO "
                f"{sql_literal(str(stage / 'query_stats.parquet'))} (FORMAT parquet)"
            )
            con.execute(
                f"COPY ({_candidates_sql(config)}) TO "
                f"{sql_literal(str(stage / 'rewrite_candidates.parquet'))} (FORMAT parquet)"
            )
            per_source = dict(
                con.execute(
                    f"""SELECT source, count(*) FROM read_parquet(
                        {sql_literal(str(stage / "rewrite_candidates.parquet"))}) GROUP BY 1"""
                ).fetchall()
            )
            n_queries = fetch_row(con, "SELECT count(*) FROM query_stats")
        except duckdb.Error as e:
            raise DataError(f"{data}: mining failed in DuckDB ({str(e).splitlines()[0]})") from e
        finally:
            con.close()

    report = MiningReport(
        qrewrite_version=__version__,
        data_dir=str(data),
        config=asdict(config),
        input=inputs.as_dict(),
        catalog_products=n_products,
        engaged_pairs_with_unknown_product=int(unknown[0]),
        queries=int(n_queries[0]),
        candidates={s: int(per_source.get(s, 0)) for s in SOURCES},
        outputs={
            "rewrite_candidates": str(out / "rewrite_candidates.parquet"),
            "query_stats": str(out / "query_stats.parquet"),
        },
        fingerprints={
            name: table_fingerprint(pq.read_table(stage / f"{name}.parquet"))
            for name in ("rewrite_candidates", "query_stats")
        },
        seconds=round(time.perf_counter() - t0, 3),
    )
    (stage / "mining_report.json").write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    stats = pd.read_parquet(
        stage / "query_stats.parquet", columns=["searches", "cvr", "ctr", "zero_result_searches"]
    )
    write_mining_report(report.to_dict(), stats, stage)
    return report
