"""The promotion gate's decisions, as a pure function of metrics."""

from qrewrite.registry.config import RegistryConfig
from qrewrite.registry.gate import gate

NO_REWRITE = {"ucvr_uplift": 0.0, "hit_rate": 0.80, "relevance_rate": None}
# a challenger that clears every floor of the default config
HEALTHY = {
    "relevance_rate": 0.6,
    "served_relevance_rate": 0.9,
    "served_rate": 0.5,
    "ucvr_uplift_unfiltered": 0.02,
    "ndcg_at_10_uplift_unfiltered": 0.01,
}


def ok(**metrics) -> dict:
    return {**HEALTHY, **metrics}


def test_first_model_becomes_champion_when_it_beats_no_rewrite():
    d = gate(
        RegistryConfig(),
        ok(ucvr_uplift=0.03, ucvr_uplift_ci_low=0.01),
        champion=None,
        no_rewrite=NO_REWRITE,
    )
    assert d.promote and d.metric == "ucvr_uplift" and "first champion" in d.reason


def test_first_model_is_held_when_its_interval_reaches_zero():
    d = gate(
        RegistryConfig(),
        ok(ucvr_uplift=0.03, ucvr_uplift_ci_low=-0.01),
        champion=None,
        no_rewrite=NO_REWRITE,
    )
    assert not d.promote and "interval" in d.reason
    relaxed = RegistryConfig(require_ci_above_zero=False)
    assert gate(
        relaxed,
        ok(ucvr_uplift=0.03, ucvr_uplift_ci_low=-0.01),
        champion=None,
        no_rewrite=NO_REWRITE,
    ).promote


def test_first_model_is_held_when_it_loses_to_no_rewrite():
    d = gate(RegistryConfig(), ok(ucvr_uplift=-0.02), champion=None, no_rewrite=NO_REWRITE)
    assert not d.promote and "does not beat no-rewrite" in d.reason


def test_without_the_primary_metric_the_fallback_decides():
    hit_rate = RegistryConfig(fallback_metric="hit_rate")
    assert (
        gate(hit_rate, ok(hit_rate=0.85), champion=None, no_rewrite=NO_REWRITE).metric == "hit_rate"
    )
    assert gate(hit_rate, ok(hit_rate=0.85), champion=None, no_rewrite=NO_REWRITE).promote
    assert not gate(hit_rate, ok(hit_rate=0.80), champion=None, no_rewrite=NO_REWRITE).promote
    d = gate(RegistryConfig(), ok(relevance_rate=0.9), champion=None, no_rewrite=NO_REWRITE)
    assert not d.promote and "neither" in d.reason


def test_on_judged_data_ndcg_on_human_grades_decides_not_hit_rate():
    # judged data has no simulator, so no UCVR; a better hit rate with a worse page is held
    worse = {"hit_rate": 0.622, "ndcg_at_10_uplift": -0.28, "ndcg_at_10_uplift_ci_low": -0.33}
    d = gate(RegistryConfig(), ok(**worse), champion=None, no_rewrite=NO_REWRITE)
    assert not d.promote and d.metric == "ndcg_at_10_uplift"
    unsure = {"ndcg_at_10_uplift": 0.04, "ndcg_at_10_uplift_ci_low": -0.01}
    assert not gate(RegistryConfig(), ok(**unsure), champion=None, no_rewrite=NO_REWRITE).promote
    better = {"ndcg_at_10_uplift": 0.06, "ndcg_at_10_uplift_ci_low": 0.02}
    assert gate(RegistryConfig(), ok(**better), champion=None, no_rewrite=NO_REWRITE).promote


def test_challenger_must_beat_the_champion_by_the_margin():
    cfg = RegistryConfig(margin=0.01)
    champ = {"ucvr_uplift": 0.030, "relevance_rate": 0.50}
    assert not gate(
        cfg, ok(ucvr_uplift=0.035, relevance_rate=0.5), champion=champ, no_rewrite=NO_REWRITE
    ).promote
    d = gate(cfg, ok(ucvr_uplift=0.045, relevance_rate=0.5), champion=champ, no_rewrite=NO_REWRITE)
    assert d.promote and d.champion_value == 0.030 and d.challenger_value == 0.045


def test_challenger_may_not_lose_more_relevance_than_the_tolerance():
    cfg = RegistryConfig(relevance_tolerance=0.02)
    champ = {"ucvr_uplift": 0.03, "relevance_rate": 0.50}
    within = gate(
        cfg, ok(ucvr_uplift=0.05, relevance_rate=0.485), champion=champ, no_rewrite=NO_REWRITE
    )
    assert within.promote
    d = gate(cfg, ok(ucvr_uplift=0.05, relevance_rate=0.47), champion=champ, no_rewrite=NO_REWRITE)
    assert not d.promote and "relevance rate drops" in d.reason


def test_a_champion_without_the_metric_needs_a_person():
    d = gate(
        RegistryConfig(),
        ok(ucvr_uplift=0.05),
        champion={"relevance_rate": 0.5},
        no_rewrite=NO_REWRITE,
    )
    assert not d.promote and "promote by hand" in d.reason


def test_a_challenger_below_a_floor_is_held_even_when_it_wins():
    # the demo's collapsed first champion: vetting rescued a +1.2% uplift, the model alone was
    # -41.5% and its rewrites 1.4% relevant
    collapsed = ok(
        ucvr_uplift=0.012,
        ucvr_uplift_ci_low=0.010,
        relevance_rate=0.05,
        served_rate=0.017,
        ucvr_uplift_unfiltered=-0.415,
    )
    d = gate(RegistryConfig(), collapsed, champion=None, no_rewrite=NO_REWRITE)
    assert not d.promote
    assert "held by the floors (relevance_rate, served_rate, ucvr_uplift_unfiltered)" in d.reason
    failed = {c.name for c in d.checks if not c.passed}
    assert failed == {"relevance_rate", "served_rate", "ucvr_uplift_unfiltered"}
    # every check and its value is in the reason, passed or not
    assert "FAILED: ucvr_uplift_unfiltered -0.4150 >= 0" in d.reason
    assert "ok: served_relevance_rate 0.9000 >= 0.5" in d.reason
    # against a champion too
    champ = {"ucvr_uplift": 0.0, "relevance_rate": 0.05}
    assert not gate(RegistryConfig(), collapsed, champion=champ, no_rewrite=NO_REWRITE).promote


def test_a_floor_that_was_not_measured_holds_and_none_turns_it_off():
    d = gate(
        RegistryConfig(),
        {"ucvr_uplift": 0.03, "ucvr_uplift_ci_low": 0.01},
        champion=None,
        no_rewrite=NO_REWRITE,
    )
    assert not d.promote and "relevance_rate not measured" in d.reason
    off = RegistryConfig(
        min_relevance_rate=None,
        min_served_relevance_rate=None,
        min_served_rate=None,
        min_unfiltered_uplift=None,
    )
    d = gate(
        off, {"ucvr_uplift": 0.03, "ucvr_uplift_ci_low": 0.01}, champion=None, no_rewrite=NO_REWRITE
    )
    assert d.promote and d.checks == []


def test_on_judged_data_the_floor_is_the_unfiltered_ndcg_uplift():
    better = ok(ndcg_at_10_uplift=0.06, ndcg_at_10_uplift_ci_low=0.02)
    hurts_alone = {**better, "ndcg_at_10_uplift_unfiltered": -0.44}
    assert gate(RegistryConfig(), better, champion=None, no_rewrite=NO_REWRITE).promote
    d = gate(RegistryConfig(), hurts_alone, champion=None, no_rewrite=NO_REWRITE)
    assert not d.promote and "ndcg_at_10_uplift_unfiltered -0.4400" in d.reason


def test_a_win_inside_the_seed_spread_keeps_the_champion():
    cfg = RegistryConfig(seed_spread={"ucvr_uplift": 0.07})
    champ = {"ucvr_uplift": 0.20, "relevance_rate": 0.6}
    d = gate(cfg, ok(ucvr_uplift=0.25), champion=champ, no_rewrite=NO_REWRITE)
    assert not d.promote and "inside the spread that training seeds alone produce" in d.reason
    assert gate(cfg, ok(ucvr_uplift=0.28), champion=champ, no_rewrite=NO_REWRITE).promote
    # the spread is per metric: judged data's nDCG uplift has none recorded here
    champ_ndcg = {"ndcg_at_10_uplift": 0.01, "relevance_rate": 0.6}
    assert gate(cfg, ok(ndcg_at_10_uplift=0.02), champion=champ_ndcg, no_rewrite=NO_REWRITE).promote


def test_a_gain_the_queries_do_not_establish_keeps_the_champion():
    champ = {"ucvr_uplift": 0.20, "relevance_rate": 0.6}
    challenger = ok(ucvr_uplift=0.25)

    def decide(paired, **config):
        cfg = RegistryConfig(**config)
        return gate(cfg, challenger, champion=champ, no_rewrite=NO_REWRITE, paired_gain=paired)

    held = decide([0.05, -0.01, 0.12])
    assert not held.promote
    assert "[-0.0100, +0.1200] that does not lie above 0" in held.reason
    assert decide([0.05, 0.01, 0.09]).promote
    # not measured in the same run (None, or null where control bought nothing), or the check
    # turned off: the other checks decide
    assert decide(None).promote and decide([None, None, None]).promote
    assert decide([0.05, -0.01, 0.12], require_established_gain=False).promote
    # a paired gain of the primary metric says nothing where the fallback decides
    champ_ndcg = {"ndcg_at_10_uplift": 0.01, "relevance_rate": 0.6}
    assert gate(
        RegistryConfig(),
        ok(ndcg_at_10_uplift=0.02),
        champion=champ_ndcg,
        no_rewrite=NO_REWRITE,
        paired_gain=[0.05, -0.01, 0.12],
    ).promote
