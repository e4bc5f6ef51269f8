"""The promotion gate's decisions, as a pure function of metrics."""

from qrewrite.registry.registry import RegistryConfig, gate

NO_REWRITE = {"ucvr_uplift": 0.0, "hit_rate": 0.80, "relevance_rate": None}


def test_first_model_becomes_champion_when_it_beats_no_rewrite():
    d = gate(RegistryConfig(), {"ucvr_uplift": 0.03, "ucvr_uplift_ci_low": 0.01}, None, NO_REWRITE)
    assert d.promote and d.metric == "ucvr_uplift" and "first champion" in d.reason


def test_first_model_is_held_when_its_interval_reaches_zero():
    d = gate(RegistryConfig(), {"ucvr_uplift": 0.03, "ucvr_uplift_ci_low": -0.01}, None, NO_REWRITE)
    assert not d.promote and "interval" in d.reason
    relaxed = RegistryConfig(require_ci_above_zero=False)
    assert gate(
        relaxed, {"ucvr_uplift": 0.03, "ucvr_uplift_ci_low": -0.01}, None, NO_REWRITE
    ).promote


def test_first_model_is_held_when_it_loses_to_no_rewrite():
    d = gate(RegistryConfig(), {"ucvr_uplift": -0.02}, None, NO_REWRITE)
    assert not d.promote and "does not beat no-rewrite" in d.reason


def test_without_the_primary_metric_the_fallback_decides():
    hit_rate = RegistryConfig(fallback_metric="hit_rate")
    assert gate(hit_rate, {"hit_rate": 0.85}, None, NO_REWRITE).metric == "hit_rate"
    assert gate(hit_rate, {"hit_rate": 0.85}, None, NO_REWRITE).promote
    assert not gate(hit_rate, {"hit_rate": 0.80}, None, NO_REWRITE).promote
    d = gate(RegistryConfig(), {"relevance_rate": 0.9}, None, NO_REWRITE)
    assert not d.promote and "neither" in d.reason


def test_on_judged_data_ndcg_on_human_grades_decides_not_hit_rate():
    # judged data has no simulator, so no UCVR; a better hit rate with a worse page is held
    worse = {"hit_rate": 0.622, "ndcg_at_10_uplift": -0.28, "ndcg_at_10_uplift_ci_low": -0.33}
    d = gate(RegistryConfig(), worse, None, NO_REWRITE)
    assert not d.promote and d.metric == "ndcg_at_10_uplift"
    unsure = {"ndcg_at_10_uplift": 0.04, "ndcg_at_10_uplift_ci_low": -0.01}
    assert not gate(RegistryConfig(), unsure, None, NO_REWRITE).promote
    better = {"ndcg_at_10_uplift": 0.06, "ndcg_at_10_uplift_ci_low": 0.02}
    assert gate(RegistryConfig(), better, None, NO_REWRITE).promote


def test_challenger_must_beat_the_champion_by_the_margin():
    cfg = RegistryConfig(margin=0.01)
    champ = {"ucvr_uplift": 0.030, "relevance_rate": 0.50}
    assert not gate(cfg, {"ucvr_uplift": 0.035, "relevance_rate": 0.5}, champ, NO_REWRITE).promote
    d = gate(cfg, {"ucvr_uplift": 0.045, "relevance_rate": 0.5}, champ, NO_REWRITE)
    assert d.promote and d.champion_value == 0.030 and d.challenger_value == 0.045


def test_challenger_may_not_lose_more_relevance_than_the_tolerance():
    cfg = RegistryConfig(relevance_tolerance=0.02)
    champ = {"ucvr_uplift": 0.03, "relevance_rate": 0.50}
    within = gate(cfg, {"ucvr_uplift": 0.05, "relevance_rate": 0.485}, champ, NO_REWRITE)
    assert within.promote
    d = gate(cfg, {"ucvr_uplift": 0.05, "relevance_rate": 0.47}, champ, NO_REWRITE)
    assert not d.promote and "relevance rate drops" in d.reason


def test_a_champion_without_the_metric_needs_a_person():
    d = gate(RegistryConfig(), {"ucvr_uplift": 0.05}, {"relevance_rate": 0.5}, NO_REWRITE)
    assert not d.promote and "promote by hand" in d.reason
