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
    from qrewrite.training.pretrain import PretrainConfig, pretrain
    from qrewrite.training.tracking import PARENT_RUN_ENV, flatten_numbers, log_model_files

    os.environ[PARENT_RUN_ENV] = parent_run_id
    cfg = config_from_preset_text(PretrainConfig, config, "pretrain")
    result = pretrain(cfg, market.path, mined.path, model.path, datasets.path, False)
    keys = ("parameters", "steps", "train_seconds", "loss_first_20pct", "loss_last_20pct")
    for key, value in flatten_numbers({k: result[k] for k in keys}).items():
        metrics.log_metric(key, value)
    if result.get("mlflow_run_id"):
        log_model_files(result["mlflow_run_id"], model.path, cfg.tracking_uri)
    print(f"pretrain_small_model: {result['parameters']:,} parameters, {result['steps']} steps")
