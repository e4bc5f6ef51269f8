"""``build-datasets``: filters, balance, the split by query (no leakage), contracts, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from datasets import load_from_disk

from qrewrite.cli import main
from qrewrite.errors import ContractViolation, DataError
from qrewrite.text import catalog_word_counts, normalize_query, words
from qrewrite.training.datasets import (
    DatasetConfig,
    build_datasets,
    check_no_query_leakage,
    load_training_split,
    split_of,
)
from qrewrite.training.prompts import (
    GRADE_WORDS,
    NORMALIZE_INSTRUCTION,
    TAGGING_INSTRUCTION,
    answer,
    is_grade_answer,
    learnt_tagging_form,
    parse_tagging_prompt,
    rewrite_prompt,
)


def _frames(path: Path) -> dict[str, pd.DataFrame]:
    dd = load_from_disk(str(path))
    return {s: dd[s].to_pandas() for s in ("train", "eval")}


def test_no_query_is_in_both_splits(tiny_datasets: Path) -> None:
    sft, grpo = _frames(tiny_datasets / "sft"), _frames(tiny_datasets / "grpo")
    train = {normalize_query(q) for q in [*sft["train"]["query"], *grpo["train"]["query"]]}
    held = {normalize_query(q) for q in [*sft["eval"]["query"], *grpo["eval"]["query"]]}
    assert train and held
    assert not train & held


def test_split_is_a_stable_function_of_the_normalised_query() -> None:
    assert split_of("Red Shoes", 7, 0.5) == split_of("  red   shoes ", 7, 0.5)
    splits = [split_of(f"query {i}", 7, 0.2) for i in range(2000)]
    assert 0.15 < splits.count("eval") / len(splits) < 0.25


def test_leakage_check_refuses_a_query_in_both_splits() -> None:
    sft = pd.DataFrame({"query": ["red shoes", "Red Shoes"], "split": ["train", "eval"]})
    with pytest.raises(DataError, match="leaks 1 queries"):
        check_no_query_leakage(sft, sft.head(0))


def test_rewrite_examples_are_relevant_rewrites_with_conversion_evidence(
    tiny_datasets: Path, tiny_labels: Path, tiny_mined: Path, tiny_market: Path, tmp_path: Path
) -> None:
    sft = pd.concat(_frames(tiny_datasets / "sft").values())
    rewrites = sft[sft["task"] == "rewrite"]
    labels = pd.read_parquet(tiny_labels)
    graded = labels.set_index(["query", "rewrite"]).sort_index()["grade"]
    for q, r in zip(rewrites["query"], rewrites["target"], strict=True):
        assert graded.loc[(q, r)].max() == 2
    assert rewrites.groupby("query").size().max() <= DatasetConfig().max_rewrites_per_query
    # a pair more than one miner found is one example (the labels hold it once per source)
    assert labels.duplicated(["query", "rewrite"]).any()
    for name, frame in _frames(tiny_datasets / "sft").items():
        task_a = frame[frame["task"] == "rewrite"]
        assert not task_a.duplicated(["query", "target"]).any(), name
    # a rewrite reduced from the titles bought after the query has those purchases as evidence:
    # it passes a conversion filter that no other rewrite passes
    strict = DatasetConfig(min_cvr_lift=10.0, min_increment=10_000)
    report = build_datasets(
        strict,
        data_dir=tiny_market,
        mined_dir=tiny_mined,
        labels_path=tiny_labels,
        out_dir=tmp_path / "strict",
    )
    by_source = report.task_a["by_source"]
    assert by_source["engaged_title_rewrite"]["kept"] == report.task_a["kept_after_per_query_cap"]
    assert report.task_a["from_engaged_titles"] >= by_source["engaged_title_rewrite"]["kept"] > 0
    # ... and without them nothing passes: no rewrite task, a clear error
    untitled = tmp_path / "untitled.parquet"
    labels[labels["source"] != "engaged_title_rewrite"].to_parquet(untitled)
    with pytest.raises(DataError, match="no rewrite passed the filters"):
        build_datasets(
            strict,
            data_dir=tiny_market,
            mined_dir=tiny_mined,
            labels_path=untitled,
            out_dir=tmp_path,
        )


def _built(
    config: DatasetConfig, market: Path, mined: Path, labels: Path, out: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The train and eval SFT frames ``build-datasets`` writes to ``out`` under ``config``."""
    build_datasets(config, data_dir=market, mined_dir=mined, labels_path=labels, out_dir=out)
    frames = _frames(out / "sft")
    return frames["train"], frames["eval"]


def _grading(frame: pd.DataFrame) -> pd.DataFrame:
    """Task B's examples that grade a rewrite (not those that write one to a grade)."""
    return frame[(frame["task"] == "tag") & frame["target"].map(is_grade_answer)]


def test_tagging_task_is_balanced_and_answers_grade_words(tiny_datasets: Path) -> None:
    tags = _grading(_frames(tiny_datasets / "sft")["train"])
    counts = tags["target"].value_counts()
    assert set(counts.index) == set(GRADE_WORDS)
    assert counts.max() / len(tags) < 0.5  # the majority class is not the answer
    assert all(GRADE_WORDS[g] == t for g, t in zip(tags["grade"], tags["target"], strict=True))
    assert all(m[-1]["role"] == "assistant" for m in tags["completion"])


def test_tagging_asks_the_grade_of_the_rewrite_in_the_conversation_that_wrote_it(
    tiny_datasets: Path,
) -> None:
    # the rewrite is the assistant's answer to task A's own prompt: grading it trains the
    # states the model writes rewrites from
    tags = _grading(_frames(tiny_datasets / "sft")["train"])
    for query, prompt in zip(tags["query"], tags["prompt"], strict=True):
        prompt = list(prompt)
        query_again, rewrite = parse_tagging_prompt(prompt)
        assert query_again == query and rewrite
        assert prompt == [
            *rewrite_prompt(query),
            *answer(rewrite),
            {"role": "user", "content": TAGGING_INSTRUCTION},
        ]


def test_rewrites_written_to_a_grade_are_mined_pairs_of_that_grade_in_train_only(
    tiny_datasets: Path, tiny_market: Path, tiny_mined: Path, tiny_labels: Path, tmp_path: Path
) -> None:
    # none unless asked (the presets do not ask: docs/benchmarks.md)
    plain = _frames(tiny_datasets / "sft")["train"]
    assert plain["target"].map(is_grade_answer)[plain["task"] == "tag"].all()
    config = DatasetConfig(eval_fraction=0.3, normalize_ratio=0.7, graded_rewrite_ratio=1.5)
    train, held = _built(config, tiny_market, tiny_mined, tiny_labels, tmp_path)
    written = train[(train["task"] == "tag") & ~train["target"].map(is_grade_answer)]
    n_rewrite = (train["task"] == "rewrite").sum()
    report = json.loads((tmp_path / "dataset_report.json").read_text())
    requested = report["task_b"]["graded_rewrites_requested"]
    assert requested == round(1.5 * n_rewrite)
    # a grade with fewer train pairs than its third gives all it has
    assert requested / 2 < len(written) <= requested
    assert held["target"].map(is_grade_answer)[held["task"] == "tag"].all()
    shares = written["grade"].value_counts()
    assert set(shares.index) == {0, 1, 2} and shares.max() == -(-requested // 3)  # a third
    labels = pd.read_parquet(tiny_labels)
    graded: dict[tuple[str, str], set[int]] = {}  # two miners can find one pair
    for q, r, g, kind in zip(
        labels["query"], labels["rewrite"], labels["grade"], labels["pair_kind"], strict=True
    ):
        if kind == "query_rewrite":
            graded.setdefault((q, r), set()).add(int(g))
    for query, rewrite, grade, prompt in zip(
        written["query"], written["target"], written["grade"], written["prompt"], strict=True
    ):
        assert grade in graded[(query, rewrite)]
        assert list(prompt) == rewrite_prompt(query, grade=int(grade))
    # one message, as task B's old grading form was: the form is read from grading examples
    assert learnt_tagging_form(pd.concat([written, _grading(train)])) == "conversation"
    assert sum(report["task_b"]["graded_rewrites"].values()) == len(written)
    assert report["task_b"]["grades"]["train"] == _grading(train)["target"].value_counts().to_dict()
    assert "written to a grade" in (tmp_path / "dataset_report.md").read_text()
    # they come on top: the grading examples are those of the same build without them
    columns = ["query", "target", "grade"]
    assert _grading(train)[columns].values.tolist() == _grading(plain)[columns].values.tolist()


def test_grpo_prompts_carry_what_the_rewards_need(tiny_datasets: Path) -> None:
    train = _frames(tiny_datasets / "grpo")["train"]
    assert {"prompt", "query", "purchased", "relevant", "original_retrieved"} <= set(train)
    assert (train["relevant"].map(len) >= 1).all()
    assert train["query"].is_unique
    for q, prompt in zip(train["query"], train["prompt"], strict=True):
        assert f"query: {q}" in prompt[-1]["content"]


def test_saved_sets_load_back_through_their_contracts(tiny_datasets: Path) -> None:
    assert len(load_training_split(tiny_datasets / "sft", "sft")["train"]) > 0
    assert len(load_training_split(tiny_datasets / "grpo", "grpo")["train"]) > 0
    report = (tiny_datasets / "dataset_report.md").read_text()
    assert "Split" in report and "sft_examples" in report


def test_the_catalog_words_are_written_beside_the_datasets(
    tiny_datasets: Path, tiny_market: Path
) -> None:
    """What tells the rewriter a misspelling from the shop's spelling: every word of the
    catalog's titles, counted by the titles that write it; no query's word unless a title
    writes it."""
    from qrewrite.training.models import load_catalog_words

    titles = pd.read_parquet(tiny_market / "catalog.parquet")["title"].astype(str)
    written = json.loads((tiny_datasets / "catalog_words.json").read_text())["titles_writing"]
    assert written == dict(catalog_word_counts(titles))
    assert max(written.values()) < len(titles) and min(written.values()) >= 1
    assert load_catalog_words(tiny_datasets) == frozenset(written)
    queries = pd.read_parquet(tiny_market / "search_log.parquet")["query"]
    typos = {w for q in queries for w in words(q)} - frozenset(written)
    assert typos  # the tiny market's misspelt queries write words no title does


def test_a_dataset_failing_its_contract_is_refused(tiny_datasets: Path, tmp_path: Path) -> None:
    from datasets import Dataset, DatasetDict

    dd = load_from_disk(str(tiny_datasets / "sft"))
    bad = dd["train"].to_pandas()
    bad["task"] = "summarise"
    DatasetDict(
        {"train": Dataset.from_pandas(bad, preserve_index=False), "eval": dd["eval"]}
    ).save_to_disk(str(tmp_path / "sft"))
    with pytest.raises(ContractViolation, match="sft_examples"):
        load_training_split(tmp_path / "sft", "sft")
    with pytest.raises(DataError, match="not a saved training set"):
        load_training_split(tmp_path / "missing", "sft")


def test_empty_labels_fail_in_one_line(tiny_market, tiny_mined, tmp_path, capsys) -> None:
    labels = pd.read_parquet(tiny_mined / "rewrite_candidates.parquet")
    empty = tmp_path / "labeled_pairs.parquet"
    labels.head(0).assign(
        pair_kind="", grade=0, p_irrelevant=0.0, p_partial=0.0, p_relevant=0.0
    ).to_parquet(empty)
    code = main(
        [
            "build-datasets",
            f"--data={tiny_market}",
            f"--mined={tiny_mined}",
            f"--labels={empty}",
            f"--out={tmp_path / 'ds'}",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "no labeled pairs" in err and len(err.strip().splitlines()) == 1


def test_tagging_ratio_weights_the_task_by_repeating_train_pairs_only(
    tiny_market: Path, tiny_mined: Path, tiny_labels: Path, tmp_path: Path
) -> None:
    config = DatasetConfig(eval_fraction=0.3, tagging_ratio=3.0)
    train, held = _built(config, tiny_market, tiny_mined, tiny_labels, tmp_path)
    n_rewrite = (train["task"] == "rewrite").sum()
    assert (train["task"] == "tag").sum() == 3 * n_rewrite
    held_tags = held[held["task"] == "tag"]
    pairs = held_tags["prompt"].map(lambda m: parse_tagging_prompt(list(m)))
    assert pairs.is_unique  # held-out pairs are never repeated


def test_normalisation_pairs_are_train_only_and_never_a_held_out_query(
    tiny_datasets: Path,
) -> None:
    frames = _frames(tiny_datasets / "sft")
    train, held = frames["train"], frames["eval"]
    normalize = train[train["task"] == "normalize"]
    assert not (held["task"] == "normalize").any()
    n_rewrite = (train["task"] == "rewrite").sum()
    report = __import__("json").loads((tiny_datasets / "dataset_report.json").read_text())
    task_c = report["task_c"]
    assert task_c["requested"] == round(0.7 * n_rewrite)
    assert task_c["kept"] == len(normalize) == task_c["requested"] - task_c["set_aside_held_out"]
    assert len(normalize) > 0.5 * n_rewrite
    held_out = {normalize_query(q) for q in held["query"]}
    held_out |= {normalize_query(q) for q in _frames(tiny_datasets / "grpo")["eval"]["query"]}
    for noisy, clean in zip(normalize["query"], normalize["target"], strict=True):
        assert normalize_query(noisy) not in held_out and normalize_query(clean) not in held_out
    prompt = normalize["prompt"].iloc[0][-1]["content"]
    assert prompt.startswith(NORMALIZE_INSTRUCTION + "\nquery: ")
    # most pairs change the text: a pair that changes nothing teaches copying
    assert (normalize["query"].map(normalize_query) != normalize["target"]).mean() > 0.7
    assert "normalisation examples" in (tiny_datasets / "dataset_report.md").read_text()


def test_no_normalisation_task_unless_asked(
    tiny_market: Path, tiny_mined: Path, tiny_labels: Path, tmp_path: Path
) -> None:
    report = build_datasets(
        DatasetConfig(eval_fraction=0.3),
        data_dir=tiny_market,
        mined_dir=tiny_mined,
        labels_path=tiny_labels,
        out_dir=tmp_path,
    )
    assert report.task_c["kept"] == 0
    assert set(_frames(tmp_path / "sft")["train"]["task"]) == {"rewrite", "tag"}
