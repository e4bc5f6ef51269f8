"""Arrow schemas of the tables handed between steps (documented in docs/data.md)."""

from __future__ import annotations

from datetime import datetime

import pyarrow as pa


def epoch_ms(iso_date: str) -> int:
    """Milliseconds since the Unix epoch of an ISO date/time read as UTC (log timestamps are
    naive UTC ``timestamp[ms]``)."""
    return int((datetime.fromisoformat(iso_date) - datetime(1970, 1, 1)).total_seconds() * 1000)


CATALOG = pa.schema(
    [
        pa.field("product_id", pa.string(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("product_type", pa.string()),
        pa.field("brand", pa.string()),
        pa.field("colour", pa.string()),
        pa.field("material", pa.string()),
        pa.field("size", pa.string()),
        pa.field("gender", pa.string()),
        pa.field("price", pa.float64()),
        pa.field("feature", pa.string()),
        pa.field("has_feature", pa.bool_()),
    ]
)

SEARCH_LOG = pa.schema(
    [
        pa.field("session_id", pa.int64(), nullable=False),
        pa.field("user_id", pa.int64(), nullable=False),
        pa.field("search_id", pa.int64(), nullable=False),
        pa.field("timestamp", pa.timestamp("ms"), nullable=False),
        pa.field("query", pa.string(), nullable=False),
        # position and product_id are null on the single row that logs a zero-result search
        pa.field("position", pa.int32()),
        pa.field("product_id", pa.string()),
        pa.field("clicked", pa.bool_(), nullable=False),
        pa.field("carted", pa.bool_(), nullable=False),
        pa.field("purchased", pa.bool_(), nullable=False),
    ]
)

# Columns a search log must have, and the Arrow type families each may take. Loose on widths
# (int32 vs int64, timestamp units) because shops export logs with many tools.
SEARCH_LOG_REQUIRED: dict[str, str] = {
    "session_id": "integer or string",
    "user_id": "integer or string",
    "timestamp": "timestamp",
    "query": "string",
    "position": "integer",
    "product_id": "string",
    "clicked": "boolean or 0/1 integer",
    "carted": "boolean or 0/1 integer",
    "purchased": "boolean or 0/1 integer",
}
