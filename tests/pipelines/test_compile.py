"""The compiled pipeline package: current, parseable, and carrying the platform settings the
cluster needs (GPUs on training, MLflow secrets by reference) with nothing secret inside."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2

from qrewrite import __version__
from qrewrite_pipelines.cluster import compile_pipeline
from qrewrite_pipelines.platform import MLFLOW_CONFIG_MAP, MLFLOW_SECRET, BuildOptions
from qrewrite_pipelines.query_rewrite import COMPILED

TRAINING = ("exec-sft-multitask", "exec-grpo-align")
# every step that opens an MLflow run
MLFLOW_STEPS = (
    "exec-start-mlflow-run",
    "exec-end-mlflow-run",
    "exec-stage-marketplace",
    "exec-mine-search-logs",
    "exec-label-rewrite-pairs",
    "exec-build-training-datasets",
    "exec-validate-contracts",
    "exec-sft-multitask",
    "exec-grpo-align",
    "exec-evaluate-rewriter",
    "exec-register-challenger",
    "exec-promote-champion",
)


@pytest.fixture(scope="module")
def package() -> tuple[dict, dict]:
    spec, platform = yaml.safe_load_all(COMPILED.read_text())
    return spec, platform


def _executors(platform: dict) -> dict:
    return platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_the_checked_in_package_is_current(tmp_path: Path) -> None:
    fresh = compile_pipeline(tmp_path / "fresh.yaml")
    assert fresh.read_text() == COMPILED.read_text(), (
        "pipelines/compiled/query_rewrite_pipeline.yaml is out of date: run `qrewrite compile` "
        "and commit it"
    )


def test_the_package_parses_into_pipeline_spec_protobufs(package) -> None:
    spec, platform = package
    pipeline = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    json_format.ParseDict(platform, pipeline_spec_pb2.PlatformSpec())
    assert pipeline.pipeline_info.name == "query-rewrite"
    params = set(pipeline.root.input_definitions.parameters)
    assert params == {
        "config",
        "data_source",
        "window_end",
        "window_days",
        "base_model",
        "gpu_count",
        "promotion_margin",
    }
    assert pipeline.root.input_definitions.parameters["config"].default_value.string_value == (
        "cluster"
    )
    # the three sub-pipelines are graphs of their own
    dags = {n for n, c in pipeline.components.items() if c.WhichOneof("implementation") == "dag"}
    assert {"comp-data", "comp-train", "comp-evaluate-and-promote"} <= dags


def test_training_steps_ask_for_gpus_on_gpu_nodes(package) -> None:
    spec, platform = package
    executors = _executors(platform)
    for name in TRAINING:
        resources = spec["deploymentSpec"]["executors"][name]["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert "gpu_count" in resources["accelerator"]["resourceCount"]  # the run parameter
        k8s = executors[name]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in k8s[
            "tolerations"
        ]
        assert k8s["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        shm = [m for m in k8s["emptyDirMounts"] if m["mountPath"] == "/dev/shm"]
        assert shm and shm[0]["medium"] == "Memory"
        assert k8s["pvcMount"][0]["mountPath"] == "/workspace"
    # labeling keeps its embedding cache on the workspace volume (the cluster preset's)
    assert executors["exec-label-rewrite-pairs"]["pvcMount"][0]["mountPath"] == "/workspace"
    # data steps stay off the GPUs
    assert "accelerator" not in spec["deploymentSpec"]["executors"]["exec-mine-search-logs"][
        "container"
    ].get("resources", {})


def test_mlflow_steps_get_credentials_from_the_secret(package) -> None:
    _, platform = package
    executors = _executors(platform)
    for name in MLFLOW_STEPS:
        k8s = executors[name]
        assert [s["secretName"] for s in k8s["secretAsEnv"]] == [MLFLOW_SECRET], name
        assert [c["configMapName"] for c in k8s["configMapAsEnv"]] == [MLFLOW_CONFIG_MAP], name
        envs = {e["envVar"] for s in k8s["secretAsEnv"] for e in s["keyToEnv"]}
        assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= envs


def test_every_step_runs_non_root_with_limits(package) -> None:
    spec, platform = package
    for name, executor in spec["deploymentSpec"]["executors"].items():
        resources = executor["container"]["resources"]
        assert resources.get("resourceCpuLimit") and resources.get("resourceMemoryLimit"), name
        assert _executors(platform)[name]["securityContext"]["runAsNonRoot"] is True, name


def test_nothing_secret_is_written_into_the_package() -> None:
    text = COMPILED.read_text()
    # values of credentials never appear, only the names of the Secret and its keys
    assert not re.search(r"(?i)(password|secret_access_key|token)\s*[:=]\s*\S{6,}", text)
    assert not re.search(r"AKIA[0-9A-Z]{16}", text)  # an AWS access key id
    assert "minio123" not in text and "BEGIN PRIVATE KEY" not in text
    for executor in yaml.safe_load_all(text).__next__()["deploymentSpec"]["executors"].values():
        for env in executor["container"].get("env", []):
            assert not re.search(r"(?i)secret|password|token|key", env["name"]), env


def test_data_steps_are_never_cached_and_flaky_steps_retry(package) -> None:
    spec, _ = package
    data = spec["components"]["comp-data"]["dag"]["tasks"]
    for task in ("stage-marketplace", "mine-search-logs"):
        assert data[task]["cachingOptions"] == {}, task  # enableCache unset: caching off
    assert data["stage-marketplace"]["retryPolicy"]["maxRetryCount"] == 2
    root = spec["root"]["dag"]["tasks"]
    assert root["end-mlflow-run"]["triggerPolicy"]["strategy"] == "ALL_UPSTREAM_TASKS_COMPLETED"


def test_promotion_runs_only_when_the_gate_passes(package) -> None:
    spec, _ = package
    tasks = spec["components"]["comp-evaluate-and-promote"]["dag"]["tasks"]
    conditions = [t for name, t in tasks.items() if name.startswith("condition")]
    assert len(conditions) == 1
    condition = conditions[0]["triggerPolicy"]["condition"]
    assert "register-challenger-Output" in condition and "!= ''" in condition
    branch = spec["components"][conditions[0]["componentRef"]["name"]]["dag"]["tasks"]
    assert list(branch) == ["promote-champion"]


def test_images_are_tagged_with_the_version_and_overridable(tmp_path: Path, package) -> None:
    spec, _ = package
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {
        f"ghcr.io/qrewrite/qrewrite-runtime:{__version__}",
        f"ghcr.io/qrewrite/qrewrite-training:{__version__}",
    }
    out = tmp_path / "custom.yaml"
    # a fresh process: the override rewrites the images of the components it defines
    subprocess.run(
        [
            sys.executable,
            "-m",
            "qrewrite.cli",
            "compile",
            "--out",
            str(out),
            "--image-registry",
            "registry.example.com/search",
            "--image-tag",
            "2.0.0rc1",
        ],
        check=True,
        capture_output=True,
    )
    custom = next(yaml.safe_load_all(out.read_text()))["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in custom.values()} == {
        "registry.example.com/search/qrewrite-runtime:2.0.0rc1",
        "registry.example.com/search/qrewrite-training:2.0.0rc1",
    }


def test_the_ablation_variant_trains_the_single_task_model(tmp_path: Path) -> None:
    spec = next(
        yaml.safe_load_all(compile_pipeline(tmp_path / "a.yaml", ablation=True).read_text())
    )
    train = spec["components"]["comp-train"]["dag"]["tasks"]
    tasks = {t["taskInfo"]["name"] for t in train.values()}
    assert {"sft-multitask", "sft-single-task", "grpo-align"} <= tasks


def test_local_builds_leave_out_retries_and_the_schedule_placeholder(tmp_path: Path) -> None:
    from kfp import compiler

    from qrewrite_pipelines.platform import BuildOptions
    from qrewrite_pipelines.query_rewrite import build_pipeline

    out = tmp_path / "local.yaml"
    pipeline = build_pipeline(
        pretrain=True,
        default_config="local",
        scheduled=False,
        options=BuildOptions(retries=False),
    )
    compiler.Compiler().compile(pipeline, str(out))
    text = out.read_text()
    assert "retryPolicy" not in text  # kfp.local would retry a failed step after backoff
    assert "pipeline_job_schedule_time_utc" not in text  # kfp.local cannot resolve it
    assert "pretrain-small-model" in text
    # building the local variant did not switch retries off for later builds
    cluster = next(yaml.safe_load_all(compile_pipeline(tmp_path / "c.yaml").read_text()))
    assert "retryPolicy" in cluster["components"]["comp-data"]["dag"]["tasks"]["stage-marketplace"]


def test_the_kind_profile_runs_everything_on_cpu_in_the_runtime_image(tmp_path: Path) -> None:
    kind = compile_pipeline(
        tmp_path / "kind.yaml", preset="tiny", options=BuildOptions(profile="kind")
    )
    spec, platform = yaml.safe_load_all(kind.read_text())
    executors = spec["deploymentSpec"]["executors"]
    assert {e["container"]["image"] for e in executors.values()} == {
        f"ghcr.io/qrewrite/qrewrite-runtime:{__version__}"
    }
    for name in TRAINING:
        assert "accelerator" not in executors[name]["container"]["resources"]
        k8s = _executors(platform)[name]
        assert "tolerations" not in k8s and "nodeSelector" not in k8s
        assert executors[name]["container"]["resources"]["resourceMemoryLimit"] == "6G"
    for name, executor in executors.items():  # still non-root with limits
        assert executor["container"]["resources"].get("resourceCpuLimit"), name
        assert _executors(platform)[name]["securityContext"]["runAsNonRoot"] is True, name
    assert spec["root"]["inputDefinitions"]["parameters"]["config"]["defaultValue"] == "tiny"
    # no base model on a kind cluster's volume: the run pretrains the small model
    assert "pretrain-small-model" in spec["components"]["comp-train"]["dag"]["tasks"]
    # the profile and the images are put back: the default build is still the checked-in one
    assert compile_pipeline(tmp_path / "again.yaml").read_text() == COMPILED.read_text()


def test_an_unknown_profile_is_refused(tmp_path: Path) -> None:
    from qrewrite.errors import ConfigError

    with pytest.raises(ConfigError, match="expected one of gpu, kind"):
        compile_pipeline(tmp_path / "x.yaml", options=BuildOptions(profile="tpu"))
