"""The whole pipeline: run it locally, compile it for Kubeflow, submit and schedule runs.

Each command's ``add_*`` (its parser) sits beside its ``run_*`` (what it does)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from qrewrite.cli.common import Subparsers
from qrewrite.errors import ConfigError


def add_parsers(sub: Subparsers) -> None:
    """This group's commands, in the order ``qrewrite --help`` lists them."""
    add_run(sub)
    add_compile(sub)
    add_submit(sub)
    add_schedule(sub)


def _target(args: argparse.Namespace) -> Any:
    import yaml

    from qrewrite_pipelines.cluster import ClusterTarget
    from qrewrite_pipelines.query_rewrite import COMPILED

    arguments: dict[str, Any] = {}
    for item in args.param:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE")
        if raw.startswith("@"):  # a whole file, e.g. --param config=@my-preset.yaml
            try:
                raw = Path(raw[1:]).read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"--param {key}: cannot read {raw[1:]} ({e.strerror})") from e
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:  # not YAML at all: a plain string
            value = raw
        # numbers and booleans typed; a YAML document (a preset's text) stays text
        arguments[key.strip()] = raw if isinstance(value, dict | list) else value
    return ClusterTarget(
        host=args.host,
        experiment=args.experiment,
        namespace=args.namespace,
        package=args.package or str(COMPILED),
        arguments=arguments,
        existing_token=args.token,
        service_account=args.service_account or None,
    )


def add_run(sub: Subparsers) -> None:
    p = sub.add_parser(
        "run",
        help="run the whole pipeline locally through kfp.local (the demo)",
        description="Run the Kubeflow pipeline on this machine with kfp.local's subprocess "
        "runner: stage the data, mine, label, build datasets, pretrain (local preset), SFT, "
        "GRPO, evaluate, register and promote. Prints the ablation table and where the report, "
        "the MLflow store and the registered model are.",
    )
    p.add_argument("--local", action="store_true", help="run with kfp.local (required here)")
    p.add_argument(
        "--config",
        default="local",
        metavar="PRESET",
        help="preset YAML file, or the name of a shipped one (local, cluster); default local",
    )
    p.add_argument("--out", default="out/demo", help="run directory (artifacts, MLflow store)")
    p.add_argument(
        "--scale", choices=["tiny", "demo", "large", "huge"], help="synthetic marketplace size"
    )
    p.add_argument(
        "--data-source",
        default="synthetic",
        help="'synthetic' or a directory with catalog.parquet and search_log.parquet",
    )
    p.add_argument("--window-end", help="mine the log up to this date (ISO, exclusive)")
    p.add_argument(
        "--window-days", type=int, default=0, help="days of log before --window-end (0: all)"
    )
    p.add_argument("--base-model", help="fine-tune this model directory instead of pretraining")
    p.add_argument(
        "--promotion-margin", type=float, help="gate margin (default: the preset's registry.margin)"
    )
    p.add_argument(
        "--ablation",
        action="store_true",
        help="also train and evaluate the single-task SFT model (about 2.5 more minutes)",
    )
    p.add_argument(
        "--runner",
        default="subprocess",
        choices=["subprocess", "docker"],
        help="subprocess: every step in this Python environment; docker: every step in the "
        "runtime image (`make images` first), as on a cluster",
    )
    p.set_defaults(func=run_run)


def run_run(args: argparse.Namespace) -> int:
    if not args.local:
        raise ConfigError(
            "run: only --local runs here; on a cluster use `qrewrite submit --host URL` "
            "(or upload pipelines/compiled/query_rewrite_pipeline.yaml in the Kubeflow UI)"
        )
    from qrewrite.evaluation.report import ablation_table
    from qrewrite_pipelines.local import LocalRun, run_local

    run = LocalRun(
        config=args.config,
        out=args.out,
        scale=args.scale or "",
        data_source=args.data_source,
        window_end=args.window_end or "",
        window_days=args.window_days,
        base_model=args.base_model or "",
        promotion_margin=args.promotion_margin,
        ablation=args.ablation,
        runner=args.runner,
    )
    r = run_local(run)
    minutes, seconds = divmod(round(r.seconds), 60)
    print(f"run: pipeline finished in {minutes} min {seconds} s (kfp.local, {args.runner})")
    evaluation = r.outputs.get("evaluation")
    if evaluation is not None and (evaluation / "metrics.json").exists():
        print(ablation_table(json.loads((evaluation / "metrics.json").read_text())))
    reg = r.registry
    if reg is not None and reg.champion:
        model = f"models:/{reg.name}@champion = version {reg.champion}"
    elif reg is not None:
        model = f"no champion: version {reg.challenger} is the challenger; gate: "
        model += reg.challenger_gate or "not decided"
    else:
        model = "nothing registered"
    print(f"run: registry   {model}")
    if reg is not None and reg.champion and "mined" in r.outputs:
        # the champion carries its serving policy and teacher: nothing else to pass
        print(
            "run: serve      qrewrite rewrite --model models:/query-rewriter@champion --queries "
            f"{r.outputs['mined'] / 'query_stats.parquet'} --out rewrites.parquet"
        )
    if "report" in r.outputs:
        print(f"run: report     {r.outputs['report']} (HTML; report.md beside the metrics)")
    if "evaluation" in r.outputs:
        print(f"run: metrics    {r.outputs['evaluation'] / 'metrics.json'}")
    print(f"run: artifacts  {r.run_dir} (also {Path(args.out) / 'latest'})")
    print(f"run: MLflow     {r.tracking_uri}  (mlflow ui --backend-store-uri {r.tracking_uri})")
    return 0


def add_compile(sub: Subparsers) -> None:
    p = sub.add_parser(
        "compile",
        help="write the pipeline package for the Kubeflow UI",
        description="Compile the cluster pipeline (cluster preset as the config default) to "
        "pipelines/compiled/query_rewrite_pipeline.yaml.",
    )
    p.add_argument("--out", default=None, help="output YAML (default: the checked-in package)")
    p.add_argument(
        "--preset",
        default="cluster",
        help="shipped preset (configs/NAME.yaml) the config parameter defaults to",
    )
    p.add_argument("--image-registry", help="registry of the component images")
    p.add_argument("--image-tag", help="tag of the component images (default: the version)")
    p.add_argument("--ablation", action="store_true", help="also train the single-task model")
    p.add_argument(
        "--profile",
        default="gpu",
        choices=["gpu", "kind"],
        help="gpu: training on GPU nodes (the checked-in package); kind: no GPUs, small steps, "
        "for a local kind cluster (k8s/kind/e2e.sh)",
    )
    p.set_defaults(func=run_compile)


def run_compile(args: argparse.Namespace) -> int:
    from qrewrite_pipelines.cluster import compile_pipeline
    from qrewrite_pipelines.platform import BuildOptions
    from qrewrite_pipelines.query_rewrite import COMPILED

    options = BuildOptions(
        profile=args.profile, image_registry=args.image_registry, image_tag=args.image_tag
    )
    path = compile_pipeline(
        args.out or COMPILED, ablation=args.ablation, preset=args.preset, options=options
    )
    print(f"compile: wrote {path}; upload it in the Kubeflow UI or run `qrewrite submit`")
    return 0


def _add_cluster_flags(p: argparse.ArgumentParser) -> None:
    """Where the Kubeflow Pipelines API is, and what the run gets: submit and schedule alike."""
    p.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
    p.add_argument("--experiment", default="query-rewrite", help="KFP experiment name")
    p.add_argument("--namespace", help="Kubeflow profile namespace (multi-user installs)")
    p.add_argument("--token", help="bearer token for the KFP API (e.g. kubectl create token)")
    p.add_argument(
        "--service-account",
        default="qrewrite-pipeline-runner",
        help="Kubernetes service account the steps run as (k8s/base/pipeline/rbac.yaml); "
        "'' for the installation's default",
    )
    p.add_argument(
        "--package",
        default=None,
        help="compiled pipeline (default pipelines/compiled/query_rewrite_pipeline.yaml)",
    )
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="pipeline parameter (repeatable): data_source, window_end, window_days, "
        "base_model, gpu_count, promotion_margin",
    )


def add_submit(sub: Subparsers) -> None:
    helptext = "start one pipeline run on a Kubeflow Pipelines cluster"
    p = sub.add_parser("submit", help=helptext, description=helptext + ".")
    _add_cluster_flags(p)
    p.add_argument("--run-name", help="name of the run in the KFP UI")
    p.add_argument(
        "--wait",
        type=int,
        default=0,
        metavar="SECONDS",
        help="wait for the run to end; exit non-zero unless it succeeded",
    )
    p.set_defaults(func=run_submit)


def run_submit(args: argparse.Namespace) -> int:
    from qrewrite_pipelines.cluster import submit_run, wait_for_run

    target = _target(args)
    run_id = submit_run(target, args.run_name)
    print(f"submit: started run {run_id} in experiment {args.experiment} at {args.host}")
    if args.wait:
        print(f"submit: waiting up to {args.wait} s for run {run_id}", flush=True)
        print(f"submit: run {run_id} {wait_for_run(target, run_id, args.wait)}")
    return 0


def add_schedule(sub: Subparsers) -> None:
    helptext = "create a recurring retrain on a Kubeflow Pipelines cluster"
    p = sub.add_parser("schedule", help=helptext, description=helptext + ".")
    _add_cluster_flags(p)
    p.add_argument(
        "--cron",
        required=True,
        help="when to retrain, e.g. '0 3 * * *' (03:00 daily); each run mines the "
        "window_days before its scheduled date",
    )
    p.add_argument("--name", default="query-rewrite-retrain", help="recurring run name")
    p.set_defaults(func=run_schedule)


def run_schedule(args: argparse.Namespace) -> int:
    from qrewrite_pipelines.cluster import kfp_cron, schedule_runs

    job = schedule_runs(_target(args), args.cron, args.name)
    print(
        f"schedule: recurring run {job} ({kfp_cron(args.cron)}, one at a time, no catch-up) in "
        f"experiment {args.experiment} at {args.host}"
    )
    return 0
