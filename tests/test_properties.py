"""Property-based tests of the input boundary (Hypothesis): whatever a shop's file or preset
holds, a step either stops with a one-line error of the right kind, or writes an output that
passes its contract with every row accounted for."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qrewrite.config import load_config
from qrewrite.errors import ConfigError, DataError
from qrewrite.text import INVISIBLE, normalize_query

pytestmark = pytest.mark.slow

# text as shops and hostile users produce it: letters, spaces, controls, zero-width, bidi, NUL
HOSTILE = st.text(
    alphabet=st.sampled_from([*"abcxyz ABC-'&;#\t", "\x00", "\u200b", "\u202e", "\ufeff"]),
    max_size=12,
)
GRADES = st.sampled_from(["E", "S", "C", "I", "e ", "", "n/a", "exact", "2", "NaN"])


@given(HOSTILE)
def test_normalised_queries_are_visible_stable_and_trimmed(text: str) -> None:
    q = normalize_query(text)
    assert normalize_query(q) == q
    assert not INVISIBLE.search(q)
    assert q == q.strip() and "  " not in q


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    st.lists(
        st.tuples(HOSTILE, st.sampled_from(["P1", "P2", "P3", "", " "]), HOSTILE, GRADES),
        min_size=1,
        max_size=12,
    )
)
def test_import_judged_either_refuses_or_accounts_for_every_row(rows) -> None:
    from qrewrite.contracts import validate_path
    from qrewrite.importing.judged import JudgedImportConfig, import_judged

    columns = ["query", "product_id", "product_title", "esci_label"]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "judged.parquet"
        pd.DataFrame(rows, columns=columns).to_parquet(src)
        out = Path(tmp) / "out"
        try:
            manifest = import_judged(
                JudgedImportConfig(grade_scale="esci"), input_path=src, out_dir=out
            )
        except DataError as e:
            assert "\n" not in str(e) and str(src) in str(e)
            assert not out.exists()  # nothing half-written
            return
        counts = manifest.counts
        assert counts["rows_read"] == len(rows)
        assert counts["judgments"] + sum(counts["rows_rejected"].values()) == len(rows)
        judged = pd.read_parquet(out / "judgments.parquet")
        assert judged["query"].map(lambda q: q == normalize_query(q) and q != "").all()
        assert validate_path("catalog", out / "catalog.parquet").success
        # the search log's row rules (its statistical ones need more than a dozen rows)
        log = pd.read_parquet(out / "search_log.parquet")
        assert log["query"].str.len().between(1, 300).all()
        assert log["position"].between(1, 1000).all()
        assert not log.duplicated(["search_id", "position"]).any()


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=200))
def test_any_preset_text_loads_or_is_a_one_line_config_error(text: str) -> None:
    from qrewrite.mining.config import MiningConfig

    with tempfile.TemporaryDirectory() as tmp:
        preset = Path(tmp) / "p.yaml"
        preset.write_text(text, encoding="utf-8")
        try:
            load_config(MiningConfig, preset, "mine")
        except ConfigError as e:
            assert "\n" not in str(e) and len(str(e)) < 1000
