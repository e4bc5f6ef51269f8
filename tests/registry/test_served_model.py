"""The registered model is the served model: it carries the serving policy its evaluation
measured and the teacher that policy vets with; through pyfunc, through ``mlflow models serve``
over HTTP and through ``qrewrite rewrite`` it serves the same rewrites; its requirements name
everything it imports; bad requests get a 4xx with a message and the server stays up."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from qrewrite.cli import main
from qrewrite.labeling.teacher import Teacher
from qrewrite.registry.config import RegistryConfig
from qrewrite.registry.pyfunc import MAX_QUERIES_PER_REQUEST, MAX_QUERY_CHARS
from qrewrite.registry.registry import register
from qrewrite.text import catalog_word_counts
from qrewrite.training.models import write_catalog_words
from tests.labeling.fakes import TrigramEncoder
from tests.registry.servers import model_server
from tests.registry.test_registry_server import write_metrics

pytestmark = pytest.mark.slow

QUERIES = ["red running shoes", "oak desk", "wireless earbuds black", "cotton hoodie xl"]
CHAMPION = "models:/query-rewriter@champion"
SERVING_ENV_TEST = "QREWRITE_TEST_SERVING_ENV"


@pytest.fixture(scope="module")
def store(tiny_model: Path, tiny_market: Path, tiny_labels: Path, tmp_path_factory) -> str:
    """A SQLite store whose champion was evaluated under teacher vetting (as the demo's is)."""
    tmp = tmp_path_factory.mktemp("served_model")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    metrics = write_metrics(tmp / "metrics.json", 0.03, 0.5, vet="teacher", samples=3)
    # with the catalog's words, as SFT and GRPO save every model
    model = shutil.copytree(tiny_model, tmp / "model")
    titles = pd.read_parquet(tiny_market / "catalog.parquet")["title"].astype(str)
    write_catalog_words(model, catalog_word_counts(titles))
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Teacher, "encoder", property(lambda self: TrigramEncoder()))
        r = register(
            RegistryConfig(tracking_uri=uri),
            model,
            metrics,
            data_dir=tiny_market,
            labels=tiny_labels,
        )
    assert r.decision.promote and r.champion == "1"
    return uri


@pytest.fixture
def env(store: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("QREWRITE_MODEL_CACHE", str(tmp_path / "cache"))
    return store


def test_pyfunc_and_rewrite_serve_the_same_rewrites(env, tmp_path, monkeypatch, capsys) -> None:
    import mlflow.pyfunc

    monkeypatch.setattr(Teacher, "encoder", property(lambda self: TrigramEncoder()))
    loaded = mlflow.pyfunc.load_model(CHAMPION)
    assert "the teacher grades the rewrite relevant" in loaded.metadata.metadata["serving_policy"]
    # the catalog's words came with the weights: the spelling rule serves as it was measured
    words = loaded.unwrap_python_model().served.rewriter.catalog_words
    assert words is not None and {"running", "shoe"} <= words
    out = loaded.predict(pd.DataFrame({"query": QUERIES}), params={"k": 2})
    # the policy it was registered with: the teacher vets every top rewrite
    for row in out.itertuples():
        assert (row.teacher_grade is not None) == bool(row.rewrites)
        assert row.served == (row.rewrites[0] if row.teacher_grade == 2 else None)

    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(QUERIES) + "\n")
    table = tmp_path / "rewrites.parquet"
    args = ["rewrite", "--model", CHAMPION, "--queries", str(queries), "--out", str(table)]
    assert main([*args, "--set", "k=2", "--no-progress"]) == 0
    assert "served by the policy registered with the model" in capsys.readouterr().out
    exported = pd.read_parquet(table)
    by_query = {q: g.sort_values("rank") for q, g in exported.groupby("query")}
    for row in out.itertuples():
        rows = by_query.get(row.query)
        assert (rows["rewrite"].tolist() if rows is not None else []) == list(row.rewrites)
        served = rows.loc[rows["served"], "rewrite"].tolist() if rows is not None else []
        assert served == ([row.served] if row.served else [])


def test_each_version_carries_its_card_and_report(env) -> None:
    from mlflow import MlflowClient

    client = MlflowClient()
    version = client.get_model_version("query-rewriter", "1")
    assert version.description.startswith(
        "Serves: serve a top rewrite when the teacher grades the rewrite relevant (2)"
    )
    assert "Gate: promoted: first champion" in version.description
    card = Path(client.download_artifacts(version.run_id, "model_card.md")).read_text()
    assert card.startswith("# query-rewriter version 1")
    assert "**the model alone**" in card and "**with the serving policy**" in card
    assert "ok: served_rate 0.5000 >= 0.05" in card  # every gate check, with its value
    assert "| red running shoes | 40 | red trainers | relevant | relevant | yes |" in card
    assert "| fingerprint |" in card  # lineage
    artifacts = {a.path for a in client.list_artifacts(version.run_id)}
    assert {"metrics.json", "model_card.md"} <= artifacts


def test_a_teacher_vetted_evaluation_needs_the_teacher_to_register(
    tiny_model: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    metrics = write_metrics(tmp_path / "metrics.json", 0.03, 0.5, vet="teacher")
    assert main(["register", "--model", str(tiny_model), "--metrics", str(metrics)]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "vets with the teacher: pass --data and --labels" in err


@pytest.mark.skipif(
    not os.environ.get(SERVING_ENV_TEST),
    reason=f"builds a clean virtual environment (2-3 min); {SERVING_ENV_TEST}=1 runs it "
    "(`make test-serving-env`, which CI runs)",
)
def test_the_model_serves_from_a_clean_environment_of_its_requirements(env, tmp_path) -> None:
    """What a serving image does: a fresh virtual environment, ``pip install -r`` the model's
    requirements.txt (qrewrite is not among them: it travels with the model as code), load the
    downloaded model and predict."""
    import mlflow

    model = Path(mlflow.artifacts.download_artifacts(CHAMPION, dst_path=str(tmp_path / "m")))
    requirements = (model / "requirements.txt").read_text()
    assert "qrewrite" not in requirements and "torch==" in requirements
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "-r", str(model / "requirements.txt")]
    subprocess.run(pip, check=True, timeout=1800)
    script = (
        "import json, sys, importlib.util, mlflow.pyfunc, pandas as pd\n"
        "assert importlib.util.find_spec('qrewrite') is None  # only the model's copy\n"
        "m = mlflow.pyfunc.load_model(sys.argv[1])\n"
        "out = m.predict(pd.DataFrame({'query': ['red running shoes', '']}), params={'k': 2})\n"
        "print(json.dumps(out.to_dict(orient='records')))\n"
    )
    run = subprocess.run(
        [str(python), "-c", script, str(model)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert run.returncode == 0, run.stderr[-3000:]
    rows = json.loads(run.stdout.strip().splitlines()[-1])
    assert [r["query"] for r in rows] == ["red running shoes", ""]
    assert rows[1]["rewrites"] == [] and rows[1]["served"] is None
    assert len(rows[0]["rewrites"]) <= 2
    if rows[0]["rewrites"]:
        assert rows[0]["teacher_grade"] in (0, 1, 2)  # the teacher came along


def test_mlflow_models_serve_answers_over_http_and_survives_bad_requests(env, tmp_path):
    import requests

    with model_server(CHAMPION, env, tmp_path) as base:

        def post(payload: object, raw: bool = False) -> requests.Response:
            body = payload if raw else json.dumps(payload)
            headers = {"Content-Type": "application/json"}
            return requests.post(f"{base}/invocations", data=body, headers=headers, timeout=120)

        split = post(
            {"dataframe_split": {"columns": ["query"], "data": [[q] for q in QUERIES]}}
            | {"params": {"k": 2}}
        )
        assert split.status_code == 200, split.text
        rows = split.json()["predictions"]
        assert [r["query"] for r in rows] == QUERIES
        for r in rows:
            assert len(r["rewrites"]) <= 2
            assert r["served"] in (None, r["rewrites"][0] if r["rewrites"] else None)
            if r["served"] is not None:
                assert r["teacher_grade"] == 2
        records = post({"dataframe_records": [{"query": QUERIES[0]}]})
        assert records.status_code == 200 and len(records.json()["predictions"]) == 1

        # bounded, documented answers for odd but valid input
        odd = post({"dataframe_records": [{"query": ""}, {"query": "x" * 10_000}]})
        assert odd.status_code == 200, odd.text
        assert all(r["rewrites"] == [] and r["served"] is None for r in odd.json()["predictions"])
        assert len("x" * 10_000) > MAX_QUERY_CHARS

        # bad requests: a 4xx with a message, never a 500 or a traceback
        too_many = [{"query": f"q{i}"} for i in range(MAX_QUERIES_PER_REQUEST * 10)]
        for payload, expected in (
            ({"dataframe_records": [{"q": "shoes"}]}, "query"),
            ({"dataframe_records": too_many}, "split the batch"),
            ({"dataframe_records": [{"query": "shoes"}], "params": {"k": 99}}, "k=99"),
            ({"dataframe_records": [{"query": 7}]}, ""),
            ("{not json", ""),
        ):
            answer = post(payload, raw=isinstance(payload, str))
            assert 400 <= answer.status_code < 500, (payload, answer.status_code, answer.text)
            assert "Traceback" not in answer.text
            assert expected in answer.json().get("message", "")
        assert requests.get(f"{base}/ping", timeout=10).status_code == 200


def test_a_model_registered_under_the_page_vetter_serves_the_pages_evaluation_grades(
    tiny_model: Path, tiny_market: Path, tiny_labels: Path, tmp_path: Path, monkeypatch
) -> None:
    """Registered with vet "page", the pyfunc model serves a top rewrite exactly where the
    policy, over the data's catalog as evaluation builds it, finds its page better."""
    import mlflow.pyfunc

    from qrewrite.search_engine import ProductRetriever
    from qrewrite.serving.policy import ServingPolicy

    monkeypatch.setattr(Teacher, "encoder", property(lambda self: TrigramEncoder()))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("QREWRITE_MODEL_CACHE", str(tmp_path / "cache"))
    metrics = write_metrics(tmp_path / "metrics.json", 0.03, 0.5, vet="page", samples=3)
    r = register(
        RegistryConfig(tracking_uri=uri),
        tiny_model,
        metrics,
        data_dir=tiny_market,
        labels=tiny_labels,
    )
    loaded = mlflow.pyfunc.load_model(f"models:/query-rewriter/{r.version}")
    assert "above the original's own" in loaded.metadata.metadata["serving_policy"]
    out = loaded.predict(pd.DataFrame({"query": QUERIES}), params={"k": 2})
    policy = ServingPolicy(vet="page")
    catalog = pd.read_parquet(tiny_market / "catalog.parquet")
    tops = [row.rewrites[0] if row.rewrites else "" for row in out.itertuples()]
    teacher = Teacher.from_data(tiny_market, tiny_labels)
    gains = policy.page_gains(teacher, ProductRetriever(catalog, 100), QUERIES, tops)
    for row, top, gain in zip(out.itertuples(), tops, gains, strict=True):
        assert row.served == (top if gain is not None and gain > 0 else None)
        # the client is told the gain it was served (or refused) on
        assert (row.page_gain is None or row.page_gain != row.page_gain) == (gain is None)
        if gain is not None:
            assert row.page_gain == pytest.approx(gain)
