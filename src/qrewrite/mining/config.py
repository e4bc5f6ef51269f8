"""Settings of ``qrewrite mine`` (section ``mine:`` of a preset)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MiningConfig:
    """Thresholds of the three miners and DuckDB resources.

    ``start``/``end`` bound the time window (ISO dates, end exclusive); scheduled retrains set them.
    """

    start: str | None = None
    end: str | None = None
    reformulation_window_s: int = 600
    min_reformulation_support: int = 1
    co_click_weight: float = 0.3
    min_co_engagement_score: float = 1.0
    max_queries_per_product: int = 50
    min_engaged_title_support: int = 1
    max_titles_per_query: int = 5
    max_candidates_per_query: int = 20
    duckdb_threads: int = 0  # 0: DuckDB's default (all cores)
    duckdb_memory_limit: str = "3GB"
