"""Property-based tests of mining's input boundary (Hypothesis): whatever a shop's search log
holds, ``qrewrite mine`` either stops with a one-line data error and writes nothing, or writes
outputs that pass their contracts with every impression it read kept or counted as set aside."""

from __future__ import annotations

import json
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qrewrite.cli import main
from qrewrite.contracts import validate_path
from tests.mining.logs import CATALOG

pytestmark = pytest.mark.slow

T0 = datetime(2026, 3, 2, 10, 0, 0)
# queries as shops and hostile users type them: controls, zero-width, bidi, NUL, blanks
HOSTILE = st.text(
    alphabet=st.sampled_from([*"abc shoe-'&\t", "\x00", "\u200b", "\u202e", "\ufeff", "\xa0"]),
    max_size=10,
)
IMPRESSION = st.tuples(
    st.integers(1, 3),  # session
    st.integers(1, 5),  # search within the session
    st.integers(0, 1200),  # seconds after T0
    HOSTILE,
    st.sampled_from([1, 2, 3, 0, -1, 5000, None]),  # position
    st.sampled_from(["P1", "P2", "P3", "P9", "", None]),  # product (P9: not in the catalog)
    st.sampled_from([(0, 0, 0), (1, 0, 0), (1, 1, 0), (1, 1, 1), (0, 0, 1)]),  # click, cart, buy
)


def _log(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "session_id": s,
                "user_id": s,
                "search_id": s * 10 + n,
                "timestamp": T0 + timedelta(seconds=t),
                "query": q,
                "position": pos,
                "product_id": pid,
                "clicked": bool(c),
                "carted": bool(a),
                "purchased": bool(b),
            }
            for s, n, t, q, pos, pid, (c, a, b) in rows
        ]
    ).astype({"position": "Int32"})


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(IMPRESSION, min_size=1, max_size=25))
def test_mine_either_refuses_or_accounts_for_every_impression(capsys, rows) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data, out = Path(tmp) / "data", Path(tmp) / "mined"
        data.mkdir()
        CATALOG.to_parquet(data / "catalog.parquet", index=False)
        _log(rows).to_parquet(data / "search_log.parquet", index=False)
        capsys.readouterr()
        code = main(["mine", "--data", str(data), "--out", str(out)])
        err = capsys.readouterr().err
        if code != 0:
            assert code == 2, err  # the data's fault, said in one line
            assert err.count("\n") == 1 and "qrewrite mine: error:" in err
            assert not out.exists()  # nothing half-written
            return
        report = json.loads((out / "mining_report.json").read_text())
        read = report["input"]
        assert read["rows_read"] == len(rows)
        rejected = sum(read["rows_rejected"].values())
        quarantine = out / "quarantine" / "search_log_rejected.parquet"
        assert (len(pd.read_parquet(quarantine)) if quarantine.exists() else 0) == rejected
        for contract, table in (
            ("rewrite_candidates", "rewrite_candidates.parquet"),
            ("query_stats", "query_stats.parquet"),
        ):
            result = validate_path(contract, out / table)
            # whole-table rules (a mean, a row count) need a real batch's volume
            assert not result.row_rule_failures, result.summary_line()
