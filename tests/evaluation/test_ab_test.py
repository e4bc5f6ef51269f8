"""The simulated A/B test on the tiny market: identical arms give exactly zero uplift; pages of
truly relevant products beat the engine's pages with an interval above zero."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from qrewrite.evaluation.ab_test import ABSettings, held_out_searches, simulate_ab
from qrewrite.evaluation.truth import GradedTruth
from qrewrite.search_engine import NO_RESULT, LexicalSearchEngine


@pytest.fixture(scope="module")
def replay(tiny_market):
    truth = GradedTruth.load(tiny_market)
    queries = pd.read_parquet(tiny_market / "truth" / "queries.parquet")["query"].unique()[:80]
    searches = held_out_searches(tiny_market, set(queries))
    engine = LexicalSearchEngine(truth.catalog["title"].tolist())
    idx, _ = engine.search(list(queries), 10)
    control = {q: row[row != NO_RESULT].tolist() for q, row in zip(queries, idx, strict=True)}
    return truth, searches, control


def test_held_out_searches_carry_users_and_intents(replay):
    _, searches, control = replay
    assert len(searches) > 0
    assert set(searches.columns) >= {"search_id", "user_id", "query", "intent_id"}
    assert set(searches["query"]) <= set(control)


def test_identical_arms_give_exactly_zero_uplift(replay):
    truth, searches, control = replay
    result = simulate_ab(
        searches, control, {"same": control}, truth.lookup.intents, truth.catalog, ABSettings(3)
    )
    out = result.arms["same"]
    assert out["ucvr_uplift"] == 0.0
    assert out["ucvr_uplift_ci_low"] == 0.0 and out["ucvr_uplift_ci_high"] == 0.0
    assert out["ucvr_uplift_query_ci_low"] == 0.0 and out["ucvr_uplift_query_ci_high"] == 0.0
    assert result.difference("same", "same") == (0.0, 0.0, 0.0)
    assert out["pages_changed"] == 0.0
    assert out["ucvr_control"] == out["ucvr_treatment"] > 0


def test_pages_of_relevant_products_raise_ucvr_with_ci_above_zero(replay):
    truth, searches, control = replay
    rows = truth.grade_rows(list(control))
    ideal = {
        q: np.argsort(-row, kind="stable")[:10].tolist()
        for q, row in zip(control, rows, strict=True)
        if row is not None
    }
    worst = {
        q: np.argsort(row, kind="stable")[:10].tolist()
        for q, row in zip(control, rows, strict=True)
    }
    result = simulate_ab(
        searches,
        control,
        {"ideal": ideal, "worst": worst},
        truth.lookup.intents,
        truth.catalog,
        ABSettings(replicas=5, bootstrap=300),
    )
    out = result.arms
    assert out["ideal"]["ucvr_uplift"] > 0 and out["ideal"]["ucvr_uplift_ci_low"] > 0
    assert out["worst"]["ucvr_uplift"] < 0 and out["worst"]["ucvr_uplift_ci_high"] < 0
    assert out["ideal"]["ucvr_uplift_query_ci_low"] > 0
    assert out["worst"]["ucvr_uplift_query_ci_high"] < 0
    assert out["ideal"]["ctr_uplift"] > 0
    # paired by query: the difference of the two uplifts, and which way it goes
    point, lo, hi = result.difference("worst", "ideal")
    assert point == pytest.approx(out["ideal"]["ucvr_uplift"] - out["worst"]["ucvr_uplift"])
    assert 0 < lo < point < hi
    assert result.difference("ideal", "worst")[0] == pytest.approx(-point)


def test_an_uplift_without_one_query_is_the_rest_of_the_queries(replay):
    """Setting a query aside leaves the uplift the other queries make: an arm whose pages differ
    from control on one query only changes nothing once that query is set aside."""
    truth, searches, control = replay
    rows = dict(zip(control, truth.grade_rows(list(control)), strict=True))
    head = [q for q in searches["query"].value_counts().index if rows.get(q) is not None][:8]
    arms = {q: {**control, q: np.argsort(-rows[q], kind="stable")[:10].tolist()} for q in head}
    result = simulate_ab(
        searches,
        control,
        arms,
        truth.lookup.intents,
        truth.catalog,
        ABSettings(replicas=5, bootstrap=300),
    )
    moved = [q for q in head if result.arms[q]["ucvr_uplift"] != 0]
    assert moved, "no head query's ideal page changed what shoppers bought"
    for q in moved:
        assert result.uplift_without(q, {q}) == (0.0, 0.0, 0.0)
        # nothing set aside: the uplift over every query, as the arm reports it
        assert result.uplift_without(q, set())[0] == pytest.approx(result.arms[q]["ucvr_uplift"])
