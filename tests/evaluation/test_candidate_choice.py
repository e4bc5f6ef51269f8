"""Which trained model evaluation puts forward: GRPO's only when it improves on the SFT model it
came from (issue 15's bar), the SFT model otherwise, with the reason in the report."""

from __future__ import annotations

import math

import pytest

from qrewrite.cli import main
from qrewrite.evaluation.evaluate import ALIGNED, MULTI_TASK_SFT, choose_candidate
from qrewrite.evaluation.report import headline


def _row(uplift: float | None, relevance: float | None, **more: float | None) -> dict:
    return {"ucvr_uplift_unfiltered": uplift, "relevance_rate_truth": relevance, **more}


def _chosen(sft: dict, grpo: dict) -> str:
    variants = {MULTI_TASK_SFT: sft, ALIGNED: grpo}
    return choose_candidate(variants, preferred=ALIGNED, fallback=MULTI_TASK_SFT).chosen


@pytest.mark.parametrize(
    ("sft", "grpo", "chosen"),
    [
        # seed 7 of make bench-quality at 87df1b4: same relevance, far lower UCVR
        (_row(0.223, 0.608), _row(0.050, 0.615), MULTI_TASK_SFT),
        # seed 13: higher UCVR, more relevant
        (_row(0.414, 0.614), _row(0.430, 0.634), ALIGNED),
        # higher UCVR bought with 1.5 points of relevance: not an improvement
        (_row(0.20, 0.60), _row(0.25, 0.585), MULTI_TASK_SFT),
        # ... a point less is within the bar
        (_row(0.20, 0.60), _row(0.25, 0.595), ALIGNED),
        # a tie is no improvement
        (_row(0.20, 0.60), _row(0.20, 0.60), MULTI_TASK_SFT),
        # no truth: the teacher's relevance decides
        (
            _row(0.20, None, relevance_rate=0.70),
            _row(0.25, None, relevance_rate=0.65),
            MULTI_TASK_SFT,
        ),
        # no A/B test (judged data): nDCG@10 on people's grades with every rewrite served
        (
            _row(None, None, ndcg_at_10_uplift_unfiltered=-0.40),
            _row(None, None, ndcg_at_10_uplift_unfiltered=-0.10),
            ALIGNED,
        ),
        # nothing to compare (NaN or null, as metrics.json writes it): the model trained last
        (_row(math.nan, 0.6), _row(None, 0.5), ALIGNED),
    ],
)
def test_grpo_is_put_forward_only_when_it_improves_on_sft(sft, grpo, chosen) -> None:
    assert _chosen(sft, grpo) == chosen


def test_the_reason_names_the_figures_and_the_report_says_it() -> None:
    choice = choose_candidate(
        {MULTI_TASK_SFT: _row(0.223, 0.608), ALIGNED: _row(0.050, 0.615)},
        preferred=ALIGNED,
        fallback=MULTI_TASK_SFT,
    )
    assert choice.reason == (
        "multi-task-sft+grpo does not lift more: ucvr_uplift_unfiltered +5.00% vs +22.30%, "
        "relevance_rate_truth 61.5% vs 60.8%"
    )
    lines = headline(
        {"metrics": {}, "candidate": choice.chosen, "candidate_choice": choice.to_dict()}
    )
    assert any(
        line.startswith("- **candidate chosen**: multi-task-sft of multi-task-sft+grpo and")
        and choice.reason in line
        for line in lines
    )


def test_the_reason_says_whether_the_queries_establish_the_difference() -> None:
    variants = {MULTI_TASK_SFT: _row(0.151, 0.653), ALIGNED: _row(0.132, 0.655)}

    def choose(difference):
        return choose_candidate(
            variants, preferred=ALIGNED, fallback=MULTI_TASK_SFT, difference=difference
        )

    noisy = choose((-0.019, -0.061, 0.022))
    assert noisy.chosen == MULTI_TASK_SFT  # the rule is the point estimates'
    assert noisy.uplift_difference == [-0.019, -0.061, 0.022]
    assert noisy.reason.endswith(
        "; difference -1.9 points [-6.1, +2.2] over queries, within what the queries can tell apart"
    )
    clear = choose((-0.019, -0.03, -0.008))
    assert clear.reason.endswith("; difference -1.9 points [-3.0, -0.8] over queries")
    assert choose(None).uplift_difference is None and "over queries" not in choose(None).reason


def test_the_headline_gives_the_interval_over_queries_where_there_is_one() -> None:
    cand = {
        "ucvr_uplift_unfiltered": 0.151,
        "ucvr_uplift_unfiltered_ci_low": 0.139,
        "ucvr_uplift_unfiltered_ci_high": 0.165,
        "ucvr_uplift_unfiltered_query_ci_low": 0.02,
        "ucvr_uplift_unfiltered_query_ci_high": 0.31,
    }
    (line,) = [x for x in headline({"metrics": cand}) if "the model alone" in x]
    assert "+15.1% [+13.9, +16.5] over users, [+2.0, +31.0] over queries;" in line
    (line,) = [x for x in headline({"metrics": {"ucvr_uplift": 0.1}}) if "serving policy" in x]
    assert "over queries" not in line


def test_cli_fallback_must_be_a_baseline(tmp_path, capsys) -> None:
    code = main(
        [
            "evaluate",
            "--data",
            str(tmp_path),
            "--datasets",
            str(tmp_path),
            "--out",
            str(tmp_path / "out"),
            "--model",
            str(tmp_path),
            "--fallback",
            "sft",
        ]
    )
    assert code == 3  # a configuration error
    assert "--fallback 'sft' is not a --baseline name" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_the_docstring_example_holds() -> None:
    import doctest

    from qrewrite.evaluation import evaluate

    assert doctest.testmod(evaluate, raise_on_error=True).attempted >= 1


def test_registration_takes_the_model_evaluation_put_forward(tmp_path) -> None:
    """What was measured is what gets registered: the candidate's folder, and an error naming
    the file when metrics.json puts forward a model that was not passed."""
    import json

    from qrewrite.errors import DataError
    from qrewrite.registry.registry import evaluated_candidate

    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"candidate": MULTI_TASK_SFT, "metrics": {}, "variants": {}}))
    dirs = {ALIGNED: "/models/grpo", MULTI_TASK_SFT: "/models/sft"}
    assert evaluated_candidate(metrics, dirs) == "/models/sft"
    with pytest.raises(DataError, match=r"metrics\.json: its candidate 'multi-task-sft' is none"):
        evaluated_candidate(metrics, {ALIGNED: "/models/grpo"})


def _fake_model(folder, weights: bytes):
    folder.mkdir()
    for name in ("config.json", "tokenizer.json"):
        (folder / name).write_text("{}")
    (folder / "model.safetensors").write_bytes(weights)
    return folder


def test_register_refuses_a_model_other_than_the_one_measured(tmp_path) -> None:
    """metrics.json names the SFT model as its candidate; registering the GRPO model with it
    fails with one line, before the registry is touched."""
    import json

    from qrewrite.errors import ConfigError
    from qrewrite.registry.config import RegistryConfig
    from qrewrite.registry.registry import register

    sft = _fake_model(tmp_path / "sft", b"sft weights")
    grpo = _fake_model(tmp_path / "grpo", b"grpo weights")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(
        json.dumps(
            {
                "candidate": MULTI_TASK_SFT,
                "models": {MULTI_TASK_SFT: str(sft), ALIGNED: str(grpo)},
                "metrics": {},
                "variants": {},
                "config": {"vet": "model"},
            }
        )
    )
    store = tmp_path / "registry.db"
    config = RegistryConfig(tracking_uri=f"sqlite:///{store}")
    with pytest.raises(ConfigError, match=r"measured 'multi-task-sft' \(.*sft\), whose weights"):
        register(config, grpo, metrics)
    assert not store.exists()
