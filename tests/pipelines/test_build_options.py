"""Build options (``platform.BuildOptions``): what one build chooses reaches its tasks (sizes,
GPU settings, retries, images), and nothing of it is left behind for the next build: neither
module state nor the components' own images."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from kfp import compiler

import qrewrite_components
from qrewrite import __version__
from qrewrite.errors import ConfigError
from qrewrite_components.images import REGISTRY, image_for
from qrewrite_pipelines.cluster import compile_pipeline
from qrewrite_pipelines.platform import DEFAULT_BUILD, PROFILES, BuildOptions
from qrewrite_pipelines.query_rewrite import build_pipeline

TRAINING = ("exec-sft-multitask", "exec-grpo-align")
CUSTOM = BuildOptions(
    profile="kind", retries=False, image_registry="registry.example.com/search", image_tag="t1"
)


def _compile(pipeline, path: Path) -> str:
    compiler.Compiler().compile(pipeline, str(path))
    return path.read_text()


def _executors(text: str) -> dict:
    return next(yaml.safe_load_all(text))["deploymentSpec"]["executors"]


def _component_images() -> dict[str, str]:
    return {
        name: getattr(qrewrite_components, name).component_spec.implementation.container.image
        for name in qrewrite_components.__all__
    }


def test_image_for_swaps_registry_tag_and_name() -> None:
    defined = f"{REGISTRY}/qrewrite-training:{__version__}"
    assert image_for(defined) == defined
    assert image_for(defined, registry="r.example.com:5000/ml", tag="2.0") == (
        "r.example.com:5000/ml/qrewrite-training:2.0"
    )
    assert image_for(defined, rename={"qrewrite-training": "qrewrite-runtime"}) == (
        f"{REGISTRY}/qrewrite-runtime:{__version__}"
    )


def test_build_options_are_frozen_and_refuse_an_unknown_profile() -> None:
    with pytest.raises(ConfigError, match="expected one of gpu, kind"):
        BuildOptions(profile="tpu")
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_BUILD.retries = False  # type: ignore[misc]
    # images: the profile's renames unless the options name their own
    training = f"{REGISTRY}/qrewrite-training:{__version__}"
    assert BuildOptions(profile="kind").image(training).endswith(f"/qrewrite-runtime:{__version__}")
    assert BuildOptions(profile="kind", image_rename=()).image(training) == training


def test_the_options_reach_every_task(tmp_path: Path) -> None:
    text = _compile(build_pipeline(pretrain=True, options=CUSTOM), tmp_path / "custom.yaml")
    executors = _executors(text)
    # every task runs in the chosen registry and tag; training in the CPU image (kind)
    assert {e["container"]["image"] for e in executors.values()} == {
        "registry.example.com/search/qrewrite-runtime:t1"
    }
    kind = PROFILES["kind"]
    gpu_steps = {*TRAINING, "exec-evaluate-rewriter"}  # on_cluster(resources=GPU_STEP)
    for name, executor in executors.items():
        resources = executor["container"]["resources"]
        size = kind.gpu_step if name in gpu_steps else kind.cpu_step
        assert (resources["resourceCpuLimit"], resources["resourceMemoryLimit"]) == (
            size.cpu,
            size.memory,
        ), name
        assert "accelerator" not in resources, name  # no GPUs on kind
    assert "retryPolicy" not in text
    # the same build with retries on: the flaky steps retry
    retried = _compile(
        build_pipeline(pretrain=True, options=dataclasses.replace(CUSTOM, retries=True)),
        tmp_path / "retried.yaml",
    )
    assert "retryPolicy" in retried


def test_a_build_leaves_nothing_behind_for_the_next(tmp_path: Path) -> None:
    images = _component_images()
    default = _compile(build_pipeline(), tmp_path / "default.yaml")
    custom = build_pipeline(pretrain=True, options=CUSTOM)
    # the components keep the images they were defined with
    assert _component_images() == images
    # a default build after the custom one is the default build
    again = build_pipeline()
    assert _compile(again, tmp_path / "again.yaml") == default
    # and the custom pipeline kept its options, compiled after the default build
    executors = _executors(_compile(custom, tmp_path / "custom.yaml"))
    assert executors["exec-grpo-align"]["container"]["image"] == (
        "registry.example.com/search/qrewrite-runtime:t1"
    )


def test_compile_writes_the_options_it_is_given(tmp_path: Path) -> None:
    options = BuildOptions(profile="kind", image_registry="registry.example.com/search")
    spec = next(
        yaml.safe_load_all(
            compile_pipeline(tmp_path / "kind.yaml", preset="tiny", options=options).read_text()
        )
    )
    images = {e["container"]["image"] for e in spec["deploymentSpec"]["executors"].values()}
    assert images == {f"registry.example.com/search/qrewrite-runtime:{__version__}"}
