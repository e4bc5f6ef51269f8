"""evaluate_rewriter: held-out metrics, the simulated A/B test and the ablation report."""

from kfp import dsl
from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output

from qrewrite_components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def evaluate_rewriter(
    config: str,
    market: Input[Dataset],
    datasets: Input[Dataset],
    labels: Input[Dataset],
    model: Input[Model],
    sft_model: Input[Model],
    parent_run_id: str,
    metrics: Output[Metrics],
    evaluation: Output[Artifact],
    report: Output[HTML],
    report_md: Output[Markdown],
    single_task_model: Input[Model] = None,
):
    """Evaluate the GRPO model against no-rewrite, the multi-task SFT model, the single-task
    SFT model when the ablation ran, and the registry's champion when there is one. The GRPO
    model is the candidate when it improves on the SFT model it came from, else the SFT model
    is (``evaluate.candidate_must_improve``); ``metrics.json`` names which.
    Library: ``qrewrite.evaluation.evaluate``."""
    import os
    import shutil
    from pathlib import Path

    from qrewrite.config import config_from_preset_text
    from qrewrite.evaluation.evaluate import (
        ALIGNED,
        MULTI_TASK_SFT,
        SINGLE_TASK_SFT,
        EvaluateConfig,
        evaluate,
    )
    from qrewrite.registry.config import CHAMPION, RegistryConfig
    from qrewrite.registry.resolve import resolve_champion
    from qrewrite.tracking import PARENT_RUN_ENV, flatten_numbers

    os.environ[PARENT_RUN_ENV] = parent_run_id
    cfg = config_from_preset_text(EvaluateConfig, config, "evaluate")
    registry = config_from_preset_text(RegistryConfig, config, "registry")
    variants = {MULTI_TASK_SFT: sft_model.path, ALIGNED: model.path}
    if single_task_model is not None:
        variants = {SINGLE_TASK_SFT: single_task_model.path, **variants}
    refs = dict(variants)
    champion = resolve_champion(registry.registered_model, tracking_uri=registry.tracking_uri)
    if champion is not None:
        variants[CHAMPION], refs[CHAMPION] = str(champion[0]), champion[1]
    result = evaluate(
        cfg,
        data_dir=market.path,
        datasets_dir=datasets.path,
        variants=variants,
        out_dir=evaluation.path,
        labels=Path(labels.path) / "labeled_pairs.parquet",
        candidate=ALIGNED,
        fallback=MULTI_TASK_SFT,
        progress=False,
        model_refs=refs,
    )
    out = Path(evaluation.path)
    shutil.copyfile(out / "report.html", report.path)
    shutil.copyfile(out / "report.md", report_md.path)
    for key, value in flatten_numbers(result.metrics).items():
        metrics.log_metric(key, value)
    print("\n".join(result.summary_lines(evaluation.path)))
