"""What is served: the policy and its teacher saved for the registered model, loaded back
grading alike, and ``qrewrite rewrite`` serving with the policy a model was registered with."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from qrewrite.errors import ConfigError, DataError
from qrewrite.labeling.teacher import Teacher
from qrewrite.search_engine import ProductRetriever
from qrewrite.serving.export import RewriteConfig, export_rewrites, serving_setup
from qrewrite.serving.policy import ServingPolicy
from qrewrite.serving.rewriter import GenerationSettings, Rewriter
from qrewrite.serving.served import POLICY_FILE, ServedRewriter, load_policy, save_policy
from tests.labeling.fakes import TrigramEncoder, judged_rows

QUERIES = ["red running shoes", "oak desk", "wireless earbuds black", "cotton hoodie xl"]


@pytest.fixture
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Teacher, "encoder", property(lambda self: TrigramEncoder()))


def _pairs(tiny_labels: Path) -> pd.DataFrame:
    labels = pd.read_parquet(tiny_labels)
    return labels[["query", "rewrite", "product_id"]].head(400).reset_index(drop=True)


def test_a_saved_teacher_grades_as_the_one_built_from_the_data(
    fake_encoder, tiny_market: Path, tiny_labels: Path, tmp_path: Path
) -> None:
    built = Teacher.from_data(tiny_market, tiny_labels)
    assert built.learned["synonyms"] or built.learned["filler"]  # something was learned
    loaded = Teacher.load(built.save(tmp_path / "teacher"))
    pairs = _pairs(tiny_labels)
    expected = built.grade(pairs, learn=False)
    got = loaded.grade(pairs, learn=False)
    assert got["grade"].tolist() == expected["grade"].tolist()
    pd.testing.assert_frame_equal(got.drop(columns="signals"), expected.drop(columns="signals"))


def test_a_saved_calibrated_teacher_fits_the_same_model_again(fake_encoder, tmp_path: Path):
    judged = judged_rows()
    catalog = judged.drop_duplicates("product_id")[["product_id", "title"]]
    teacher = Teacher(catalog.reset_index(drop=True))
    teacher.calibrate(judged[["query", "product_id", "grade"]])
    loaded = Teacher.load(teacher.save(tmp_path / "teacher"))
    assert loaded.calibration is not None
    pairs = pd.DataFrame({"query": ["red shoes", "blue lamp"], "rewrite": ["red shoe", "lamp"]})
    pd.testing.assert_frame_equal(
        loaded.grade(pairs).drop(columns="signals"), teacher.grade(pairs).drop(columns="signals")
    )


def test_a_teacher_saved_before_its_signals_existed_grades_without_them(
    fake_encoder, tmp_path: Path
) -> None:
    """A registered model's teacher is rebuilt as it graded when it was saved: one saved
    before the feedback, title-name or topic signals existed does not gain them from today's
    defaults."""
    from qrewrite.labeling.calibration import FEEDBACK_FEATURE, NAME_FEATURES, TOPIC_FEATURE
    from qrewrite.labeling.teacher import TEACHER_STATE

    judged = judged_rows()
    catalog = judged.drop_duplicates("product_id")[["product_id", "title"]]
    teacher = Teacher(catalog.reset_index(drop=True))
    teacher.calibrate(judged[["query", "product_id", "grade"]])
    saved = teacher.save(tmp_path / "teacher")
    signals = {FEEDBACK_FEATURE, TOPIC_FEATURE, *NAME_FEATURES}
    assert signals <= set(Teacher.load(saved).calibration.features.names)
    state = json.loads((saved / TEACHER_STATE).read_text())
    for setting in ("feedback_depth", "title_names", "topics"):
        del state["config"][f"calibration_{setting}"]  # as an older qrewrite wrote it
    (saved / TEACHER_STATE).write_text(json.dumps(state))
    old = Teacher.load(saved)
    assert old.config.calibration_feedback_depth == 0
    assert not signals & set(old.calibration.features.names)


def test_a_policy_round_trips_and_bad_ones_are_clear_errors(
    fake_encoder, tiny_market: Path, tiny_labels: Path, tmp_path: Path
) -> None:
    generation = GenerationSettings(samples=2, max_new_tokens=8)
    by_model = save_policy(tmp_path / "m", ServingPolicy("model", 0.7), generation=generation)
    setup = load_policy(by_model)
    assert setup.policy == ServingPolicy("model", 0.7) and setup.teacher is None
    assert setup.generation == generation
    assert not (by_model / "teacher").exists()  # nothing the policy does not need

    with pytest.raises(ConfigError, match="vets with the teacher: give the data"):
        save_policy(tmp_path / "t", ServingPolicy("teacher"))
    teacher = Teacher.from_data(tiny_market, tiny_labels)
    setup = load_policy(save_policy(tmp_path / "t", ServingPolicy("teacher"), teacher=teacher))
    assert isinstance(setup.teacher, Teacher)
    assert setup.teacher.learned["synonyms"] == teacher.learned["synonyms"]

    page = ServingPolicy("page", min_page_gain=0.1, page_size=5, merge="interleave")
    setup = load_policy(save_policy(tmp_path / "p", page, teacher=teacher))
    assert setup.policy == page and isinstance(setup.teacher, Teacher)
    lighter = ServingPolicy("page", rewrite_weight=0.5)  # the fusion travels with the model
    assert load_policy(save_policy(tmp_path / "w", lighter, teacher=teacher)).policy == lighter
    # a policy saved before the page's fields existed serves with their defaults
    (by_model / POLICY_FILE).write_text(json.dumps({"vet": "model", "min_p_relevant": 0.7}))
    assert load_policy(by_model).policy == ServingPolicy("model", 0.7)

    (by_model / POLICY_FILE).write_text(json.dumps({"vet": "judge", "min_p_relevant": 0.5}))
    with pytest.raises(ConfigError, match="vet='judge': expected one of"):
        load_policy(by_model)
    (by_model / POLICY_FILE).write_text("{not json")
    with pytest.raises(DataError, match="not a saved serving policy"):
        load_policy(by_model)
    with pytest.raises(DataError, match="not found"):
        load_policy(tmp_path / "nothing")


def test_the_served_rewrite_is_the_top_one_the_policy_passes(
    fake_encoder, tiny_model: Path, tiny_market: Path, tiny_labels: Path
) -> None:
    rewriter = Rewriter.from_dir(tiny_model, GenerationSettings(samples=3, max_new_tokens=8))
    teacher = Teacher.from_data(tiny_market, tiny_labels)
    with pytest.raises(ConfigError, match="vets with the teacher, and none was given"):
        ServedRewriter(rewriter, ServingPolicy("teacher"))
    served = ServedRewriter(rewriter, ServingPolicy("teacher"), teacher).rewrite(QUERIES, k=2)
    assert [s.query for s in served] == QUERIES
    for s in served:
        assert s.served == (s.teacher_grade == 2)
        assert s.served_rewrite == (s.rewrites[0].text if s.served else None)
    everything = ServedRewriter(rewriter, ServingPolicy("model", 0.0)).rewrite(QUERIES, k=2)
    assert all(s.teacher_grade is None for s in everything)
    assert [s.served for s in everything] == [bool(s.rewrites) for s in everything]


def test_the_page_vetter_serves_as_evaluation_measures(
    fake_encoder, tiny_model: Path, tiny_market: Path, tiny_labels: Path
) -> None:
    """Served with vet "page", each top rewrite's gain is the one evaluation computes over the
    data's catalog, and it is served exactly where the page gains."""
    rewriter = Rewriter.from_dir(tiny_model, GenerationSettings(samples=3, max_new_tokens=8))
    teacher = Teacher.from_data(tiny_market, tiny_labels)
    policy = ServingPolicy("page")
    served = ServedRewriter(rewriter, policy, teacher).rewrite(QUERIES, k=2)
    catalog = pd.read_parquet(tiny_market / "catalog.parquet")
    measured = policy.page_gains(
        teacher,
        ProductRetriever(catalog, policy.recall_depth),
        QUERIES,
        [s.rewrites[0].text if s.rewrites else "" for s in served],
    )
    assert [s.page_gain for s in served] == pytest.approx(measured)
    assert any(g is not None for g in measured)
    for s in served:
        assert (s.page_gain is None) == (not s.rewrites)
        assert s.served == (s.page_gain is not None and s.page_gain > 0)


def test_rewrite_serves_with_the_registered_policy_unless_told_otherwise(
    fake_encoder, tiny_model: Path, tiny_market: Path, tiny_labels: Path, tmp_path: Path
) -> None:
    teacher = Teacher.from_data(tiny_market, tiny_labels)
    generation = GenerationSettings(samples=3, max_new_tokens=8)
    policy_dir = save_policy(
        tmp_path / "policy", ServingPolicy("teacher"), teacher=teacher, generation=generation
    )
    # the default: what the model was registered with, generation settings included
    setup = serving_setup(RewriteConfig(), policy_dir=policy_dir)
    assert setup.policy.vet == "teacher" and setup.source == "registered with the model"
    assert setup.generation == generation
    # an explicit vet overrides the policy; the registered teacher still serves it
    setup = serving_setup(RewriteConfig(vet="both"), policy_dir=policy_dir)
    assert setup.policy.vet == "both" and isinstance(setup.teacher, Teacher)
    # a plain model directory carries no policy: its own vetting, said in the summary
    queries = tmp_path / "q.txt"
    queries.write_text("\n".join(QUERIES) + "\n")
    summary = export_rewrites(
        RewriteConfig(samples=3, max_new_tokens=8),
        model_dir=tiny_model,
        queries_file=queries,
        out_file=tmp_path / "plain.parquet",
        progress=False,
    )
    assert summary.policy_source == "the model's own vetting"
    summary = export_rewrites(
        RewriteConfig(),
        model_dir=tiny_model,
        queries_file=queries,
        out_file=tmp_path / "registered.parquet",
        progress=False,
        policy_dir=policy_dir,
    )
    assert summary.policy_source == "registered with the model"
    assert "the teacher grades the rewrite relevant" in summary.policy
    top = pd.read_parquet(tmp_path / "registered.parquet").query("rank == 1")
    assert top["served"].tolist() == (top["teacher_grade"] == 2).tolist()
