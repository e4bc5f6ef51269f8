"""``evaluate`` on an imported judged set: the comparison on people's grades is in metrics.json,
the report and the variants' keys, model alone first."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from qrewrite.evaluation.evaluate import EvaluateConfig, EvaluationReport, evaluate
from qrewrite.importing.judged import JudgedImportConfig, import_judged
from qrewrite.labeling.label import LabelConfig, label
from qrewrite.mining.config import MiningConfig
from qrewrite.mining.mine import mine
from qrewrite.serving.rewriter import Rewriter
from qrewrite.training.datasets import DatasetConfig, build_datasets
from tests.evaluation.test_evaluate import SMALL, corrections_that_find_nothing
from tests.labeling.fakes import judged_rows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def judged_run(tiny_model: Path, tmp_path_factory) -> tuple[Path, dict]:
    tmp = tmp_path_factory.mktemp("judged_eval")
    data, mined, datasets, out = (tmp / n for n in ("data", "mined", "datasets", "evaluation"))
    # each query has a twin ("... sale") judged on the same products: co-engagement pairs them
    rows = judged_rows()
    rows = pd.concat([rows, rows.assign(query=rows["query"] + " sale")], ignore_index=True)
    src = tmp / "judged.tsv"
    rows.assign(grade=rows["grade"] + 1).rename(columns={"title": "product_title"}).to_csv(
        src, sep="\t", index=False
    )
    import_judged(
        JudgedImportConfig(grade_scale="numeric:1:3", sessions_per_query=10),
        input_path=src,
        out_dir=data,
    )
    mine(MiningConfig(), data_dir=data, out_dir=mined)
    labels = tmp / "labels.parquet"
    label(
        LabelConfig(calibration_encoder=False),
        data_dir=data,
        candidates_path=mined / "rewrite_candidates.parquet",
        out_path=labels,
    )
    loose = DatasetConfig(eval_fraction=0.3, require_conversion_evidence=False)
    build_datasets(loose, data_dir=data, mined_dir=mined, labels_path=labels, out_dir=datasets)
    cfg = EvaluateConfig(tracking_uri=f"sqlite:///{tmp}/m.db", teacher=False, vet="model", **SMALL)
    report = evaluate(
        cfg,
        data_dir=data,
        datasets_dir=datasets,
        variants={"m": str(tiny_model)},
        out_dir=out,
        labels=labels,
        candidate="m",
        progress=False,
    )
    return out, report


def test_judged_data_is_measured_on_peoples_grades(judged_run) -> None:
    out, report = judged_run
    assert report.data_kind == "judged"
    judged = report.judged["m"]
    assert set(judged) == {"with_serving_policy", "model_alone"}
    (alone,) = [r for r in judged["model_alone"] if r["subset"] == "all"]
    assert alone["queries"] > 0 and 0 <= alone["ndcg_at_10_original"] <= 1
    metrics = report.metrics
    assert metrics["ndcg_at_10_uplift_unfiltered"] == pytest.approx(alone["ndcg_at_10_uplift"])
    assert not math.isnan(metrics["ndcg_at_10_uplift"])
    # the unjudged products' bounds: left out of the page, and how much of it people judged
    assert metrics["condensed_ndcg_at_10_uplift_unfiltered"] == pytest.approx(
        alone["condensed_ndcg_at_10_uplift"]
    )
    assert 0 <= alone["judged_at_10"] <= 1 and 0 < alone["judged_at_10_original"] <= 1
    assert "ndcg_at_10_uplift_unfiltered" in report.model_alone
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["judged"]["m"]["model_alone"][0]["subset"] == "all"
    md = (out / "report.md").read_text()
    assert "## On human judgments" in md and "model alone, all" in md
    assert "unjudged left out" in md
    assert md.index("model alone, all") < md.index("served, all")


def evaluate_again(run: Path, model: Path, tmp_path: Path, **options: Any) -> EvaluationReport:
    """The judged run's model evaluated again on its data, with other evaluate options."""
    cfg = EvaluateConfig(tracking_uri=f"sqlite:///{tmp_path}/m.db", **options, **SMALL)
    return evaluate(
        cfg,
        data_dir=run / "data",
        datasets_dir=run / "datasets",
        variants={"m": str(model)},
        out_dir=tmp_path / "evaluation",
        labels=run / "labels.parquet",
        candidate="m",
        progress=False,
    )


def test_what_the_corrections_add_on_peoples_grades(
    judged_run, tiny_model: Path, tmp_path: Path, monkeypatch
) -> None:
    """Corrections that retrieve nothing leave every page the original's: what they add is
    minus the model's own uplift without them, and the uncorrected arm is not reported."""
    out, before = judged_run
    monkeypatch.setattr(Rewriter, "corrections", corrections_that_find_nothing)
    report = evaluate_again(out.parent, tiny_model, tmp_path, teacher=False, vet="model")
    m, was = report.metrics, before.metrics
    assert m["spelling_fix_rate"] == 1.0 and m["ndcg_at_10_uplift_unfiltered"] == 0.0
    assert was["ndcg_at_10_uplift_from_spelling"] == 0.0  # the tiny model corrects nothing
    assert was["ndcg_at_10_uplift_unfiltered"] != 0.0
    assert m["ndcg_at_10_uplift_from_spelling"] == pytest.approx(
        -was["ndcg_at_10_uplift_unfiltered"]
    )
    assert set(report.judged["m"]) == {"with_serving_policy", "model_alone"}
    md = (tmp_path / "evaluation" / "report.md").read_text()
    assert "to its nDCG@10 uplift on people's grades" in md


def test_the_page_vetter_serves_where_the_teacher_finds_the_page_better(
    judged_run, tiny_model: Path, tmp_path: Path
) -> None:
    """Under vet "page" evaluation serves a top rewrite exactly where the teacher grades the
    page it gives above the original's, records the gain beside the rewrite, and says so."""
    out, _ = judged_run
    report = evaluate_again(out.parent, tiny_model, tmp_path, vet="page")
    rewrites = pd.read_parquet(tmp_path / "evaluation" / "rewrites.parquet")
    top = rewrites[rewrites["rank"] == 1]
    assert top["page_gain"].notna().all()  # every top rewrite's page was graded
    assert top["served"].tolist() == (top["page_gain"] > 0).tolist()
    assert rewrites.loc[rewrites["rank"] > 1, "page_gain"].isna().all()
    served = report.judged["m"]["with_serving_policy"][0]
    assert served["subset"] == "all" and served["rewritten"] <= top["served"].sum()
    md = (tmp_path / "evaluation" / "report.md").read_text()
    assert "above the original's own" in md and "`vet: page`" in md
    assert "*page*: the teacher's expected DCG of the first page" in md and " (page " in md


def test_people_grade_the_pages_the_serving_policy_fuses(
    judged_run, tiny_model: Path, tmp_path: Path
) -> None:
    """The comparison on people's grades fuses the original's and the rewrite's results as
    the serving policy does (``merge``), the pages the A/B test and the page vetter see."""
    out, rrf = judged_run
    report = evaluate_again(
        out.parent, tiny_model, tmp_path, teacher=False, vet="model", merge="interleave"
    )
    (was,) = [r for r in rrf.judged["m"]["model_alone"] if r["subset"] == "all"]
    (now,) = [r for r in report.judged["m"]["model_alone"] if r["subset"] == "all"]
    assert now["queries"] == was["queries"] and now["rewritten"] == was["rewritten"] > 0
    assert now["ndcg_at_10_original"] == pytest.approx(was["ndcg_at_10_original"])
    assert now["ndcg_at_10"] != pytest.approx(was["ndcg_at_10"])
