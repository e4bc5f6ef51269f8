"""build_training_datasets: the multi-task SFT set and the GRPO prompts, checked by contract."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from qrewrite_components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def build_training_datasets(
    config: str,
    market: Input[Dataset],
    mined: Input[Dataset],
    labels: Input[Dataset],
    parent_run_id: str,
    datasets: Output[Dataset],
    contract_results: Output[Artifact],
    report: Output[Markdown],
):
    """Filter graded rewrites by relevance and increment into the rewrite task, add the tagging
    task, split by query; writes ``sft/`` and ``grpo/``.
    Library: ``qrewrite.training.datasets``."""
    import os
    import shutil
    from pathlib import Path

    from qrewrite.config import config_from_preset_text
    from qrewrite.tracking import PARENT_RUN_ENV, log_step
    from qrewrite.training.datasets import DatasetConfig, build_datasets

    os.environ[PARENT_RUN_ENV] = parent_run_id
    cfg = config_from_preset_text(DatasetConfig, config, "build_datasets")
    result = build_datasets(
        cfg,
        data_dir=market.path,
        mined_dir=mined.path,
        labels_path=Path(labels.path) / "labeled_pairs.parquet",
        out_dir=datasets.path,
        report_dir=contract_results.path,
    )
    shutil.copyfile(Path(datasets.path) / "dataset_report.md", report.path)
    log_step(
        "build_datasets",
        result.to_dict(),
        [Path(datasets.path) / "dataset_report.md", Path(datasets.path) / "dataset_report.json"],
    )
    print("\n".join(result.summary_lines(datasets.path)))
