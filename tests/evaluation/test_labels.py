import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qrewrite.cli import main
from qrewrite.errors import DataError
from qrewrite.evaluation.labels import evaluate_labels, grade_metrics
from qrewrite.evaluation.truth import TruthLookup
from qrewrite.importing.judged import JudgedImportConfig, import_judged
from qrewrite.market.truth import grade_products


def test_grade_metrics_by_hand() -> None:
    m = grade_metrics(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]))
    assert m["accuracy"] == 0.75
    assert m["confusion"] == [[1, 0, 0], [0, 0, 1], [0, 0, 2]]
    # F1 per grade: 1.0, 0.0, 0.8
    assert m["macro_f1"] == pytest.approx((1.0 + 0.0 + 0.8) / 3)
    # always "2": F1 of grade 2 is 2/3 (precision 1/2, recall 1), grades 0 and 1 score 0
    assert m["majority_baseline"] == {"grade": 2, "accuracy": 0.5, "macro_f1": pytest.approx(2 / 9)}
    perfect = grade_metrics(np.array([0, 1, 2]), np.array([0, 1, 2]))
    assert perfect["cohen_kappa"] == 1.0 and perfect["spearman"] == pytest.approx(1.0)


@pytest.fixture(scope="module")
def known_pairs(tiny_market: Path) -> pd.DataFrame:
    """Pairs whose truth follows from the definitions, built from the tiny market's truth."""
    queries = pd.read_parquet(tiny_market / "truth" / "queries.parquet")
    intents = pd.read_parquet(tiny_market / "truth" / "intents.parquet")
    catalog = pd.read_parquet(tiny_market / "catalog.parquet")
    lookup = TruthLookup.load(tiny_market)
    dominant = lookup.query_intent
    own = queries[queries["intent_id"].to_numpy() == dominant.reindex(queries["query"]).to_numpy()]
    multi = own.groupby("intent_id").filter(lambda g: len(g) > 1)
    same = multi.groupby("intent_id").head(2)
    pairs = [  # two phrasings of one intent: 2
        {"query": a, "rewrite": b, "product_id": None, "grade": 2, "source": "same_intent"}
        for (_, a), (_, b) in zip(
            same.iloc[::2]["query"].items(), same.iloc[1::2]["query"].items(), strict=True
        )
    ][:20]
    cats = intents.set_index("intent_id")["category"]
    by_cat = own.assign(category=own["intent_id"].map(cats)).drop_duplicates("category")
    for a, b in zip(by_cat["query"], by_cat["query"].iloc[1:], strict=False):
        pairs.append(
            {"query": a, "rewrite": b, "product_id": None, "grade": 0, "source": "other_category"}
        )
    for _, row in own.head(30).iterrows():  # (query, title) pairs
        grades = grade_products(intents.iloc[int(row["intent_id"])], catalog)
        best = int(np.argmax(grades))
        pairs.append(
            {
                "query": row["query"],
                "rewrite": catalog["title"].iloc[best],
                "product_id": catalog["product_id"].iloc[best],
                "grade": int(grades[best]),
                "source": "title",
            }
        )
    pairs.append(
        {
            "query": "never searched query",
            "rewrite": own["query"].iloc[0],
            "product_id": None,
            "grade": 2,
            "source": "unknown",
        }
    )
    return pd.DataFrame(pairs)


def test_truth_follows_the_definitions(known_pairs: pd.DataFrame, tiny_market: Path) -> None:
    truth, reason = TruthLookup.load(tiny_market).grade(known_pairs)
    known = known_pairs["source"] != "unknown"
    assert np.array_equal(truth[known.to_numpy()], known_pairs.loc[known, "grade"].to_numpy())
    assert np.isnan(truth[-1]) and reason.iloc[-1] == "query_not_in_truth"


def test_perfect_and_wrong_labels(
    known_pairs: pd.DataFrame, tiny_market: Path, tmp_path: Path
) -> None:
    known_pairs.to_parquet(tmp_path / "perfect.parquet")
    result = evaluate_labels(data_dir=tiny_market, labels_path=tmp_path / "perfect.parquet")
    assert result.judged == len(known_pairs) - 1
    assert result.unjudged == {"query_not_in_truth": 1}
    assert result.overall["accuracy"] == 1.0
    assert set(result.by_pair_kind) == {"query_rewrite", "query_title"}
    flipped = known_pairs.assign(grade=2 - known_pairs["grade"])
    flipped.to_parquet(tmp_path / "flipped.parquet")
    worse = evaluate_labels(data_dir=tiny_market, labels_path=tmp_path / "flipped.parquet")
    assert worse.overall["accuracy"] < 0.5 and worse.overall["spearman"] < 0


def test_judged_truth_grades_title_pairs_only(tmp_path: Path) -> None:
    src = tmp_path / "esci.tsv"
    src.write_text(
        "query\tproduct_id\tproduct_title\tesci_label\n"
        "shoes\tA\tRunning Shoes\tE\nshoes\tB\tSandals\tI\nshoes\tC\tSneakers\tS\n"
    )
    import_judged(JudgedImportConfig(), input_path=src, out_dir=tmp_path / "data")
    labels = pd.DataFrame(
        {
            "query": ["Shoes", "shoes", "shoes", "shoes"],
            "rewrite": ["Running Shoes", "Sandals", "Sneakers", "sneakers"],
            "product_id": ["A", "B", "Z", None],
            "grade": [2, 1, 1, 2],
        }
    )
    labels.to_parquet(tmp_path / "labels.parquet")
    result = evaluate_labels(data_dir=tmp_path / "data", labels_path=tmp_path / "labels.parquet")
    assert result.truth_kind == "judged" and result.judged == 2
    assert result.unjudged == {"pair_not_judged": 1, "query_pairs_have_no_judgments": 1}
    assert result.overall["confusion"] == [[0, 1, 0], [0, 0, 0], [0, 0, 1]]


def test_bad_label_files(tiny_market: Path, tmp_path: Path) -> None:
    pd.DataFrame({"query": ["a"], "rewrite": ["b"]}).to_parquet(tmp_path / "m.parquet")
    with pytest.raises(DataError, match=r"missing column\(s\) grade"):
        evaluate_labels(data_dir=tiny_market, labels_path=tmp_path / "m.parquet")
    pd.DataFrame({"query": ["a", "b"], "rewrite": ["b", "c"], "grade": [1, 3]}).to_parquet(
        tmp_path / "g.parquet"
    )
    with pytest.raises(DataError, match=r"grade must be 0, 1 or 2; row 1 has 3"):
        evaluate_labels(data_dir=tiny_market, labels_path=tmp_path / "g.parquet")
    (tmp_path / "e.parquet").write_bytes(b"")
    with pytest.raises(DataError, match="empty"):
        evaluate_labels(data_dir=tiny_market, labels_path=tmp_path / "e.parquet")
    pd.DataFrame({"query": ["a"], "rewrite": ["b"], "grade": [1]}).to_parquet(
        tmp_path / "ok.parquet"
    )
    with pytest.raises(DataError, match=r"manifest\.json: not found"):
        evaluate_labels(data_dir=tmp_path, labels_path=tmp_path / "ok.parquet")


def test_cli_json_and_report(
    known_pairs: pd.DataFrame, tiny_market: Path, tmp_path: Path, capsys
) -> None:
    known_pairs.to_parquet(tmp_path / "l.parquet")
    assert (
        main(
            [
                "label-eval",
                "--data",
                str(tiny_market),
                "--labels",
                str(tmp_path / "l.parquet"),
                "--json",
                "--report",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert printed["overall"]["macro_f1"] == 1.0
    assert "| all |" in (tmp_path / "r" / "label_eval.md").read_text()
