"""Batched rewriting and the serving table (``qrewrite rewrite``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from qrewrite.cli import main
from qrewrite.errors import ConfigError, DataError
from qrewrite.serving.export import REWRITES_SCHEMA, RewriteConfig, export_rewrites, read_queries
from qrewrite.serving.rewriter import GenerationSettings, Rewriter
from qrewrite.text import normalize_query, respells
from qrewrite.training.prompts import (
    NORMALIZE_INSTRUCTION,
    REWRITE_INSTRUCTION,
    normalize_prompt,
    rewrite_prompt,
)

QUERIES = ["red running shoes", "oak desk", "wireless earbuds black", "cotton hoodie xl"]


def test_batching_does_not_change_greedy_rewrites(tiny_model: Path) -> None:
    batched = Rewriter.from_dir(tiny_model, GenerationSettings(batch_size=4, max_new_tokens=8))
    single = Rewriter.from_dir(tiny_model, GenerationSettings(batch_size=1, max_new_tokens=8))
    # left padding and attention masks must make a query's greedy rewrite independent of its batch
    assert batched.generate(QUERIES) == single.generate(QUERIES)
    assert batched.stats.queries == len(QUERIES) and len(batched.stats.batches) == 1
    assert len(single.stats.batches) == len(QUERIES)


def test_ranked_rewrites_are_distinct_non_copies_with_grades(tiny_model: Path) -> None:
    settings = GenerationSettings(samples=3, max_new_tokens=8, abstain_on_copy=False)
    r = Rewriter.from_dir(tiny_model, settings)
    raw = [
        ["Red Running Shoes", "trail shoes", "trail  shoes", "", "shoes running red"],
        ["desk oak wood", "query: x", "oak desks"],
    ]
    ranked = r.rank(["red running shoes", "oak desk"], raw, k=5)
    # copies (reordered too), a duplicate and the empty one dropped
    assert [x.text for x in ranked[0]] == ["trail shoes"]
    # an echo of the prompt is malformed; the plural is the query again to the engine
    assert [x.text for x in ranked[1]] == ["desk oak wood"]
    assert all(x.grade in (0, 1, 2) and 0 <= x.p_relevant <= 1 for row in ranked for x in row)
    assert (
        r.rank(["a"], [["b", "c", "d"]], k=2)[0][0].score
        >= r.rank(["a"], [["b", "c", "d"]], k=2)[0][1].score
    )


def test_a_greedy_copy_means_no_rewrite(tiny_model: Path) -> None:
    """The model's own answer is the query: it abstains instead of serving its best sample."""
    r = Rewriter.from_dir(tiny_model, GenerationSettings(max_new_tokens=8))
    raw = [
        ["Red  Running Shoes", "red running shoes size 12"],
        ["desk oak", "oak desk wood"],
        ["oak desk wood", "oak desk"],
    ]
    ranked = r.rank(["red running shoes", "oak desk", "oak desk"], raw, k=3, grade=False)
    assert ranked[0] == []  # greedy copied the query (after normalisation)
    assert ranked[1] == []  # ... its words in another order: the same query to the engine
    assert [x.text for x in ranked[2]] == ["oak desk wood"]  # a sample that copies is dropped


def test_a_stutter_is_never_served(tiny_model: Path) -> None:
    """A greedy rewrite that repeats a word: the model abstains; a sampled one is dropped.
    With ``drop_repeats`` off both are kept, and a repeat the query makes itself is fine."""
    queries = ["boyfriend jeans", "cowboy boots", "2 pack 2 in 1 cable"]
    raw = [
        ["anime jeans jeans", "boyfriend denim"],
        ["western boots", "leather cowboy boot boots", "cowboy boots brown"],
        ["2 pack 2 in 1 usb cable"],
    ]
    r = Rewriter.from_dir(tiny_model, GenerationSettings(max_new_tokens=8))
    ranked = r.rank(queries, raw, k=3, grade=False)
    assert ranked[0] == []
    assert sorted(x.text for x in ranked[1]) == ["cowboy boots brown", "western boots"]
    assert [x.text for x in ranked[2]] == ["2 pack 2 in 1 usb cable"]
    keep = Rewriter.from_dir(tiny_model, GenerationSettings(max_new_tokens=8, drop_repeats=False))
    kept = keep.rank(queries, raw, k=3, grade=False)
    assert sorted(x.text for x in kept[0]) == ["anime jeans jeans", "boyfriend denim"]
    assert len(kept[1]) == 3


class Corrector(Rewriter):
    """The tiny model, answering the normalize prompt with set texts, one or a beam's list
    (its rewrite-mode generation stays the model's)."""

    def _generate_batch(self, queries, sample, *, past_copy=False, prompt=rewrite_prompt, beams=1):
        if prompt is normalize_prompt:
            answers = [getattr(self, "answers", {}).get(q, q) for q in queries]
            return [([a] if isinstance(a, str) else a)[: max(1, beams)] for a in answers]
        return super()._generate_batch(queries, sample, past_copy=past_copy, prompt=prompt)


def test_the_models_spelling_correction_is_its_first_rewrite(tiny_model: Path) -> None:
    """Where one of the model's answers in correction mode only respells the query's words, in
    fewer of the tokenizer's pieces, the likeliest such answer is the first rewrite whatever its
    score, even where the greedy rewrite copies the query; an answer that changes a word, the
    query again, or a spelling no more common is no correction."""
    queries = [
        "red runnning shoes",
        "blu saucpan",
        "ear buds",
        "oak desk",
        "cotton hoodie",
        "grey mug",
        "brown duffel bag",
    ]
    answers = {
        # the query again first; the beam's second respells it, in fewer pieces (11 -> 10)
        queries[0]: ["red runnning shoes", "red running shoes"],
        queries[1]: "blue coffee",  # another word: not a spelling fix
        queries[2]: "earbuds",  # the spaces moved (6 pieces -> 5)
        queries[4]: "cotton hoodie cotton",  # a stutter is no correction
        queries[5]: "gray mug",  # a spelling as common (6 pieces each)
        queries[6]: ["brwn duffel bag", "brown duffel bag"],  # a misspelling (10 pieces each)
    }
    settings = GenerationSettings(max_new_tokens=8, correct_spelling=True, correction_beams=4)
    r = Corrector.from_dir(tiny_model, settings)
    r.answers = answers
    fixes = r.corrections(queries)
    assert fixes == ["red running shoes", "", "earbuds", "", "", "", ""]
    assert r.stats.corrections == 2
    assert r.is_correction("ear buds", "earbuds") and not r.is_correction("earbuds", "ear buds")
    # greedy (one beam, what a model registered before beams is served with): the first only
    greedy = Corrector.from_dir(tiny_model, GenerationSettings(correct_spelling=True))
    greedy.answers = answers
    assert GenerationSettings().correction_beams == 1
    assert greedy.corrections(queries) == ["", "", "earbuds", "", "", "", ""]
    queries, fixes = queries[:5], fixes[:5]
    raw = [
        ["red shoes", "red running shoes", "red running shoes size 9"],
        ["blue saucepan"],
        ["ear buds"],  # the greedy rewrite copies: the model abstains but for its correction
        ["oak desk wood"],
        ["cotton hoodie"],
    ]
    ranked = r.rank(queries, raw, k=3, grade=False, corrections=fixes)
    assert [x.text for x in ranked[0]][:1] == ["red running shoes"]
    assert len({x.text for x in ranked[0]}) == len(ranked[0]) == 3  # listed once
    assert [x.text for x in ranked[1]] == ["blue saucepan"]
    assert [x.text for x in ranked[2]] == ["earbuds"]
    assert [x.text for x in ranked[3]] == ["oak desk wood"] and ranked[4] == []
    # without the setting nothing is asked in correction mode and ranking is as before
    off = Corrector.from_dir(tiny_model, GenerationSettings(max_new_tokens=8))
    assert off.corrections(queries) is None and off.stats.corrections == 0
    plain = off.rank(queries, raw, k=3, grade=False)
    assert plain[2] == [] and [x.text for x in plain[1]] == ["blue saucepan"]
    scores = [x.score for x in plain[0]]
    assert scores == sorted(scores, reverse=True)
    # behind the correction, the rest in the order of their scores
    fix = "red running shoes"
    assert [x.text for x in ranked[0][1:]] == [x.text for x in plain[0] if x.text != fix][:2]
    with pytest.raises(ValueError, match="2 corrections for 5 queries"):
        r.rank(queries, raw, corrections=fixes[:2])


class EqualPieces(Corrector):
    """Every text one piece: the tokenizer's rule never tells a spelling apart."""

    def _pieces(self, text: str) -> int:
        return 1


def test_the_catalog_words_saved_with_the_model_tell_a_correction(
    tiny_model: Path, tmp_path: Path
) -> None:
    """With the catalog's words saved beside the model, an answer that replaces a word no title
    writes with one a title writes is a correction, however the tokenizer splits the two (a
    typo frequent in the shop's queries is one piece, like its fix); one that writes a word no
    title writes is none, and between two spellings the titles both write the pieces decide."""
    import shutil

    from qrewrite.training.models import write_catalog_words

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    written = ["red", "running", "shoe", "brown", "duffel", "bag", "grey", "gray", "mug", "black"]
    write_catalog_words(model, {w: 3 for w in [*written, "croc"]})
    settings = GenerationSettings(max_new_tokens=8, correct_spelling=True, correction_beams=2)
    r = EqualPieces.from_dir(model, settings)
    assert r.catalog_words is not None and "croc" in r.catalog_words
    r.answers = {
        "red runnning shoes": "red running shoes",
        "bllack mug": "black mug",  # "bllack" is no title's word
        "brown duffel bag": ["brwn duffel bag", "brown duffel bags"],  # "brwn" neither
        "grey mug": "gray mug",  # both the titles' words: as many pieces, no correction
        "crocs": "cros",  # "crocs" is the titles' word, "cros" none
        "duffel bag brwn": "brown duffel bag",  # the order is free: the engine ignores it
    }
    queries = list(r.answers)
    fixed = ["red running shoes", "black mug", "", "", "", "brown duffel bag"]
    assert r.corrections(queries) == fixed
    # the same model without the word list: only the pieces decide, and they never do here
    plain = EqualPieces.from_dir(tiny_model, settings)
    plain.answers = r.answers
    assert plain.catalog_words is None and plain.corrections(queries) == [""] * len(queries)
    # a word list that is not one says which file, and why
    (model / "catalog_words.json").write_text('["red", "mug"]')
    with pytest.raises(ConfigError, match=r"catalog_words\.json: not a catalog word list"):
        EqualPieces.from_dir(model, settings)


def test_the_correction_is_asked_with_the_normalize_prompt(tiny_model: Path) -> None:
    """``corrections`` prompts the real model with task C's prompt, greedy: deterministic."""
    from qrewrite.serving.rewriter import prompt_texts

    r = Rewriter.from_dir(tiny_model, GenerationSettings(max_new_tokens=8, correct_spelling=True))
    texts = prompt_texts(r.tokenizer, QUERIES, prompt=normalize_prompt)
    assert all(NORMALIZE_INSTRUCTION in t and REWRITE_INSTRUCTION not in t for t in texts)
    first = r.corrections(QUERIES)
    assert len(first) == len(QUERIES) and first == r.corrections(QUERIES)
    assert all(f == "" or respells(q, f) for q, f in zip(QUERIES, first, strict=True))


def _copy_state(r: Rewriter, query: str, generated: str):
    """Input ids of the rewrite prompt of ``query`` followed by ``generated``, and its length."""
    import torch

    from qrewrite.serving.rewriter import prompt_texts

    prompt = r.tokenizer(prompt_texts(r.tokenizer, [query]), add_special_tokens=False)
    ids = prompt["input_ids"][0]
    gen = r.tokenizer(generated, add_special_tokens=False)["input_ids"] if generated else []
    return torch.tensor([ids + gen]), len(ids)


def test_decoding_past_a_copy_blocks_the_end_and_a_longer_word(tiny_model: Path) -> None:
    import torch

    from qrewrite.serving.rewriter import PastCopy

    r = Rewriter.from_dir(tiny_model)
    starts = r._word_starts()
    eos = r.tokenizer.eos_token_id
    assert starts.any() and not starts.all() and not starts[eos]

    def allowed(query: str, generated: str) -> torch.Tensor:
        ids, n = _copy_state(r, query, generated)
        scores = torch.zeros(1, len(starts))
        PastCopy(r.tokenizer, [query], n, starts)(ids, scores)
        return scores[0] > float("-inf")

    # the rewrite so far reads as the query: no end, and the next piece starts a new word
    copy = allowed("red shoes size 9", "Red shoes  size 9")
    assert not copy[eos] and torch.equal(copy, starts)
    # after a space the next piece must be the new word's letters or digits, not more space
    spaced = allowed("red shoes", "red shoes ")
    letters = ~starts
    letters[[eos, r.tokenizer.pad_token_id]] = False
    assert torch.equal(spaced, letters)
    # anything else is left alone: a prefix of the query, or a rewrite that already differs
    assert allowed("red shoes size 9", "red shoes").all()
    assert allowed("red shoes", "red boots").all()


class CopyingEngine:
    """Another engine whose greedy rewrite copies some queries."""

    def __init__(self, copies: set[str]) -> None:
        self.copies = copies

    def generate_candidates(self, queries, progress=False):
        return [[q.upper() if q in self.copies else f"{q} sale", "sampled one"] for q in queries]


def test_a_greedy_copy_is_decoded_past_when_asked(tiny_model: Path) -> None:
    """The copies are counted either way; with continue_copies the model's greedy rewrite
    past the copy replaces it (whichever engine generated the rest) and ranking serves it."""
    copies = {QUERIES[0], QUERIES[2]}
    base = dict(max_new_tokens=8, batch_size=1)
    kept = Rewriter.from_dir(tiny_model, GenerationSettings(**base))
    kept.candidates = CopyingEngine(copies)
    raw = kept.generate_candidates(QUERIES)
    assert raw == CopyingEngine(copies).generate_candidates(QUERIES)
    assert kept.stats.greedy_copies == 2 and kept.stats.copies_continued == 0
    assert [bool(x) for x in kept.rank(QUERIES, raw, grade=False)] == [False, True, False, True]

    past = Rewriter.from_dir(tiny_model, GenerationSettings(**base, continue_copies=True))
    past.candidates = CopyingEngine(copies)
    got = past.generate_candidates(QUERIES)
    assert past.stats.greedy_copies == 2 and past.stats.copies_continued == 2
    for q, before, after in zip(QUERIES, raw, got, strict=True):
        assert after[1:] == before[1:]  # the samples are the engine's
        assert (after[0] == before[0]) == (q not in copies)
        assert normalize_query(after[0]) != normalize_query(q)
    # the same greedy decoding as the model's own, past the copy: deterministic
    again = Rewriter.from_dir(tiny_model, GenerationSettings(**base, continue_copies=True))
    again.candidates = CopyingEngine(copies)
    assert again.generate_candidates(QUERIES) == got


def test_read_queries_counts_what_it_sets_aside(tmp_path: Path) -> None:
    f = tmp_path / "q.txt"
    f.write_text("red shoes\n\n  \nRed  Shoes\noak desk\n" + "x" * 300 + "\n")
    with pytest.raises(DataError, match=r"row 6 has a query of 300 characters"):
        read_queries(f, RewriteConfig())
    queries, counts = read_queries(f, RewriteConfig(skip_long_queries=True))
    assert queries == ["red shoes", "oak desk"]
    assert counts == {"rows": 6, "empty": 2, "too_long": 1, "duplicates": 1}
    csv = tmp_path / "q.csv"
    pd.DataFrame({"q": ["a"]}).to_csv(csv, index=False)
    with pytest.raises(DataError, match="no 'query' column"):
        read_queries(csv, RewriteConfig())


def test_export_writes_the_serving_table(tiny_model: Path, tmp_path: Path) -> None:
    queries = tmp_path / "queries.parquet"
    pd.DataFrame({"query": [*QUERIES, "", QUERIES[0].upper()]}).to_parquet(queries)
    out = tmp_path / "serving" / "rewrites.parquet"
    summary = export_rewrites(
        RewriteConfig(k=2, samples=3, max_new_tokens=8),
        model_dir=tiny_model,
        queries_file=queries,
        out_file=out,
        progress=False,
    )
    table = pd.read_parquet(out)
    assert list(table.columns) == REWRITES_SCHEMA.names
    assert summary.queries == len(QUERIES)
    assert summary.set_aside == {"empty": 1, "too_long": 0, "duplicates": 1}
    assert summary.rows == len(table) and table.groupby("query")["rank"].max().max() <= 2
    assert (table["query"].map(normalize_query) != table["rewrite"].map(normalize_query)).all()
    assert out.with_suffix(".json").exists()


def test_export_serves_the_models_spelling_correction_first(
    tiny_model: Path, tmp_path: Path, monkeypatch
) -> None:
    """The export ranks through :meth:`Rewriter.rewrite`: a correction is the rank-1 row and
    counted in the summary; with ``correct_spelling`` off the model is not asked."""
    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(QUERIES) + "\n")
    asked: list[list[str]] = []

    def fix_first(self, qs, progress=False):
        if not self.settings.correct_spelling:
            return None
        asked.append(list(qs))
        self.stats.corrections += 1
        return ["red runnning shoes"] + [""] * (len(qs) - 1)

    monkeypatch.setattr(Rewriter, "corrections", fix_first)
    out = tmp_path / "rewrites.parquet"
    summary = export_rewrites(
        RewriteConfig(k=2, samples=2, max_new_tokens=8),
        model_dir=tiny_model,
        queries_file=queries,
        out_file=out,
        progress=False,
    )
    table = pd.read_parquet(out)
    first = table[(table["query"] == QUERIES[0]) & (table["rank"] == 1)]
    assert first["rewrite"].tolist() == ["red runnning shoes"]
    assert asked == [QUERIES] and summary.queries_spelling_fixed == 1
    assert summary.generation["correct_spelling"] is True
    off = export_rewrites(
        RewriteConfig(k=2, samples=2, max_new_tokens=8, correct_spelling=False),
        model_dir=tiny_model,
        queries_file=queries,
        out_file=tmp_path / "off.parquet",
        progress=False,
    )
    assert len(asked) == 1 and off.queries_spelling_fixed == 0


def test_cli_rewrite_errors_are_one_line(tiny_model: Path, tmp_path: Path, capsys) -> None:
    assert (
        main(
            [
                "rewrite",
                "--model",
                str(tiny_model),
                "--queries",
                str(tmp_path / "none.txt"),
                "--out",
                str(tmp_path / "o.parquet"),
                "--no-progress",
            ]
        )
        == 2
    )
    assert "query file not found" in capsys.readouterr().err
    q = tmp_path / "q.txt"
    q.write_text("oak desk\n")
    assert (
        main(
            [
                "rewrite",
                "--model",
                str(tmp_path / "nomodel"),
                "--queries",
                str(q),
                "--out",
                str(tmp_path / "o.parquet"),
            ]
        )
        == 3
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "directory not found" in err
    assert (
        main(
            [
                "rewrite",
                "--model",
                str(tiny_model),
                "--queries",
                str(q),
                "--out",
                str(tmp_path / "o.parquet"),
                "--no-progress",
            ]
        )
        == 0
    )
    assert "1 queries" in capsys.readouterr().out


def test_max_queries_keeps_the_most_searched(tmp_path: Path) -> None:
    f = tmp_path / "query_stats.parquet"
    pd.DataFrame({"query": ["a b", "c d", "e f"], "searches": [1, 9, 5]}).to_parquet(f)
    queries, counts = read_queries(f, RewriteConfig(max_queries=2))
    assert queries == ["c d", "e f"] and counts["beyond_max_queries"] == 1


def test_export_marks_what_the_serving_policy_serves(
    tiny_model: Path, tiny_market: Path, tiny_labels: Path, tmp_path: Path, monkeypatch
) -> None:
    from qrewrite.labeling.teacher import Teacher
    from tests.labeling.fakes import TrigramEncoder

    monkeypatch.setattr(Teacher, "encoder", property(lambda self: TrigramEncoder()))
    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(QUERIES) + "\n")
    settings = {"k": 2, "samples": 3, "max_new_tokens": 8}
    export_rewrites(
        RewriteConfig(**settings, min_p_relevant=0.0),
        model_dir=tiny_model,
        queries_file=queries,
        out_file=tmp_path / "m.parquet",
        progress=False,
    )
    by_model = pd.read_parquet(tmp_path / "m.parquet")
    first = by_model["rank"] == 1
    assert by_model.loc[first, "served"].all() and not by_model.loc[~first, "served"].any()
    assert by_model["teacher_grade"].isna().all()  # the teacher was not asked

    def vetted_by(vet: str):  # the export with the teacher built from the data
        summary = export_rewrites(
            RewriteConfig(**settings, vet=vet),
            model_dir=tiny_model,
            queries_file=queries,
            out_file=tmp_path / f"{vet}.parquet",
            progress=False,
            data_dir=tiny_market,
            labels=tiny_labels,
        )
        return summary, pd.read_parquet(tmp_path / f"{vet}.parquet")

    summary, by_teacher = vetted_by("teacher")
    top = by_teacher[by_teacher["rank"] == 1]
    assert top["teacher_grade"].notna().all()
    assert top["served"].tolist() == (top["teacher_grade"] == 2).tolist()
    assert summary.queries_served == int(top["served"].sum())
    assert by_teacher["page_gain"].isna().all()  # the page is graded for vet "page" only

    _, by_page = vetted_by("page")
    top = by_page[by_page["rank"] == 1]
    assert top["page_gain"].notna().all()
    assert by_page.loc[by_page["rank"] > 1, "page_gain"].isna().all()
    assert top["served"].tolist() == (top["page_gain"] > 0).tolist()

    with pytest.raises(ConfigError, match="vets with the teacher, which reads the catalog"):
        export_rewrites(
            RewriteConfig(vet="teacher"),
            model_dir=tiny_model,
            queries_file=queries,
            out_file=tmp_path / "x.parquet",
        )


def test_a_model_grades_in_the_form_of_task_b_it_learnt(tiny_model: Path, tmp_path: Path) -> None:
    """A model saved before task B asked in task A's conversation (its card names no form) is
    asked in the grading message it learnt; a card naming a form qrewrite never wrote says so."""
    import json
    import shutil

    import numpy as np

    from qrewrite.training.judge import answer_logprobs
    from qrewrite.training.prompts import GRADE_WORDS, tagging_prompt

    model = tmp_path / "model"
    shutil.copytree(tiny_model, model)
    card_file = model / "qrewrite_model.json"
    card = json.loads(card_file.read_text())
    assert card["tagging_prompt"] == "conversation"  # what save_model writes today
    del card["tagging_prompt"]
    card_file.write_text(json.dumps(card))
    before, now = Rewriter.from_dir(model), Rewriter.from_dir(tiny_model)
    assert (before.tagging_form, now.tagging_form) == ("message", "conversation")
    queries, rewrites = ["red running shoes", "oak desk"], ["red sneakers", "oak table"]
    for rewriter in (before, now):
        prompts = [
            tagging_prompt(q, r, form=rewriter.tagging_form)
            for q, r in zip(queries, rewrites, strict=True)
            for _ in GRADE_WORDS
        ]
        scores, _ = answer_logprobs(
            rewriter.model, rewriter.tokenizer, prompts, list(GRADE_WORDS) * len(queries)
        )
        p = np.exp(scores.reshape(-1, 3))
        expected = p / p.sum(axis=1, keepdims=True)
        assert np.allclose(rewriter.judge.probabilities(queries, rewrites), expected)
    assert not np.allclose(
        before.judge.probabilities(queries, rewrites), now.judge.probabilities(queries, rewrites)
    )
    card_file.write_text(json.dumps({**card, "tagging_prompt": "sentence"}))
    with pytest.raises(ConfigError, match=r"qrewrite_model\.json: tagging_prompt='sentence'"):
        Rewriter.from_dir(model)
