"""pretrain_small_model: the local preset's tiny Qwen2 and tokenizer, pretrained on shop text."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Metrics, Model, Output

from qrewrite_components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def pretrain_small_model(
    config: str,
    market: Input[Dataset],
    mined: Input[Dataset],
    datasets: Input[Dataset],
    parent_run_id: str,
    model: Output[Model],
    metrics: Output[Metrics],
):
    """Train a tokenizer on the catalog and queries, build a small Qwen2 from the preset's
    ``pretrain:`` section and pretrain it (no hub download anywhere).
    Library: ``qrewrite.training.pretrain``."""
    import os

    from qrewrite.config import config_from_preset_text
    from qrewrite.tracking import PARENT_RUN_ENV, flatten_numbers, log_model_files
    from qrewrite.training.pretrain import PretrainConfig, pretrain

    os.environ[PARENT_RUN_ENV] = parent_run_id
    cfg = config_from_preset_text(PretrainConfig, config, "pretrain")
    result = pretrain(
        cfg,
        data_dir=market.path,
        mined_dir=mined.path,
        out_dir=model.path,
        datasets_dir=datasets.path,
        progress=False,
    )
    keys = ("parameters", "steps", "train_seconds", "loss_first_20pct", "loss_last_20pct")
    for key, value in flatten_numbers({k: getattr(result, k) for k in keys}).items():
        metrics.log_metric(key, value)
    if result.mlflow_run_id:
        log_model_files(result.mlflow_run_id, model.path, cfg.tracking_uri)
    print("\n".join(result.summary_lines(model.path)))
