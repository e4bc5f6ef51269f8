"""``qrewrite label-eval``: how good are relevance labels? Compare them with the ground truth.

Truth per pair (definitions in docs/labeling.md):

- synthetic data, (query, rewrite) where both are queries of the log: the query's intent and the
  rewrite's intent are looked up in ``truth/queries.parquet``; the grade is 2 for the same intent,
  else the median grade, under the query's intent, of the products that fully satisfy the
  rewrite's intent (:func:`qrewrite.market.truth.grade_rewrite_intents`);
- synthetic data, (query, product title) pairs (``product_id`` set): the product's grade under the
  query's intent;
- imported judged data: (query, product) pairs are looked up in ``truth/judgments.parquet``.

Pairs without truth (a rewrite never searched, a product never judged) are counted as unjudged,
by reason, and left out of the metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qrewrite.errors import DataError
from qrewrite.evaluation.truth import TruthLookup
from qrewrite.tables import read_parquet_table

GRADES = (0, 1, 2)
GRADE_NAMES = {0: "irrelevant", 1: "partial", 2: "relevant"}


def grade_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict:
    """Accuracy, macro-F1, Cohen's kappa (plain and quadratic-weighted), confusion matrix
    (rows = truth, columns = predicted, grades 0..2), per-grade precision/recall/F1, Spearman, and
    the majority-class baseline for reference."""
    from scipy.stats import spearmanr
    from sklearn.metrics import (
        accuracy_score,
        cohen_kappa_score,
        confusion_matrix,
        f1_score,
        precision_recall_fscore_support,
    )

    t = np.asarray(truth, dtype=np.int64)
    p = np.asarray(predicted, dtype=np.int64)
    if len(t) == 0:
        return {"n": 0}
    labels = list(GRADES)
    prec, rec, f1, support = precision_recall_fscore_support(t, p, labels=labels, zero_division=0)
    majority = int(np.bincount(t, minlength=3).argmax())
    baseline = np.full_like(t, majority)
    both_vary = len(np.unique(t)) > 1 and len(np.unique(p)) > 1
    return {
        "n": len(t),
        "accuracy": float(accuracy_score(t, p)),
        # averaged over the grades that occur (in truth or labels), as sklearn does by default
        "macro_f1": float(f1_score(t, p, average="macro", zero_division=0)),
        "cohen_kappa": float(cohen_kappa_score(t, p, labels=labels)) if both_vary else 0.0,
        "quadratic_kappa": (
            float(cohen_kappa_score(t, p, labels=labels, weights="quadratic")) if both_vary else 0.0
        ),
        "spearman": float(spearmanr(t, p).statistic) if both_vary else 0.0,
        "confusion": confusion_matrix(t, p, labels=labels).tolist(),
        "per_grade": {
            GRADE_NAMES[g]: {
                "precision": float(prec[i]),
                "recall": float(rec[i]),
                "f1": float(f1[i]),
                "support": int(support[i]),
            }
            for i, g in enumerate(labels)
        },
        "truth_distribution": {GRADE_NAMES[g]: int((t == g).sum()) for g in labels},
        "majority_baseline": {
            "grade": majority,
            "accuracy": float(accuracy_score(t, baseline)),
            "macro_f1": float(f1_score(t, baseline, average="macro", zero_division=0)),
        },
    }


def read_labels(path: str | Path) -> pd.DataFrame:
    """A labels table (parquet) with at least query, rewrite, grade; one-line errors otherwise."""
    p = Path(path)
    df = read_parquet_table(p, "labels", "run `qrewrite label` first").to_pandas()
    missing = [c for c in ("query", "rewrite", "grade") if c not in df.columns]
    if missing:
        raise DataError(f"{p}: missing column(s) {', '.join(missing)}")
    if df.empty:
        raise DataError(f"{p}: the labels table has no rows")
    grades = pd.to_numeric(df["grade"], errors="coerce")
    bad = ~grades.isin(GRADES)
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"{p}: column grade must be 0, 1 or 2; row {first} has {df['grade'].iloc[first]} "
            f"({int(bad.sum())} such rows)"
        )
    return df.assign(grade=grades.astype(np.int64))


@dataclass
class LabelEvaluation:
    """Labels measured against the truth; :meth:`to_dict` is ``label_eval.json``. Every metrics
    value is a :func:`grade_metrics` mapping."""

    data: str
    labels: str
    truth_kind: str  # synthetic | judged
    pairs: int
    judged: int
    unjudged: dict[str, int]  # reason -> pairs without truth
    overall: dict[str, Any]
    by_pair_kind: dict[str, dict[str, Any]]
    by_source: dict[str, dict[str, Any]]
    # who graded: the rules, or the teacher calibrated on judgments (cross-fitted: a model
    # that never saw the query's judgments)
    by_grader: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """The evaluation as a mapping, keys in the order of ``label_eval.json``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}


def evaluate_labels(*, data_dir: str | Path, labels_path: str | Path) -> LabelEvaluation:
    """Metrics of a labels table against the truth of ``data_dir``, overall and per group."""
    labels = read_labels(labels_path)
    lookup = TruthLookup.load(data_dir)
    truth, reason = lookup.grade(labels)
    judged = ~np.isnan(truth)
    kind = np.where(
        labels["product_id"].notna() if "product_id" in labels else np.zeros(len(labels), bool),
        "query_title",
        "query_rewrite",
    )
    result = LabelEvaluation(
        data=str(data_dir),
        labels=str(labels_path),
        truth_kind=lookup.kind,
        pairs=len(labels),
        judged=int(judged.sum()),
        unjudged={k: int(v) for k, v in reason[~judged].value_counts().sort_index().items()},
        overall=grade_metrics(truth[judged], labels["grade"].to_numpy()[judged]),
        by_pair_kind={},
        by_source={},
        by_grader={},
    )
    for k in sorted(set(kind[judged])):
        m = judged & (kind == k)
        result.by_pair_kind[k] = grade_metrics(truth[m], labels["grade"].to_numpy()[m])
    if "source" in labels:
        for s in sorted(labels.loc[judged, "source"].dropna().unique()):
            m = judged & (labels["source"] == s).to_numpy()
            result.by_source[s] = grade_metrics(truth[m], labels["grade"].to_numpy()[m])
    if "signals" in labels:
        grader = labels["signals"].map(_grader).to_numpy()
        for g in sorted(set(grader[judged])):
            m = judged & (grader == g)
            result.by_grader[g] = grade_metrics(truth[m], labels["grade"].to_numpy()[m])
    return result


def _grader(signals: object) -> str:
    """The ``grader`` a label's signals name (``rules`` when they name none)."""
    try:
        return str(json.loads(str(signals)).get("grader", "rules"))
    except (ValueError, AttributeError):
        return "rules"


def metrics_markdown(result: dict) -> str:
    """A readable summary of :func:`evaluate_labels` (its :meth:`LabelEvaluation.to_dict`)."""
    o = result["overall"]
    lines = [
        "# Label quality",
        "",
        f"Labels `{result['labels']}` against the {result['truth_kind']} truth of "
        f"`{result['data']}`: {result['judged']:,} of {result['pairs']:,} pairs judged.",
    ]
    if result["unjudged"]:
        lines.append(
            "Unjudged: " + ", ".join(f"{k} {v:,}" for k, v in result["unjudged"].items()) + "."
        )
    if not o.get("n"):
        return "\n".join([*lines, "", "No pair has truth; nothing to measure."]) + "\n"
    base = o["majority_baseline"]
    lines += [
        "",
        "| group | pairs | accuracy | macro-F1 | kappa | Spearman |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    groups = {
        "all": o,
        **result["by_pair_kind"],
        **{f"source={k}": v for k, v in result["by_source"].items()},
        **{f"grader={k}": v for k, v in result.get("by_grader", {}).items()},
    }
    for name, m in groups.items():
        lines.append(
            f"| {name} | {m['n']:,} | {m['accuracy']:.3f} | {m['macro_f1']:.3f} | "
            f"{m['cohen_kappa']:.3f} | {m['spearman']:.3f} |"
        )
    lines += [
        "",
        f"Majority-class baseline (always {GRADE_NAMES[base['grade']]}): accuracy "
        f"{base['accuracy']:.3f}, macro-F1 {base['macro_f1']:.3f}.",
        "",
        "Confusion (rows: truth, columns: label; irrelevant, partial, relevant):",
        "",
        "| truth \\ label | 0 | 1 | 2 |",
        "|---|---:|---:|---:|",
        *[
            f"| {g} | " + " | ".join(f"{v:,}" for v in row) + " |"
            for g, row in zip(GRADES, o["confusion"], strict=True)
        ],
    ]
    return "\n".join(lines) + "\n"
