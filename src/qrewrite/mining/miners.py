"""The three rewrite miners and the per-query statistics, as DuckDB SQL.

Each function reads the temp tables made by :func:`qrewrite.mining.inputs.open_search_log`
(``search_facts``, ``engaged``), :func:`build_query_products` (``query_products``) and the
``catalog`` view, and returns a DuckDB relation, so the
work stays out of core until the final ``COPY``.
"""

from __future__ import annotations

import duckdb

from qrewrite.mining.config import MiningConfig


def build_query_products(con: duckdb.DuckDBPyConnection) -> None:
    """Materialise ``query_products``: engagement per (normalised query, product), deduplicated.

    Built once and read by the co-engagement and engaged-title miners and the pair evidence.
    """
    con.execute(
        """
        CREATE OR REPLACE TEMP TABLE query_products AS
        WITH agg AS (
            SELECT f.query_id, e.product_id,
                   count(*) FILTER (WHERE e.purchased) AS purchases,
                   count(*) FILTER (WHERE e.carted) AS carts,
                   count(*) FILTER (WHERE e.clicked) AS clicks
            FROM engaged e JOIN search_facts f USING (search_id)
            GROUP BY f.query_id, e.product_id
        )
        SELECT q.query, agg.* FROM agg JOIN queries q USING (query_id)
        """
    )


def mine_session_reformulations(
    con: duckdb.DuckDBPyConnection, cfg: MiningConfig
) -> duckdb.DuckDBPyRelation:
    """Pairs (q1, q2): in one session q1 bought nothing and q2, searched after it within
    ``cfg.reformulation_window_s`` seconds, was the first later search that bought something.

    Columns: query, rewrite, support (times seen), sessions.
    """
    return con.sql(
        f"""
        WITH ordered AS (
            SELECT session_id, ts, query_id, any_purchase,
                   first_value(CASE WHEN any_purchase THEN query_id END IGNORE NULLS) OVER w
                       AS next_query_id,
                   first_value(CASE WHEN any_purchase THEN ts END IGNORE NULLS) OVER w AS next_ts
            FROM search_facts
            WINDOW w AS (PARTITION BY session_id ORDER BY ts, search_id
                         ROWS BETWEEN 1 FOLLOWING AND UNBOUNDED FOLLOWING)
        ),
        pairs AS (
            SELECT query_id, next_query_id, count(*) AS support,
                   count(DISTINCT session_id) AS sessions
            FROM ordered
            WHERE NOT any_purchase AND next_query_id IS NOT NULL AND next_query_id <> query_id
              AND next_ts - ts <= to_seconds({int(cfg.reformulation_window_s)})
            GROUP BY query_id, next_query_id
            HAVING count(*) >= {int(cfg.min_reformulation_support)}
        )
        SELECT q.query, r.query AS rewrite, p.support, p.sessions
        FROM pairs p JOIN queries q ON q.query_id = p.query_id
        JOIN queries r ON r.query_id = p.next_query_id
        """
    )


def mine_co_engagement(
    con: duckdb.DuckDBPyConnection, cfg: MiningConfig
) -> duckdb.DuckDBPyRelation:
    """Pairs of queries that led to the same products: bought under both (weight 1) or clicked
    under both (weight ``cfg.co_click_weight``).

    A product bought under hundreds of queries would make a quadratic number of pairs with little
    information each, so each product keeps its ``cfg.max_queries_per_product`` most-engaged
    queries. Columns: query, rewrite, shared_purchases, shared_clicks, shared_products, score.
    """
    return con.sql(
        f"""
        WITH capped AS (
            SELECT * FROM query_products
            QUALIFY row_number() OVER (
                PARTITION BY product_id ORDER BY purchases DESC, clicks DESC, query
            ) <= {int(cfg.max_queries_per_product)}
        ),
        pairs AS (
            SELECT a.query, b.query AS rewrite,
                   count(*) FILTER (WHERE a.purchases > 0 AND b.purchases > 0) AS shared_purchases,
                   count(*) FILTER (WHERE a.clicks > 0 AND b.clicks > 0) AS shared_clicks,
                   count(*) AS shared_products
            FROM capped a JOIN capped b ON a.product_id = b.product_id AND a.query <> b.query
            GROUP BY a.query, b.query
        )
        SELECT *, shared_purchases + {float(cfg.co_click_weight)} * shared_clicks AS score
        FROM pairs
        WHERE shared_purchases + {float(cfg.co_click_weight)} * shared_clicks
              >= {float(cfg.min_co_engagement_score)}
        """
    )


def mine_engaged_titles(
    con: duckdb.DuckDBPyConnection, cfg: MiningConfig
) -> duckdb.DuckDBPyRelation:
    """Query -> title of a product bought or carted after it (BEQUE's title context), keeping the
    ``cfg.max_titles_per_query`` most-engaged titles. Events on products missing from the catalog
    cannot give a title; the caller counts them.

    Columns: query, rewrite (the title), product_id, purchases, carts, clicks.
    """
    return con.sql(
        f"""
        SELECT qp.query, c.title AS rewrite, qp.product_id, qp.purchases, qp.carts, qp.clicks
        FROM query_products qp JOIN catalog c USING (product_id)
        WHERE qp.purchases + qp.carts >= {int(cfg.min_engaged_title_support)}
        QUALIFY row_number() OVER (
            PARTITION BY qp.query ORDER BY qp.purchases DESC, qp.carts DESC, qp.product_id
        ) <= {int(cfg.max_titles_per_query)}
        """
    )


def compute_query_stats(con: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyRelation:
    """Per normalised query: traffic, engagement, rates, and the products bought and clicked.

    ``ctr`` and ``cvr`` are shares of searches with at least one click / purchase.
    """
    return con.sql(
        """
        WITH per_query AS (
            SELECT query_id, count(*) AS searches, count(DISTINCT session_id) AS sessions,
                   count(DISTINCT user_id) AS users,
                   sum(clicks)::BIGINT AS clicks, sum(carts)::BIGINT AS carts,
                   sum(purchases)::BIGINT AS purchases,
                   avg(any_click::INTEGER) AS ctr, avg(any_purchase::INTEGER) AS cvr,
                   count(*) FILTER (WHERE n_results = 0) AS zero_result_searches,
                   min(ts) AS first_seen, max(ts) AS last_seen
            FROM search_facts GROUP BY query_id
        ),
        products AS (
            SELECT f.query_id,
                   list_sort(list(DISTINCT e.product_id) FILTER (WHERE e.purchased))
                       AS purchased_products,
                   list_sort(list(DISTINCT e.product_id) FILTER (WHERE e.clicked))
                       AS clicked_products
            FROM engaged e JOIN search_facts f USING (search_id) GROUP BY f.query_id
        )
        SELECT q.query, p.* EXCLUDE (query_id),
               coalesce(x.purchased_products, []::VARCHAR[]) AS purchased_products,
               coalesce(x.clicked_products, []::VARCHAR[]) AS clicked_products
        FROM per_query p JOIN queries q USING (query_id)
        LEFT JOIN products x USING (query_id)
        """
    )
