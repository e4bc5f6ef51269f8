"""``qrewrite evaluate`` end to end on the tiny market with an untrained tiny model: every metric
key is present, the baselines behave as defined, the serving policy is applied, and held-out
queries that leak into training are caught."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from datasets import load_from_disk

from qrewrite.cli import main
from qrewrite.errors import DataError
from qrewrite.evaluation.evaluate import METRIC_KEYS, NO_REWRITE, EvaluateConfig, evaluate
from qrewrite.labeling.teacher import Teacher
from qrewrite.serving.rewriter import Rewriter
from tests.labeling.fakes import TrigramEncoder

pytestmark = pytest.mark.slow

SMALL = {
    "max_queries": 40,
    "samples": 2,
    "max_new_tokens": 8,
    "ab_replicas": 2,
    "bootstrap": 100,
    "tagging_eval_pairs": 20,
}


NOWHERE = "zzqx vvjk"  # words no catalog title has: a rewrite that retrieves nothing


def corrections_that_find_nothing(self, queries, progress=False):
    """``Rewriter.corrections`` that corrects every query into :data:`NOWHERE`."""
    self.stats.corrections += len(queries)
    return [NOWHERE] * len(queries)


@pytest.fixture(autouse=True)
def fake_encoder(monkeypatch):
    monkeypatch.setattr(Teacher, "encoder", property(lambda self: TrigramEncoder()))


@pytest.fixture(scope="module")
def report(tiny_market, tiny_datasets, tiny_labels, tiny_model, tmp_path_factory):
    out = tmp_path_factory.mktemp("evaluation")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Teacher, "encoder", property(lambda self: TrigramEncoder()))
        cfg = EvaluateConfig(min_p_relevant=0.0, tracking_uri=f"sqlite:///{out}/m.db", **SMALL)
        variants = {"vetted": str(tiny_model), "unvetted": str(tiny_model)}
        r = evaluate(
            cfg,
            data_dir=tiny_market,
            datasets_dir=tiny_datasets,
            variants=variants,
            out_dir=out,
            labels=tiny_labels,
            candidate="unvetted",
            progress=False,
        )
    return out, r


def test_every_variant_has_every_documented_key(report) -> None:
    out, r = report
    saved = json.loads((out / "metrics.json").read_text())
    assert list(saved["variants"]) == [NO_REWRITE, "vetted", "unvetted"]
    for row in saved["variants"].values():
        assert set(row) == set(METRIC_KEYS)
    assert saved["metrics"] == saved["variants"]["unvetted"]
    assert saved["held_out_queries"] == SMALL["max_queries"]
    # the run is in MLflow too, with the report as an artifact
    assert r.mlflow_run_id and (out / "artifacts").is_dir()


def test_no_rewrite_is_the_control(report) -> None:
    _, r = report
    base = r.variants[NO_REWRITE]
    assert base["ucvr_uplift"] == 0.0 and base["pages_changed"] == 0.0
    assert base["hit_rate"] == base["hit_rate_original"]
    assert base["ndcg_at_10"] == pytest.approx(base["ndcg_at_10_original"])
    assert base["increment"] == 0.0
    cand = r.variants["unvetted"]
    assert cand["hit_rate"] >= base["hit_rate"]  # original + rewrite retrieves a superset
    assert 0 <= cand["served_rate"] <= 1 and 0 <= cand["copy_rate"] <= 1
    assert cand["greedy_copy_rate"] >= cand["copy_rate"]  # past copies only ever lowers it
    assert cand["queries_per_second"] > 0
    assert cand["ucvr_uplift_ci_low"] <= cand["ucvr_uplift"] <= cand["ucvr_uplift_ci_high"]


def test_report_files(report) -> None:
    out, _ = report
    md = (out / "report.md").read_text()
    # the model alone leads: its relevance and unvetted uplift come before anything vetted
    assert "| variant | relevance (truth) | relevance (teacher) | UCVR uplift, model alone" in md
    assert "| no-rewrite |" in md and "## Definitions" in md
    assert md.index("**the model alone**") < md.index("**with the serving policy**")
    assert "vetting adds" in md
    # sample rewrites a person can judge: head queries first, both grades, served or not
    assert "| query | searches | top rewrite | teacher | truth | served |" in md
    assert "## Environment" in md and "torch" in md
    assert "serving policy** (serve a top rewrite when the model's own P(relevant) >= 0.0" in md
    html = (out / "report.html").read_text()
    assert "<table>" in html and "data:image/png;base64," in html
    assert (out / "metrics.png").exists() and (out / "grades.png").exists()
    rewrites = pd.read_parquet(out / "rewrites.parquet")
    assert set(rewrites["variant"]) <= {"vetted", "unvetted"}
    top = rewrites[rewrites["rank"] == 1]
    assert top["truth_grade"].notna().all() and top["teacher_grade"].notna().all()
    saved = json.loads((out / "metrics.json").read_text())
    samples = saved["samples"]
    assert samples and [s["searches"] for s in samples] == sorted(
        (s["searches"] for s in samples), reverse=True
    )
    assert list(saved)[:5] == [
        "schema_version",
        "qrewrite_version",
        "candidate",
        "model_alone",
        "with_serving_policy",
    ]
    row = saved["variants"]["unvetted"]
    assert saved["model_alone"]["ucvr_uplift_unfiltered"] == row["ucvr_uplift_unfiltered"]
    assert row["ucvr_uplift_from_vetting"] == pytest.approx(
        row["ucvr_uplift"] - row["ucvr_uplift_unfiltered"]
    )
    assert saved["environment"]["packages"]["torch"]
    # the most searched held-out query, and the uplifts with its searches set aside
    assert saved["top_query"] in set(top["query"])
    assert 0 < saved["top_query_search_share"] <= saved["head_search_share"]
    for key in ("ucvr_uplift_without_top_query", "ucvr_uplift_unfiltered_without_top_query"):
        assert row[f"{key}_ci_low"] <= row[key] <= row[f"{key}_ci_high"]
    assert "the same, top query left out" in md


def test_what_the_spelling_corrections_add_is_measured_against_the_model_without_them(
    report, tiny_market, tiny_datasets, tiny_labels, tiny_model, tmp_path, monkeypatch
) -> None:
    """Corrections that retrieve nothing: every top rewrite is one, the model alone changes no
    page, and what they add is minus the uplift of the same model without them."""
    monkeypatch.setattr(Rewriter, "corrections", corrections_that_find_nothing)
    cfg = EvaluateConfig(min_p_relevant=0.0, tracking_uri=f"sqlite:///{tmp_path}/m.db", **SMALL)
    r = evaluate(
        cfg,
        data_dir=tiny_market,
        datasets_dir=tiny_datasets,
        variants={"unvetted": str(tiny_model)},
        out_dir=tmp_path,
        labels=tiny_labels,
        progress=False,
    )
    m, before = r.variants["unvetted"], report[1].variants["unvetted"]
    assert m["spelling_fix_rate"] == 1.0
    assert m["ucvr_uplift_unfiltered"] == 0.0 and before["ucvr_uplift_unfiltered"] != 0.0
    assert m["ucvr_uplift_from_spelling"] == pytest.approx(-before["ucvr_uplift_unfiltered"])
    low, high = m["ucvr_uplift_from_spelling_ci_low"], m["ucvr_uplift_from_spelling_ci_high"]
    assert low <= m["ucvr_uplift_from_spelling"] <= high
    top = pd.read_parquet(tmp_path / "rewrites.parquet").query("rank == 1")
    assert (top["rewrite"] == NOWHERE).all() and len(top) == SMALL["max_queries"]
    assert top["spelling_fix"].all()
    assert not pd.read_parquet(report[0] / "rewrites.parquet")["spelling_fix"].any()
    samples = json.loads((tmp_path / "metrics.json").read_text())["samples"]
    assert samples and all(s["spelling_fix"] for s in samples)
    # the model made none in the fixture's run: they add nothing
    assert before["spelling_fix_rate"] == 0.0 and before["ucvr_uplift_from_spelling"] == 0.0
    md = (tmp_path / "report.md").read_text()
    assert "spelling corrections are 100.0% of the top rewrites" in md
    assert f"| {NOWHERE} *(spelling fix)* |" in md


def test_a_strict_serving_policy_serves_nothing_and_changes_nothing(
    tiny_market, tiny_datasets, tiny_model, tmp_path
) -> None:
    db = f"sqlite:///{tmp_path}/m.db"
    cfg = EvaluateConfig(min_p_relevant=1.0, teacher=False, tracking_uri=db, **SMALL)
    r = evaluate(
        cfg,
        data_dir=tiny_market,
        datasets_dir=tiny_datasets,
        variants={"m": str(tiny_model)},
        out_dir=tmp_path,
        candidate="m",
        progress=False,
    )
    m = r.variants["m"]
    assert m["served_rate"] == 0.0 and m["pages_changed"] == 0.0 and m["ucvr_uplift"] == 0.0
    # the unvetted arm still shows what serving every rewrite would have done
    assert m["ucvr_uplift_unfiltered"] == m["ucvr_uplift_unfiltered"]  # measured, not NaN


def _leaky_copy(tiny_datasets: Path, dst: Path, all_queries: bool) -> Path:
    """The tiny datasets with SFT train examples for 3 (or all) of the GRPO eval queries."""
    from datasets import DatasetDict, concatenate_datasets

    shutil.copytree(tiny_datasets, dst)
    sft = load_from_disk(str(tiny_datasets / "sft"))
    eval_queries = sorted(set(load_from_disk(str(tiny_datasets / "grpo"))["eval"]["query"]))
    template = sft["train"].select(range(1))
    leaked = eval_queries if all_queries else eval_queries[:3]
    extra = concatenate_datasets([template.map(lambda r, q=q: {**r, "query": q}) for q in leaked])
    shutil.rmtree(dst / "sft")
    DatasetDict(
        {"train": concatenate_datasets([sft["train"], extra]), "eval": sft["eval"]}
    ).save_to_disk(str(dst / "sft"))
    return dst


def test_eval_queries_seen_in_training_are_left_out_with_a_count(
    tiny_market, tiny_datasets, tiny_model, tmp_path, caplog
) -> None:
    leaky = _leaky_copy(tiny_datasets, tmp_path / "leaky", all_queries=False)
    db = f"sqlite:///{tmp_path}/m.db"
    cfg = EvaluateConfig(teacher=False, tracking_uri=db, **{**SMALL, "max_queries": 0})
    r = evaluate(
        cfg,
        data_dir=tiny_market,
        datasets_dir=leaky,
        variants={"m": str(tiny_model)},
        out_dir=tmp_path / "o",
        candidate="m",
        progress=False,
    )
    assert r.overlap_dropped == 3
    assert "3 of" in caplog.text and "also appear in the training sets" in caplog.text
    all_leak = _leaky_copy(tiny_datasets, tmp_path / "all", all_queries=True)
    with pytest.raises(DataError, match=r"all \d+ eval queries also appear in training"):
        evaluate(
            cfg,
            data_dir=tiny_market,
            datasets_dir=all_leak,
            variants={"m": str(tiny_model)},
            out_dir=tmp_path / "p",
        )


def test_cli_errors_for_missing_models(tiny_market, tiny_datasets, tmp_path, capsys) -> None:
    args = [
        "evaluate",
        "--data",
        str(tiny_market),
        "--datasets",
        str(tiny_datasets),
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert main([*args, "--model", str(tmp_path / "missing")]) == 3
    assert "directory not found" in capsys.readouterr().err
    db = f"sqlite:///{tmp_path / 'mlflow.db'}"
    code = main(
        [*args, "--model", "models:/query-rewriter@champion", "--set", f"tracking_uri={db}"]
    )
    assert code == 3  # no store there: named, and not created
    assert f"no MLflow registry at {db}" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=db).search_registered_models()  # an empty store
    code = main(
        [*args, "--model", "models:/query-rewriter@champion", "--set", f"tracking_uri={db}"]
    )
    assert code == 3
    assert "not in the registry" in capsys.readouterr().err


def test_vetting_needs_a_known_vetter_and_the_teacher() -> None:
    from qrewrite.errors import ConfigError

    with pytest.raises(ConfigError, match=r"evaluate.vet='judge': expected one of model"):
        EvaluateConfig(vet="judge").check()
    with pytest.raises(ConfigError, match="needs the teacher"):
        EvaluateConfig(vet="teacher", teacher=False).check()


def test_teacher_vetting_serves_exactly_the_top_rewrites_the_teacher_grades_relevant(
    tiny_market, tiny_datasets, tiny_labels, tiny_model, tmp_path
) -> None:
    db = f"sqlite:///{tmp_path}/m.db"
    cfg = EvaluateConfig(vet="teacher", tracking_uri=db, **SMALL)
    r = evaluate(
        cfg,
        data_dir=tiny_market,
        datasets_dir=tiny_datasets,
        variants={"m": str(tiny_model)},
        out_dir=tmp_path,
        labels=tiny_labels,
        candidate="m",
        progress=False,
    )
    m = r.variants["m"]
    rows = pd.read_parquet(tmp_path / "rewrites.parquet")
    top = rows[rows["rank"] == 1]
    teacher = Teacher(pd.read_parquet(tiny_market / "catalog.parquet"))
    teacher.learn_from(pd.read_parquet(tiny_labels))
    grades = teacher.grade(top[["query", "rewrite"]].reset_index(drop=True), learn=False)["grade"]
    assert top["served"].tolist() == (grades == 2).tolist()
    assert m["served_rate"] == pytest.approx((grades == 2).sum() / m["queries"])
    if m["served_rate"] > 0:
        assert m["served_relevance_rate"] == 1.0
