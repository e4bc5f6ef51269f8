"""Property-based tests of labeling's input boundary (Hypothesis): whatever a candidates file
holds, ``label`` either stops with a one-line data error and writes nothing, or writes labels that
pass their contract with every pair it read labeled or counted as set aside."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qrewrite.contracts import validate_path
from qrewrite.errors import DataError
from qrewrite.labeling import label as label_module
from qrewrite.labeling.label import LabelConfig, label
from tests.labeling.fakes import TrigramEncoder

pytestmark = pytest.mark.slow

# pair texts as a log or a hand-made file holds them: controls, zero-width, bidi, NUL, blanks
HOSTILE = st.text(
    alphabet=st.sampled_from([*"ab shoe-'&\t", "\x00", "\u200b", "\u202e", "\ufeff", "\xa0"]),
    max_size=10,
)
PAIR = st.tuples(
    HOSTILE,
    st.one_of(HOSTILE, st.just("running shoes"), st.none()),
    st.sampled_from(["session_reformulation", "co_engagement", "engaged_title", "mystery", None]),
)


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(PAIR, min_size=1, max_size=20))
def test_label_either_refuses_or_accounts_for_every_pair(tiny_market: Path, monkeypatch, pairs):
    monkeypatch.setattr(label_module.Teacher, "encoder", property(lambda self: TrigramEncoder()))
    with tempfile.TemporaryDirectory() as tmp:
        candidates, out = Path(tmp) / "candidates.parquet", Path(tmp) / "labels.parquet"
        pd.DataFrame(pairs, columns=["query", "rewrite", "source"]).to_parquet(candidates)
        try:
            report = label(
                LabelConfig(), data_dir=tiny_market, candidates_path=candidates, out_path=out
            )
        except DataError as e:
            assert "\n" not in str(e) and str(candidates) in str(e)
            assert not out.exists()  # nothing half-written
            return
        assert report.pairs_read == len(pairs)
        assert report.pairs_labeled + sum(report.set_aside.values()) == len(pairs)
        if report.set_aside:
            rejected = pd.read_parquet(report.set_aside_file)
            assert len(rejected) == sum(report.set_aside.values())
        labeled = pd.read_parquet(out)
        assert len(labeled) == report.pairs_labeled
        result = validate_path("labeled_pairs", out)
        # whole-table rules (a mean, a row count) need a real batch's volume
        assert not result.row_rule_failures, result.summary_line()
