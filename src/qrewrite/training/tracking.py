"""MLflow for the training steps: one run per step, or the pipeline's run when ``MLFLOW_RUN_ID``
is set, and a Trainer callback that logs every logged value of the trainer to it.

``report_to="mlflow"`` is not used: transformers' callback starts its own run whenever
``MLFLOW_RUN_ID`` is set, which collides with the run this module has already resumed.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_TRACKING_URI = "sqlite:///mlruns.db"


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


@contextmanager
def mlflow_run(
    tracking_uri: str, experiment: str, run_name: str, config: Any = None
) -> Iterator[Any]:
    """Start (or resume, with ``$MLFLOW_RUN_ID``) an MLflow run and log ``config`` as params."""
    import mlflow

    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = resolve_tracking_uri(tracking_uri)
    use_tracking_uri(uri)
    run_id = os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        run = mlflow.start_run(run_id=run_id)
    else:
        if uri.startswith("sqlite:") and mlflow.get_experiment_by_name(experiment) is None:
            # next to the database, not ./mlruns of whatever directory the step runs in
            store = Path(uri.removeprefix("sqlite:///")).parent / "artifacts"
            mlflow.create_experiment(experiment, artifact_location=store.resolve().as_uri())
        mlflow.set_experiment(experiment)
        run = mlflow.start_run(run_name=run_name)
    try:
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
