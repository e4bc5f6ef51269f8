"""sft_multitask: supervised fine-tuning on rewrite generation and relevance tagging."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Metrics, Model, Output

from qrewrite_components.images import TRAINING_IMAGE


@dsl.component(base_image=TRAINING_IMAGE, install_kfp_package=False)
def sft_multitask(
    config: str,
    datasets: Input[Dataset],
    base_model_path: str,
    tasks: str,
    parent_run_id: str,
    model: Output[Model],
    metrics: Output[Metrics],
    report: Output[Markdown],
    pretrained: Input[Model] = None,
):
    """Fine-tune the base model (``pretrained`` when the pipeline pretrained one, else
    ``base_model_path`` on a mounted volume, else the preset's) on ``tasks``
    (``rewrite,tag,normalize``; ``rewrite,normalize`` for the single-task ablation). A preset
    asking for more than one process (``sft.nodes`` x ``sft.processes_per_node``) trains in a
    Kubeflow Trainer TrainJob.
    Library: ``qrewrite.training.sft``, ``qrewrite.cluster.launch``."""
    import os
    import shutil
    from pathlib import Path

    from qrewrite.config import config_from_preset_text
    from qrewrite.tracking import PARENT_RUN_ENV, flatten_numbers, log_model_files
    from qrewrite.training.sft import SFTResult, SFTStepConfig, sft

    os.environ[PARENT_RUN_ENV] = parent_run_id
    cfg = config_from_preset_text(SFTStepConfig, config, "sft", [f"tasks={tasks}"])
    if pretrained is not None:
        cfg.base_model = pretrained.path
    elif base_model_path:
        cfg.base_model = base_model_path
    if cfg.process_count() > 1:
        # the same step under torchrun on the cluster's Trainer; its report is the result
        from qrewrite.cluster.launch import train_on_cluster

        run = train_on_cluster(
            cfg,
            step="sft",
            preset=config,
            overrides=[f"tasks={tasks}"],
            inputs={"--datasets": datasets.path, "--base-model": cfg.base_model},
            out_dir=model.path,
            parent_run_id=parent_run_id,
        )
        result = SFTResult(**run.report)
    else:
        result = sft(cfg, datasets_dir=datasets.path, out_dir=model.path, progress=False)
    shutil.copyfile(Path(model.path) / "sft_report.md", report.path)
    keys = ("steps", "train_seconds", "loss_first_20pct", "loss_last_20pct", "eval_loss")
    numbers = {**{k: getattr(result, k) for k in keys}, **result.tagging}
    for key, value in flatten_numbers(numbers).items():
        metrics.log_metric(key, value)
    log_model_files(result.mlflow_run_id, model.path, cfg.tracking_uri)
    print("\n".join(result.summary_lines(model.path)))
