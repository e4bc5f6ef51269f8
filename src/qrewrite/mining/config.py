"""Settings of ``qrewrite mine`` (section ``mine:`` of a preset)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class MiningConfig:
    """Thresholds of the miners and DuckDB resources.

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
    # the engaged titles of a query reduced to query-length rewrites (qrewrite.mining.titles):
    # its words in the titles' spelling, plus the words most of its bought titles share
    engaged_title_rewrites: bool = True
    max_engaged_title_rewrites_per_query: int = 3
    engaged_title_min_share: float = 0.5  # share of a query's engaged titles a word needs
    # a judged import (judgments.parquet): candidates from what people graded relevant
    # (qrewrite.mining.judged): relevant titles reduced to query-length rewrites, and queries
    # sharing relevant products
    judged_rewrites: bool = True
    max_judged_rewrites_per_query: int = 3
    judged_min_share: float = 0.5  # share of a query's relevant titles a word needs to be added
    duckdb_threads: int = 0  # 0: DuckDB's default (all cores)
    duckdb_memory_limit: str = "3GB"


def mining_window(
    window_end: str = "", window_days: int = 0, scheduled_time: str = ""
) -> tuple[str | None, str | None]:
    """The ``(start, end)`` dates a pipeline run mines (ISO dates, end exclusive).

    ``window_end`` wins; else a recurring run's scheduled time (its date, so a nightly retrain
    mines the days up to the night it was scheduled for, however late it starts); else the whole
    log. ``window_days`` > 0 bounds the window's length. Unresolved placeholders (a run that was
    not scheduled) count as unset.
    """
    import datetime as dt

    from qrewrite.errors import ConfigError

    def _date(text: str, what: str) -> dt.date | None:
        text = (text or "").strip()
        if not text or text.startswith("{{") or text.startswith("1970-01-01"):
            return None
        try:
            return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).date()
        except ValueError as e:
            raise ConfigError(f"{what} {text!r}: expected an ISO date such as 2026-02-01") from e

    if window_days < 0:
        raise ConfigError(f"window_days {window_days}: expected 0 (whole log) or more days")
    end = _date(window_end, "window_end") or _date(scheduled_time, "scheduled time")
    if end is None:
        return None, None
    start = end - dt.timedelta(days=window_days) if window_days else None
    return (start.isoformat() if start else None), end.isoformat()
