"""The pipeline on a Kubeflow cluster: compile the package, submit a run, schedule retrains.

The compiled package (``pipelines/compiled/query_rewrite_pipeline.yaml``) is checked in for
upload in the Kubeflow UI; a test fails when it no longer matches the code. ``submit`` and
``schedule`` talk to the KFP API with ``kfp.Client``.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qrewrite.errors import ConfigError, QrewriteError
from qrewrite_pipelines.platform import DEFAULT_BUILD, RUNNER_SERVICE_ACCOUNT, BuildOptions
from qrewrite_pipelines.query_rewrite import COMPILED


def compile_pipeline(
    out: str | Path = COMPILED,
    *,
    ablation: bool = False,
    preset: str = "cluster",
    options: BuildOptions = DEFAULT_BUILD,
) -> Path:
    """Write the cluster pipeline package; ``config`` defaults to the shipped ``preset``.

    ``options`` (``platform.BuildOptions``) says the cluster profile, which sizes the steps and
    says whether they get GPUs, and the images."""
    from kfp import compiler

    from qrewrite.config import named_preset
    from qrewrite_pipelines.query_rewrite import build_pipeline

    named_preset(preset)  # fail here, not in the cluster, on a preset the images do not ship
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    pipeline = build_pipeline(
        pretrain=options.cluster.pretrain,
        ablation=ablation,
        default_config=preset,
        options=options,
    )
    compiler.Compiler().compile(pipeline, str(path))
    return path


@dataclass
class ClusterTarget:
    """Where and as what a run goes on a KFP cluster."""

    host: str
    experiment: str = "query-rewrite"
    namespace: str | None = None  # multi-user Kubeflow: the profile's namespace
    package: str = str(COMPILED)
    arguments: dict[str, Any] = field(default_factory=dict)
    existing_token: str | None = None  # a bearer token, e.g. from `kubectl create token`
    # the steps' Kubernetes identity: k8s/base/pipeline/rbac.yaml grants it only what they need
    service_account: str | None = RUNNER_SERVICE_ACCOUNT


def _client(target: ClusterTarget, action: str) -> Any:
    import warnings

    from kfp import Client

    if not Path(target.package).is_file():
        raise ConfigError(f"{target.package}: no pipeline package; run `qrewrite compile` first")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP >= 2.0.0-beta.2"
        try:  # the client checks the API's health on creation
            return Client(
                host=target.host,
                namespace=target.namespace or "kubeflow",
                existing_token=target.existing_token,
            )
        except Exception as e:
            raise _api_error(action, target, e) from e


def _api_error(action: str, target: ClusterTarget, e: Exception) -> QrewriteError:
    status = getattr(e, "status", None)  # kfp_server_api.ApiException: HTTP status and reason
    if status is not None:
        first = f"HTTP {status} {getattr(e, 'reason', '')}".strip()
    else:
        first = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
    return QrewriteError(
        f"{action} at {target.host} failed: {first}; check --host (the KFP API, e.g. "
        "http://localhost:8080 after `kubectl port-forward -n kubeflow svc/ml-pipeline-ui "
        "8080:80`) and your token"
    )


def submit_run(target: ClusterTarget, run_name: str | None = None) -> str:
    """Start one run of the package; returns the KFP run id."""
    client = _client(target, "submit")
    try:
        result = client.create_run_from_pipeline_package(
            target.package,
            arguments=target.arguments,
            run_name=run_name,
            experiment_name=target.experiment,
            namespace=target.namespace,
            service_account=target.service_account,
        )
    except Exception as e:  # the KFP client raises urllib3, ApiException and ValueError alike
        raise _api_error("submit", target, e) from e
    return str(result.run_id)


def wait_for_run(target: ClusterTarget, run_id: str, timeout_s: int) -> str:
    """Block until the run ends; returns its final state; raises if it did not succeed."""
    client = _client(target, "wait")
    try:
        run = client.wait_for_run_completion(run_id, timeout=timeout_s)
    except TimeoutError as e:
        raise QrewriteError(
            f"run {run_id} did not finish within {timeout_s} s; it keeps running: follow it in "
            "the KFP UI"
        ) from e
    except Exception as e:
        raise _api_error("wait", target, e) from e
    state = str(getattr(run, "state", "UNKNOWN"))
    if state != "SUCCEEDED":
        raise QrewriteError(
            f"run {run_id} ended {state}; open it in the KFP UI for the failed step's logs"
        )
    return state


def kfp_cron(expression: str) -> str:
    """KFP's cron has a seconds field first; accept the usual 5-field form too."""
    fields = expression.split()
    if len(fields) == 5:
        return "0 " + " ".join(fields)
    if len(fields) == 6:
        return " ".join(fields)
    raise ConfigError(
        f"--cron {expression!r}: expected 5 fields (minute hour day month weekday), e.g. "
        "'0 3 * * *' for 03:00 every day, or KFP's 6 (with seconds first)"
    )


def schedule_runs(target: ClusterTarget, cron: str, name: str = "query-rewrite-retrain") -> str:
    """Create a recurring run: one at a time, no catch-up of missed runs. Each run's
    scheduled time sets its mining window (``window_days`` up to that date); returns its id."""
    expression = kfp_cron(cron)
    client = _client(target, "schedule")
    try:
        experiment = client.create_experiment(target.experiment, namespace=target.namespace)
        recurring = client.create_recurring_run(
            experiment_id=experiment.experiment_id,
            job_name=name,
            description="Retrain the query rewriter on the latest search logs; "
            "promote when it beats the champion.",
            cron_expression=expression,
            max_concurrency=1,
            no_catchup=True,
            params=target.arguments,
            pipeline_package_path=target.package,
            service_account=target.service_account,
        )
    except Exception as e:
        raise _api_error("schedule", target, e) from e
    return str(recurring.recurring_run_id)
