"""MLflow for the training steps: one run per step, or the pipeline's run when ``MLFLOW_RUN_ID``
is set, and a Trainer callback that logs every logged value of the trainer to it.

``report_to="mlflow"`` is not used: transformers' callback starts its own run whenever
``MLFLOW_RUN_ID`` is set, which collides with the run this module has already resumed.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"
# Set by each pipeline step: the step's run nests under the pipeline run's MLflow run.
PARENT_RUN_ENV = "QREWRITE_PARENT_RUN_ID"
KFP_RUN_TAG = "kfp.run_id"


def resolve_tracking_uri(configured: str) -> str:
    """``$MLFLOW_TRACKING_URI`` wins (a remote server without code changes), else the config's.

    A relative SQLite path is made absolute so every step of one run writes the same file.
    """
    uri = os.environ.get("MLFLOW_TRACKING_URI") or configured or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):
        path = Path(uri.removeprefix("sqlite:///")).resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        uri = f"sqlite:///{path}"
    return uri


def check_tracking_store(uri: str, *, must_exist: bool, timeout: float = 5.0) -> None:
    """Fail fast, naming ``uri``: a tracking server that does not answer within ``timeout``
    seconds (MLflow's own client retries for minutes, then blames the request), or, with
    ``must_exist``, a SQLite store that is not there (opening it would create an empty one)."""
    from qrewrite.errors import ConfigError, EnvironmentProblem

    if uri.startswith("sqlite:///"):
        path = Path(uri.removeprefix("sqlite:///"))
        if must_exist and not path.exists():
            raise ConfigError(
                f"no MLflow registry at {uri} (no such file); run the pipeline first, or point "
                "$MLFLOW_TRACKING_URI or the preset's tracking_uri at the registry"
            )
    elif uri.startswith(("http://", "https://")):
        import requests

        try:
            requests.get(f"{uri.rstrip('/')}/health", timeout=timeout)
        except requests.RequestException as e:
            raise EnvironmentProblem(
                f"the MLflow tracking server at {uri} does not answer within {timeout:g} s "
                f"({type(e).__name__})"
            ) from e


def use_tracking_uri(uri: str) -> None:
    """Point this process's MLflow client at ``uri`` without touching ``$MLFLOW_TRACKING_URI``.

    MLflow 3's ``set_tracking_uri`` also exports the variable, which would make the first store
    a process used win over every later step's configured one (the variable wins by design).
    """
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    os.environ.pop("MLFLOW_REGISTRY_URI", None)


def _use_experiment(uri: str, experiment: str) -> str:
    import mlflow

    found = mlflow.get_experiment_by_name(experiment)
    if found is None and uri.startswith("sqlite:"):
        # next to the database, not ./mlruns of whatever directory the step runs in
        store = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
        experiment_id = mlflow.create_experiment(
            experiment, artifact_location=store.resolve().as_uri()
        )
    else:
        experiment_id = found.experiment_id if found else mlflow.create_experiment(experiment)
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextmanager
def mlflow_run(
    tracking_uri: str, experiment: str, run_name: str, config: Any = None
) -> Iterator[Any]:
    """Start (or resume, with ``$MLFLOW_RUN_ID``) an MLflow run and log ``config`` as params.

    In a distributed run only the main process logs: the others get a stand-in whose
    ``info.run_id`` is empty, and no MLflow run is active in them."""
    from qrewrite.environment import is_main_process

    if not is_main_process():
        yield SimpleNamespace(info=SimpleNamespace(run_id=""))
        return
    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = resolve_tracking_uri(tracking_uri)
    use_tracking_uri(uri)
    run_id = os.environ.get("MLFLOW_RUN_ID")
    parent = os.environ.get(PARENT_RUN_ENV)
    if run_id:
        run = mlflow.start_run(run_id=run_id)
    elif parent:
        # a pipeline step: a child of the pipeline run, in its experiment
        parent_run = mlflow.MlflowClient().get_run(parent)
        run = mlflow.start_run(
            run_name=run_name,
            experiment_id=parent_run.info.experiment_id,
            parent_run_id=parent,
            tags={k: v for k, v in parent_run.data.tags.items() if k.startswith("kfp.")},
        )
    else:
        _use_experiment(uri, experiment)
        run = mlflow.start_run(run_name=run_name)
    try:
        from qrewrite.environment import current_environment

        # what the figures were computed on: another CPU or package set, another model
        env = current_environment()
        mlflow.set_tags(env.tags())
        mlflow.log_dict(env.as_dict(), f"environment/{run_name}.json")
        if config is not None and is_dataclass(config):
            params = {
                f"{run_name}.{k}": str(v)[:250]
                for k, v in asdict(config).items()  # type: ignore[arg-type]
            }
            mlflow.log_params(params)
        yield run
    except BaseException:
        mlflow.end_run(status="FAILED")
        raise
    else:
        mlflow.end_run()


def mlflow_callback(prefix: str) -> Any:
    """A TrainerCallback sending every logged number to the active MLflow run as ``prefix/key``."""
    import mlflow
    from transformers import TrainerCallback

    class MlflowMetrics(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            metrics = {
                re.sub(r"[^0-9A-Za-z_\-./ :]", "_", f"{prefix}/{k}"): float(v)
                for k, v in (logs or {}).items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
            if metrics and mlflow.active_run() is not None:
                mlflow.log_metrics(metrics, step=state.global_step)

    return MlflowMetrics()


def _pipeline_run_filter(kfp_run_id: str) -> str:
    # steps copy the kfp.* tags too: the pipeline's own run is the one of kind "pipeline"
    return f"tags.`{KFP_RUN_TAG}` = '{kfp_run_id}' and tags.`qrewrite.kind` = 'pipeline'"


def start_pipeline_run(
    tracking_uri: str,
    experiment: str,
    kfp_run_id: str,
    kfp_run_name: str = "",
    params: dict[str, Any] | None = None,
) -> str:
    """The MLflow run one pipeline run nests its steps under; returns its id.

    Idempotent per KFP run (a retried step finds the run it made before). When KFP's MLflow
    integration already gave this step a run (``$MLFLOW_RUN_ID``), that run's parent is the
    pipeline's run. The run stays open until :func:`end_pipeline_run`.
    """
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    use_tracking_uri(uri)
    client = mlflow.MlflowClient()
    given = os.environ.get("MLFLOW_RUN_ID")
    if given:
        run = client.get_run(given)
        return run.data.tags.get("mlflow.parentRunId") or given
    experiment_id = _use_experiment(uri, experiment)
    found = client.search_runs([experiment_id], _pipeline_run_filter(kfp_run_id), max_results=1)
    if found:
        return found[0].info.run_id
    run = client.create_run(
        experiment_id,
        run_name=kfp_run_name or f"pipeline {kfp_run_id[:8]}",
        tags={KFP_RUN_TAG: kfp_run_id, "kfp.run_name": kfp_run_name, "qrewrite.kind": "pipeline"},
    )
    for key, value in (params or {}).items():
        client.log_param(run.info.run_id, key, str(value)[:6000])
    return run.info.run_id


def end_pipeline_run(
    tracking_uri: str, experiment: str, kfp_run_id: str, kfp_status: str = "SUCCEEDED"
) -> str:
    """Close the MLflow run of KFP run ``kfp_run_id`` with KFP's final status; returns MLflow's
    status, or ``"none"`` when the pipeline failed before it opened one."""
    import mlflow

    use_tracking_uri(resolve_tracking_uri(tracking_uri))
    client = mlflow.MlflowClient()
    found = mlflow.get_experiment_by_name(experiment)
    runs = (
        client.search_runs([found.experiment_id], _pipeline_run_filter(kfp_run_id), max_results=1)
        if found
        else []
    )
    if not runs:
        log.warning("no MLflow run is tagged %s=%s; nothing to close", KFP_RUN_TAG, kfp_run_id)
        return "none"
    status = "FINISHED" if kfp_status.upper() in ("SUCCEEDED", "SUCCESS") else "FAILED"
    run_id = runs[0].info.run_id
    client.set_tag(run_id, "kfp.status", kfp_status)
    client.set_terminated(run_id, status=status)
    return status


def flatten_numbers(values: dict[str, Any] | None, prefix: str = "") -> dict[str, float]:
    """The finite numbers of a nested report as ``a/b/c`` keys (metrics stores are flat, and
    KFP's JSON metadata cannot hold NaN)."""
    out: dict[str, float] = {}
    for key, value in (values or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten_numbers(value, f"{name}/"))
        elif (
            isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        ):
            out[name] = float(value)
    return out


def log_step(
    step: str,
    metrics: dict[str, Any] | None = None,
    files: list[str | Path] | tuple[str | Path, ...] = (),
    params: dict[str, Any] | None = None,
    tracking_uri: str = "",
    experiment: str = "qrewrite",
) -> str:
    """Record what a data step produced (row counts, reports) as its own MLflow run; returns the
    run id. Non-numeric metrics are skipped; missing files are skipped with a warning."""
    import mlflow

    with mlflow_run(tracking_uri, experiment, step) as run:
        numbers = {
            re.sub(r"[^0-9A-Za-z_\-./ :]", "_", k): v for k, v in flatten_numbers(metrics).items()
        }
        if numbers:
            mlflow.log_metrics(numbers)
        if params:
            mlflow.log_params({k: str(v)[:6000] for k, v in params.items()})
        for f in files:
            path = Path(f)
            if path.is_file():
                mlflow.log_artifact(str(path))
            elif path.is_dir():
                mlflow.log_artifacts(str(path), artifact_path=path.name)
            else:
                log.warning("%s: %s does not exist; not logged to MLflow", step, path)
        return run.info.run_id


def log_model_files(run_id: str, model_dir: str | Path, tracking_uri: str = "") -> None:
    """Attach a trained model's folder (weights, tokenizer, reports) to the run that trained it."""
    import mlflow

    use_tracking_uri(resolve_tracking_uri(tracking_uri))
    mlflow.MlflowClient().log_artifacts(run_id, str(model_dir), artifact_path="model")
