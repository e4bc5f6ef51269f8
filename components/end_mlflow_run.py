"""end_mlflow_run: close the pipeline's MLflow run with the run's final status (exit handler)."""

from kfp import dsl

from qrewrite_components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def end_mlflow_run(config: str, kfp_run_id: str, status: dsl.PipelineTaskFinalStatus):
    """Mark the pipeline's MLflow run FINISHED or FAILED, as KFP ended the run.
    Library: ``qrewrite.tracking.end_pipeline_run``."""
    from qrewrite.config import config_from_preset_text
    from qrewrite.registry.config import RegistryConfig
    from qrewrite.tracking import end_pipeline_run

    registry = config_from_preset_text(RegistryConfig, config, "registry")
    state = end_pipeline_run(registry.tracking_uri, registry.experiment, kfp_run_id, status.state)
    print(f"end_mlflow_run: the MLflow run of KFP run {kfp_run_id}: {state} ({status.state})")
