"""Hand-built search logs for mining tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qrewrite import schemas

T0 = datetime(2026, 3, 2, 10, 0, 0)

CATALOG = pd.DataFrame(
    {
        "product_id": ["P1", "P2", "P3"],
        "title": ["Nordvik Men's Running Shoes", "Bruvva Decaf Coffee", "Cucina Mug"],
    }
)


def search(
    session: int,
    search_id: int,
    seconds: int,
    query: str,
    results: list[tuple[str, str]],  # (product_id, actions: "" / "c" / "cb" / "cab")
    user: int | None = None,
) -> list[dict]:
    """One search's impressions; actions c=click, a=add to cart, b=buy (cart implied)."""
    ts = T0 + timedelta(seconds=seconds)
    base = {
        "session_id": session,
        "user_id": user if user is not None else session,
        "search_id": search_id,
        "timestamp": ts,
        "query": query,
    }
    if not results:
        return [
            {
                **base,
                "position": None,
                "product_id": None,
                "clicked": False,
                "carted": False,
                "purchased": False,
            }
        ]
    return [
        {
            **base,
            "position": i + 1,
            "product_id": pid,
            "clicked": "c" in act,
            "carted": "a" in act or "b" in act,
            "purchased": "b" in act,
        }
        for i, (pid, act) in enumerate(results)
    ]


def write_market(folder: Path, rows: list[dict], catalog: pd.DataFrame = CATALOG) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    catalog.to_parquet(folder / "catalog.parquet", index=False)
    table = pa.Table.from_pylist(rows, schema=schemas.SEARCH_LOG)
    pq.write_table(table, folder / "search_log.parquet")
    return folder


def reference_log() -> list[dict]:
    """Sessions with known reformulations, co-engagement and engaged titles.

    S1: "kicks" (nothing bought) -> "running shoes" (bought P1) 60 s later.
    S2: "Kicks " (no results) -> "sneakers" (click only) -> "running shoes" (bought P1).
    S3: "kicks" -> "running shoes" bought, but 2000 s later: outside the 600 s window.
    S4: "decaf coffee" bought P2. S5: "coffee without caffeine" bought P2.
    S6: "running shoes" bought P1 straight away (no reformulation).
    """
    return [
        *search(1, 10, 0, "kicks", [("P3", "")]),
        *search(1, 11, 60, "running shoes", [("P1", "cab"), ("P3", "")]),
        *search(2, 20, 0, "Kicks ", []),
        *search(2, 21, 30, "sneakers", [("P1", "c")]),
        *search(2, 22, 90, "running shoes", [("P1", "cb")]),
        *search(3, 30, 0, "kicks", [("P3", "")]),
        *search(3, 31, 2000, "running shoes", [("P1", "cb")]),
        *search(4, 40, 0, "decaf coffee", [("P2", "cab"), ("P3", "c")]),
        *search(5, 50, 0, "coffee without caffeine", [("P3", ""), ("P2", "cb")]),
        *search(6, 60, 0, "running shoes", [("P1", "cb")]),
    ]
