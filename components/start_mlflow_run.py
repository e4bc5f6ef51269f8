"""start_mlflow_run: the MLflow run one pipeline run nests its steps under."""

from kfp import dsl

from qrewrite_components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def start_mlflow_run(
    config: str, kfp_run_id: str, kfp_run_name: str, data_source: str, base_model: str
) -> str:
    """Open (or find, on a retry) the pipeline run's MLflow run, tagged with the KFP run id;
    returns its id. Library: ``qrewrite.tracking.start_pipeline_run``."""
    from qrewrite.config import config_from_preset_text
    from qrewrite.registry.config import RegistryConfig
    from qrewrite.tracking import start_pipeline_run

    registry = config_from_preset_text(RegistryConfig, config, "registry")
    run_id = start_pipeline_run(
        registry.tracking_uri,
        registry.experiment,
        kfp_run_id,
        kfp_run_name,
        {"data_source": data_source, "base_model": base_model or "pretrained here"},
    )
    print(f"start_mlflow_run: MLflow run {run_id} for KFP run {kfp_run_id}")
    return run_id
