"""Stored text embeddings: what one step embeds, the next steps preload instead of embedding the
same titles again (the dear part of the teacher on real titles)."""

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qrewrite.errors import DataError
from qrewrite.labeling.encoder import load_embeddings, save_embeddings
from qrewrite.labeling.label import LabelConfig, label
from qrewrite.labeling.teacher import Teacher, embeddings_beside
from qrewrite.mining.config import MiningConfig
from qrewrite.mining.mine import mine
from tests.labeling.fakes import TrigramEncoder
from tests.labeling.test_calibration import _import

TEXTS = ["red shoes", "blue kettle model 2", "lamp"]


def test_stored_embeddings_are_preloaded_and_not_computed_again(tmp_path: Path) -> None:
    first = TrigramEncoder()
    vectors = first.encode(TEXTS)
    assert save_embeddings(first, tmp_path / "e.parquet") == 3
    second = TrigramEncoder()
    assert load_embeddings(second, tmp_path / "e.parquet") == 3
    np.testing.assert_allclose(second.encode(TEXTS), vectors, atol=1e-6)
    assert second.computed == 0
    second.encode(["green helmet"])
    assert second.computed == 1


def test_nothing_embedded_writes_no_file(tmp_path: Path) -> None:
    assert save_embeddings(TrigramEncoder(), tmp_path / "e.parquet") == 0
    assert not (tmp_path / "e.parquet").exists()


def test_vectors_of_another_model_are_never_mixed_in(tmp_path: Path, caplog) -> None:
    first = TrigramEncoder()
    first.encode(TEXTS)
    save_embeddings(first, tmp_path / "e.parquet")
    other = TrigramEncoder()
    other.identity = "another-model window=64"
    with caplog.at_level(logging.WARNING):
        assert load_embeddings(other, tmp_path / "e.parquet") == 0
    assert "e.parquet" in caplog.text and "computed again" in caplog.text
    other.encode(TEXTS)
    assert other.computed == 3


def test_a_file_that_is_not_embeddings_is_refused_with_its_path(tmp_path: Path) -> None:
    bad = tmp_path / "e.parquet"
    bad.write_text("not parquet")
    with pytest.raises(DataError, match=r"e\.parquet: not an embeddings file"):
        load_embeddings(TrigramEncoder(), bad)
    pd.DataFrame({"text": ["a"]}).to_parquet(bad)
    with pytest.raises(DataError, match=r"e\.parquet: not an embeddings file"):
        load_embeddings(TrigramEncoder(), bad)


def test_steps_after_label_do_not_embed_the_judged_titles_again(
    tmp_path: Path, monkeypatch
) -> None:
    """label (real encoder) leaves its embeddings beside the labels; a teacher built from the
    same data and labels, or loaded from a saved teacher, calibrates without embedding."""
    data = _import(tmp_path)
    mined = tmp_path / "mined"
    mine(MiningConfig(), data_dir=data, out_dir=mined)
    labels = tmp_path / "labels" / "labeled_pairs.parquet"
    report = label(
        LabelConfig(),
        data_dir=data,
        candidates_path=mined / "rewrite_candidates.parquet",
        out_path=labels,
    )
    assert embeddings_beside(labels).is_file()
    assert report.encoder["stored"] >= 360  # at least the judged titles

    from sentence_transformers import SentenceTransformer

    def never(*args, **kwargs):
        raise AssertionError("a stored text was embedded again")

    monkeypatch.setattr(SentenceTransformer, "encode", never)
    teacher = Teacher.from_data(data, labels)
    assert teacher.calibration is not None
    # fitted on the same vectors, the calibration is label's own
    assert teacher.calibration.summary.weights == report.calibration["weights"]
    saved = teacher.save(tmp_path / "teacher")
    loaded = Teacher.load(saved)  # what the served model does
    assert loaded.calibration.summary.weights == report.calibration["weights"]
    # and without the stored file, calibration does embed (so the check above can fail)
    embeddings_beside(labels).unlink()
    with pytest.raises(AssertionError, match="embedded again"):
        Teacher.from_data(data, labels)


@pytest.fixture
def shared_fakes(monkeypatch) -> list[TrigramEncoder]:
    """Each teacher's encoder a fake of its own, kept (the real one caches per teacher too)."""
    made: list[TrigramEncoder] = []

    def encoder(self):
        if self._encoder is None:
            self._encoder = TrigramEncoder()
            made.append(self._encoder)
        return self._encoder

    monkeypatch.setattr(Teacher, "encoder", property(encoder))
    return made


def test_a_scheduled_run_embeds_only_what_is_new_since_the_last(
    tiny_market: Path, tiny_mined: Path, tmp_path: Path, shared_fakes, caplog
) -> None:
    from qrewrite.labeling.label import EmbeddingCache

    cache_dir = tmp_path / "cache"
    config = LabelConfig(embedding_cache=str(cache_dir))
    candidates = tiny_mined / "rewrite_candidates.parquet"

    def run(name: str):
        return label(
            config,
            data_dir=tiny_market,
            candidates_path=candidates,
            out_path=tmp_path / name / "labeled_pairs.parquet",
        )

    first = run("first")
    cached = cache_dir / EmbeddingCache.FILE
    assert first.encoder["cache"]["preloaded"] == 0 and cached.is_file()
    texts = set(pd.read_parquet(cached)["text"])
    assert texts == shared_fakes[0].used and shared_fakes[0].computed == len(texts)

    second = run("second")
    assert second.encoder["cache"]["preloaded"] == len(texts)
    assert shared_fakes[1].computed == 0  # nothing embedded again
    assert second.fingerprints["labeled_pairs"] == first.fingerprints["labeled_pairs"]

    # the cache holds what the last run used, not everything it ever held
    stale = TrigramEncoder()
    stale.encode([*texts, "a text no run asks for"])
    save_embeddings(stale, cached)
    run("third")
    assert set(pd.read_parquet(cached)["text"]) == texts

    # a cache that cannot be read is embedded again, with a warning, and rewritten whole
    cached.write_text("not parquet")
    with caplog.at_level(logging.WARNING):
        fourth = run("fourth")
    assert "embedding cache not used" in caplog.text and str(cached) in caplog.text
    assert fourth.fingerprints["labeled_pairs"] == first.fingerprints["labeled_pairs"]
    assert shared_fakes[-1].computed == len(texts)
    assert set(pd.read_parquet(cached)["text"]) == texts
    assert not list(cache_dir.glob(".*partial"))
