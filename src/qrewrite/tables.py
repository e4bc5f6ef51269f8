"""Reading the parquet tables handed between steps, with one-line errors a person can act on."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qrewrite.errors import DataError


def not_found(path: Path) -> str:
    """Why ``path`` cannot be opened though it exists as a name: a link that leads nowhere."""
    try:
        path.resolve(strict=True)
    except RuntimeError:  # Python < 3.13 reports a loop so
        return "a symbolic link in a loop"
    except OSError as e:
        if "loop" in str(e).lower() or getattr(e, "errno", None) == 40:  # ELOOP
            return "a symbolic link in a loop"
    return f"a symbolic link to {os.readlink(path)}, which does not exist"


def read_parquet_table(path: str | Path, what: str, hint: str = "") -> pa.Table:
    """The table at ``path``, or a DataError naming the file and what is wrong with it.

    ``what`` names the table in messages ("labels", "candidates"); ``hint`` says how to make it.
    """
    p = Path(path)
    if not p.exists():
        raise DataError(
            f"{p}: {not_found(p)}"
            if p.is_symlink()
            else f"{p}: {what} file not found" + (f" ({hint})" if hint else "")
        )
    if p.is_file() and p.stat().st_size == 0:
        raise DataError(f"{p}: {what} file is empty (0 bytes)")
    if p.is_dir() and not any(p.glob("*.parquet")):
        raise DataError(f"{p}: is a directory, not a {what} parquet file")
    try:
        schema = pq.read_schema(p) if p.is_file() else None
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"{p}: not a readable parquet file ({str(e).splitlines()[0][:200]})") from e
    if schema is not None:
        seen: set[str] = set()
        for name in schema.names:
            if name in seen:
                raise DataError(f"{p}: column {name!r} appears twice; keep one")
            seen.add(name)
    try:
        return pq.read_table(p)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"{p}: not a readable parquet file ({str(e).splitlines()[0][:200]})") from e


def table_fingerprint(table: pa.Table | pd.DataFrame) -> dict[str, str | int]:
    """What a step handed on, in a few bytes: row count, a hash of the content whatever the row
    order, and a hash of the order too. Two machines that disagree on a step's output disagree
    here first (floats are hashed by their bits); each step records these in its report.
    """
    df = table.to_pandas() if isinstance(table, pa.Table) else table
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object and any(
            isinstance(v, list | tuple | dict | np.ndarray) for v in df[col].head(50)
        ):
            df[col] = [json.dumps(_plain(v), sort_keys=True, default=str) for v in df[col]]
    rows = pd.util.hash_pandas_object(df, index=False).to_numpy(dtype=np.uint64)
    columns = hashlib.blake2b(",".join(map(str, df.columns)).encode(), digest_size=4).hexdigest()
    content = int(rows.sum(dtype=np.uint64))  # wraps modulo 2**64: order does not matter
    order = hashlib.blake2b(rows.tobytes(), digest_size=8).hexdigest()
    return {"rows": len(df), "content": f"{columns}-{content:016x}", "order": order}


def _plain(value: object) -> object:
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def read_judgments(data_dir: str | Path) -> pd.DataFrame | None:
    """The human judgments an import-judged directory holds as input (``judgments.parquet``:
    query, product_id, grade 0-2), or None."""
    path = Path(data_dir) / "judgments.parquet"
    if not path.exists():
        return None
    table = read_parquet_table(path, "judgments", "re-run `qrewrite import-judged`")
    missing = {"query", "product_id", "grade"} - set(table.column_names)
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
    return table.to_pandas()
