"""grpo_align: GRPO on the fused relevance + conversion reward."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from qrewrite_components.images import TRAINING_IMAGE


@dsl.component(base_image=TRAINING_IMAGE, install_kfp_package=False)
def grpo_align(
    config: str,
    datasets: Input[Dataset],
    market: Input[Dataset],
    sft_model: Input[Model],
    labels: Input[Dataset],
    parent_run_id: str,
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[Markdown],
):
    """Align the SFT model with TRL's GRPOTrainer on the preset's weighted reward functions. A
    preset asking for more than one process (``grpo.nodes`` x ``grpo.processes_per_node``)
    trains in a Kubeflow Trainer TrainJob. Library: ``qrewrite.training.grpo``,
    ``qrewrite.cluster.launch``."""
    import os
    import shutil
    from pathlib import Path

    from qrewrite.config import config_from_preset_text
    from qrewrite.tracking import PARENT_RUN_ENV, flatten_numbers, log_model_files
    from qrewrite.training.grpo import GRPOResult, GRPOStepConfig, grpo

    os.environ[PARENT_RUN_ENV] = parent_run_id
    cfg = config_from_preset_text(GRPOStepConfig, config, "grpo")
    cfg.model = sft_model.path
    labeled = Path(labels.path) / "labeled_pairs.parquet"
    if cfg.process_count() > 1:
        # the same step under torchrun on the cluster's Trainer; its report is the result
        from qrewrite.cluster.launch import train_on_cluster

        run = train_on_cluster(
            cfg,
            step="grpo",
            preset=config,
            inputs={
                "--datasets": datasets.path,
                "--data": market.path,
                "--model": cfg.model,
                "--labels": str(labeled),
            },
            out_dir=model.path,
            parent_run_id=parent_run_id,
        )
        result = GRPOResult(**run.report)
    else:
        result = grpo(
            cfg,
            datasets_dir=datasets.path,
            data_dir=market.path,
            out_dir=model.path,
            labels=labeled,
            progress=False,
        )
    shutil.copyfile(Path(model.path) / "grpo_report.md", report.path)
    keys = ("steps", "train_seconds", "reward_first_20pct", "reward_last_20pct", "rewards")
    for key, value in flatten_numbers({k: getattr(result, k) for k in keys}).items():
        metrics.log_metric(key, value)
    log_model_files(result.mlflow_run_id, model.path, cfg.tracking_uri)
    print("\n".join(result.summary_lines(model.path)))
