"""Reading the parquet tables handed between steps, with one-line errors a person can act on."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from qrewrite.errors import DataError


def read_parquet_table(path: str | Path, what: str, hint: str = "") -> pa.Table:
    """The table at ``path``, or a DataError naming the file and what is wrong with it.

    ``what`` names the table in messages ("labels", "candidates"); ``hint`` says how to make it.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: {what} file not found" + (f" ({hint})" if hint else ""))
    if p.is_file() and p.stat().st_size == 0:
        raise DataError(f"{p}: {what} file is empty (0 bytes)")
    try:
        return pq.read_table(p)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"{p}: not a readable parquet file ({e})") from e
