"""The labeling and dataset components, called directly with local artifacts: each reads the files
the previous step wrote, writes the ones the next step reads, and logs under the pipeline run."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from datasets import load_from_disk
from kfp.dsl import Artifact, Dataset, Markdown

from qrewrite.errors import ConfigError, DataError
from qrewrite.labeling.label import LABELED_PAIRS
from qrewrite_components import build_training_datasets, label_rewrite_pairs
from tests.components.helpers import artifact, artifact_paths, child_runs, preset


def test_label_writes_the_pairs_the_dataset_step_reads(
    tiny_market, tiny_mined, tmp_path, parent, fake_encoder
) -> None:
    """``labeled_pairs.parquet`` in the labels artifact, its size and backend in the metadata,
    and a ``label`` run under the pipeline run with the grades and the report."""
    labels = artifact(Dataset, tmp_path / "labels")
    label_rewrite_pairs.python_func(
        config=preset(),
        market=artifact(Dataset, tiny_market),
        mined=artifact(Dataset, tiny_mined),
        parent_run_id=parent,
        labels=labels,
    )
    pairs = pd.read_parquet(tmp_path / "labels" / "labeled_pairs.parquet")
    assert list(pairs.columns) == LABELED_PAIRS.names
    assert labels.metadata == {"pairs": len(pairs), "backend": "teacher"}
    candidates = pd.read_parquet(tiny_mined / "rewrite_candidates.parquet")
    assert 0 < len(pairs) <= len(candidates)
    run = child_runs(parent)["label"]
    assert run.data.metrics["pairs_labeled"] == len(pairs)
    grades = {k: v for k, v in run.data.metrics.items() if k.startswith("grades/")}
    assert sum(grades.values()) == len(pairs)
    assert run.data.params["backend"] == "teacher"
    assert "labeled_pairs.report.json" in artifact_paths(run.info.run_id)


def test_label_refuses_an_unknown_backend(tiny_market, tiny_mined, tmp_path, parent) -> None:
    """The preset's ``label:`` section reaches the library: a bad backend fails the step."""
    with pytest.raises(ConfigError, match="unknown backend 'nope'"):
        label_rewrite_pairs.python_func(
            config=preset(label={"backend": "nope"}),
            market=artifact(Dataset, tiny_market),
            mined=artifact(Dataset, tiny_mined),
            parent_run_id=parent,
            labels=artifact(Dataset, tmp_path / "labels"),
        )
    assert not (tmp_path / "labels" / "labeled_pairs.parquet").exists()


def test_build_datasets_writes_both_training_sets_and_their_contracts(
    tiny_market, tiny_mined, tiny_labels, tmp_path, parent
) -> None:
    """``sft/`` and ``grpo/`` (train and eval) for the training steps, one contract result per
    set for the registry's lineage, the report copied to the Markdown output, and a
    ``build_datasets`` run under the pipeline run."""
    datasets = artifact(Dataset, tmp_path / "datasets")
    report = artifact(Markdown, tmp_path / "report.md")
    build_training_datasets.python_func(
        config=preset(),
        market=artifact(Dataset, tiny_market),
        mined=artifact(Dataset, tiny_mined),
        labels=artifact(Dataset, tiny_labels.parent),
        parent_run_id=parent,
        datasets=datasets,
        contract_results=artifact(Artifact, tmp_path / "contracts"),
        report=report,
    )
    out = tmp_path / "datasets"
    sft, grpo = load_from_disk(str(out / "sft")), load_from_disk(str(out / "grpo"))
    assert set(sft) == set(grpo) == {"train", "eval"}
    # the preset (tiny extends local) asks for task C too
    assert set(sft["train"]["task"]) == {"rewrite", "tag", "normalize"} and len(grpo["train"]) > 0
    results = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "contracts").glob("*.json")}
    assert set(results) == {"sft_examples", "grpo_prompts"}
    assert all(r["success"] for r in results.values())
    assert (tmp_path / "report.md").read_text() == (out / "dataset_report.md").read_text()
    run = child_runs(parent)["build_datasets"]
    assert run.data.metrics["grpo_prompts/train"] == len(grpo["train"])
    assert {"dataset_report.md", "dataset_report.json"} <= artifact_paths(run.info.run_id)


def test_build_datasets_fails_when_nothing_is_left_for_grpo(
    tiny_market, tiny_mined, tiny_labels, tmp_path, parent
) -> None:
    """The preset's ``build_datasets:`` filters reach the library: a filter that leaves GRPO no
    prompt fails the step and writes no training set."""
    with pytest.raises(DataError, match="GRPO has nothing to reward"):
        build_training_datasets.python_func(
            config=preset(build_datasets={"min_grpo_relevant": 100_000}),
            market=artifact(Dataset, tiny_market),
            mined=artifact(Dataset, tiny_mined),
            labels=artifact(Dataset, tiny_labels.parent),
            parent_run_id=parent,
            datasets=artifact(Dataset, tmp_path / "datasets"),
            contract_results=artifact(Artifact, tmp_path / "contracts"),
            report=artifact(Markdown, tmp_path / "report.md"),
        )
    assert not (tmp_path / "datasets" / "sft").exists()
