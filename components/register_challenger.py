"""register_challenger: the evaluated candidate in the MLflow registry as ``challenger``."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Model

from qrewrite_components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def register_challenger(
    config: str,
    model: Input[Model],
    sft_model: Input[Model],
    evaluation: Input[Artifact],
    market: Input[Dataset],
    labels: Input[Dataset],
    datasets: Input[Dataset],
    market_contracts: Input[Artifact],
    mined_contracts: Input[Artifact],
    labels_contracts: Input[Artifact],
    dataset_contracts: Input[Artifact],
    kfp_run_id: str,
    parent_run_id: str,
    margin: float,
) -> str:
    """Log the candidate evaluation put forward (the GRPO ``model``, or ``sft_model`` when GRPO
    did not improve on it) as an MLflow pyfunc, with the serving policy its evaluation measured
    and the teacher that policy vets with (built from ``market`` and ``labels``), its lineage (data
    snapshot, config hash, contract results, KFP run id) and metrics; register it once (by
    weights fingerprint) with alias ``challenger``; decide the promotion gate. Returns the
    version when it passed the gate, else an empty string: the next step promotes it under
    ``dsl.If`` (one output, because ``kfp.local`` cannot resolve a named output in a
    condition). The reason is on the version's ``gate`` tag either way.
    Library: ``qrewrite.registry.registry``."""
    import os
    import tempfile
    from pathlib import Path

    from qrewrite.config import config_from_preset_text
    from qrewrite.evaluation.evaluate import ALIGNED, MULTI_TASK_SFT
    from qrewrite.registry.config import RegistryConfig
    from qrewrite.registry.lineage import lineage
    from qrewrite.registry.registry import evaluated_candidate, register
    from qrewrite.tracking import PARENT_RUN_ENV

    os.environ[PARENT_RUN_ENV] = parent_run_id
    cfg = config_from_preset_text(RegistryConfig, config, "registry", [f"margin={margin}"])
    out = Path(evaluation.path)
    model_dir = evaluated_candidate(
        out / "metrics.json", {ALIGNED: model.path, MULTI_TASK_SFT: sft_model.path}
    )
    with tempfile.TemporaryDirectory() as tmp:
        preset = Path(tmp) / "config.yaml"
        preset.write_text(config)
        origin = lineage(
            Path(model_dir),
            data_dir=Path(market.path),
            datasets_dir=Path(datasets.path),
            config_file=preset,
            contract_dirs=[
                Path(a.path)
                for a in (market_contracts, mined_contracts, labels_contracts, dataset_contracts)
            ],
            pipeline_run_id=kfp_run_id,
        )
    r = register(
        cfg,
        model_dir,
        out / "metrics.json",
        lineage=origin,
        report_path=out / "report.md",
        auto_promote=False,
        data_dir=market.path,
        labels=Path(labels.path) / "labeled_pairs.parquet",
    )
    print("\n".join(r.summary_lines()))
    return r.version if r.decision.promote else ""
