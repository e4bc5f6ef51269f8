"""``qrewrite run --local``: the whole pipeline on this machine through ``kfp.local``.

``kfp.local.SubprocessRunner(use_venv=False)`` runs every component as a subprocess of this
Python environment, with real artifacts under ``<out>/pipeline_root``; Kubernetes settings are
ignored (KFP warns once per step). MLflow is a SQLite store under ``<out>/mlflow`` unless
``$MLFLOW_TRACKING_URI`` points elsewhere.
"""

import logging
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from qrewrite.errors import ConfigError, QrewriteError
from qrewrite.registry.registry import RegistrySummary

log = logging.getLogger(__name__)


@dataclass
class LocalRun:
    """What a local run needs; every field has a CLI flag."""

    config: str = "configs/local.yaml"
    out: str = "out/demo"
    scale: str = ""  # synthetic marketplace size; empty: the preset's synth.scale
    data_source: str = "synthetic"
    window_end: str = ""
    window_days: int = 0  # 0: the whole log
    base_model: str = ""
    promotion_margin: float | None = None  # None: the preset's registry.margin
    ablation: bool = False  # also train and evaluate the single-task SFT model
    # "subprocess": every step in this Python environment; "docker": every step in the runtime
    # image (`make images`), as on a cluster without GPUs (kfp.local's DockerRunner)
    runner: str = "subprocess"


@dataclass
class LocalResult:
    seconds: float
    run_dir: Path
    tracking_uri: str
    outputs: dict[str, Path] = field(default_factory=dict)
    registry: RegistrySummary | None = None  # the registered model after the run


def preset_text(path: str | Path, scale: str = "") -> str:
    """The preset as the pipeline's ``config`` parameter, with ``synth.scale`` set if asked."""
    from qrewrite.config import EXTENDS, PRESET_NAME, named_preset, resolved_preset_text

    p = Path(path)
    if p.is_file():
        text = p.read_text(encoding="utf-8")
    elif PRESET_NAME.fullmatch(str(path)):
        text = named_preset(str(path))  # a shipped preset by name: local, cluster
    else:
        raise ConfigError(f"{p}: config preset not found")
    doc = yaml.safe_load(text)
    if isinstance(doc, dict) and EXTENDS in doc:
        # the steps see only this text: resolve what it extends here, where its files are
        text = resolved_preset_text(p if p.is_file() else str(path))
    if not scale:
        return text
    doc = yaml.safe_load(text) or {}
    doc.setdefault("synth", {})["scale"] = scale
    return yaml.safe_dump(doc, sort_keys=False)


def _outputs(run_dir: Path) -> dict[str, Path]:
    """Where the artifacts a person opens first landed (``<task>/<output>`` under the run)."""
    wanted = {
        "report": ("evaluate-rewriter", "report"),
        "evaluation": ("evaluate-rewriter", "evaluation"),
        "datasets": ("build-training-datasets", "datasets"),
        "mined": ("mine-search-logs", "mined"),
        "market": ("stage-marketplace", "market"),
        "labels": ("label-rewrite-pairs", "labels"),
        "grpo_model": ("grpo-align", "model"),
        "sft_model": ("sft-multitask", "model"),
    }
    found: dict[str, Path] = {}
    for key, (task, output) in wanted.items():
        hits = sorted(run_dir.glob(f"**/{task}/{output}"))
        if hits:
            found[key] = hits[0]
    return found


RUNNERS = ("subprocess", "docker")


def _runner(name: str, root: Path, tracking: str) -> Any:
    """kfp.local's runner. In Docker, steps run as the images' non-root user, or as the caller
    when that is not root, so the files they write under ``root`` stay the caller's."""
    from kfp import local

    if name == "subprocess":
        return local.SubprocessRunner(use_venv=False)
    try:
        import docker

        docker.from_env().ping()
    except Exception as e:
        raise QrewriteError(
            f"--runner docker: no Docker engine answers ({str(e).splitlines()[0][:200]}); start "
            "one (dockerd) or run without --runner docker"
        ) from e
    from qrewrite_pipelines.platform import RUN_AS_USER

    uid = os.getuid()
    if uid == 0:
        user = f"{RUN_AS_USER}:{RUN_AS_USER}"
        # the steps write new run folders under root and share the MLflow store: hand those two
        # to the image's user (earlier runs' artifacts stay as they are)
        store = root / "mlflow"
        for path in [root, *([store, *store.rglob("*")] if store.exists() else [])]:
            os.chown(path, RUN_AS_USER, RUN_AS_USER)
    else:
        user = f"{uid}:{os.getgid()}"
    return local.DockerRunner(
        user=user,
        environment={"MLFLOW_TRACKING_URI": tracking, "HOME": "/tmp"},
    )


def pretrains(run: LocalRun, preset: dict[str, Any]) -> bool:
    """Does the run build and pretrain the small model? Where the preset has a ``pretrain:``
    section and ``--base-model`` does not replace it. Without one (the cluster preset) SFT needs
    a base model: ``--base-model`` or the preset's ``sft.base_model``."""
    if run.base_model:
        return False
    if "pretrain" in preset:
        return True
    if not (preset.get("sft") or {}).get("base_model"):
        raise ConfigError(
            f"{run.config}: no pretrain: section and no sft.base_model; pass --base-model DIR"
        )
    return False


def run_local(run: LocalRun) -> LocalResult:
    """Run the pipeline with ``kfp.local``; raise on the first failed step."""
    from kfp import local

    from qrewrite.config import config_from_preset_text
    from qrewrite.registry.config import RegistryConfig
    from qrewrite.registry.registry import registry_summary
    from qrewrite.tracking import resolve_tracking_uri
    from qrewrite_pipelines.platform import PROFILES, BuildOptions
    from qrewrite_pipelines.query_rewrite import build_pipeline

    text = preset_text(run.config, run.scale)
    doc = yaml.safe_load(text) or {}
    if run.runner not in RUNNERS:
        raise ConfigError(f"--runner {run.runner!r}: expected one of {', '.join(RUNNERS)}")
    pretrain = pretrains(run, doc)  # refused before anything is written
    out = Path(run.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    root = out / "pipeline_root"
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        # every step is a subprocess: the variable reaches all of them, and wins over the preset.
        # Containers see only the pipeline root (mounted at the same path): the store goes there.
        store = root / "mlflow" if run.runner == "docker" else out / "mlflow"
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{store / 'mlflow.db'}"
    tracking = resolve_tracking_uri("")
    options = BuildOptions(
        retries=False,  # kfp.local honours retries; here a failed step would only fail again
        image_rename=PROFILES["kind"].images,  # no CUDA image locally
    )
    pipeline = build_pipeline(
        pretrain=pretrain,
        ablation=run.ablation,
        default_config="local",
        scheduled=False,
        options=options,
    )
    root.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=_runner(run.runner, root, tracking), pipeline_root=str(root), raise_on_error=True
    )
    before = set(root.iterdir())
    margin = run.promotion_margin
    if margin is None:
        margin = float((doc.get("registry") or {}).get("margin", 0.0))
    # KFP warns per step that Kubernetes settings and images do not apply locally; say it once
    warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image.*")
    log.info("kfp.local: Kubernetes settings (GPUs, secrets, volumes) do not apply to a local run")
    started = time.monotonic()
    try:
        pipeline(
            config=text,
            data_source=run.data_source,
            window_end=run.window_end,
            window_days=run.window_days,
            base_model=run.base_model,
            promotion_margin=margin,
        )
    except RuntimeError as e:  # kfp.local: "Pipeline ... finished with status FAILURE ..."
        raise QrewriteError(
            f"{str(e).strip().splitlines()[0][:400]}; the failed step's log is above, its "
            f"artifacts under {root}"
        ) from e
    seconds = time.monotonic() - started
    new = sorted(
        (p for p in root.iterdir() if p not in before and p.name != "mlflow"),
        key=lambda p: p.stat().st_mtime,
    )
    run_dir = new[-1] if new else root
    registry_cfg = config_from_preset_text(RegistryConfig, text, "registry")
    registry_cfg.tracking_uri = tracking
    summary = registry_summary(registry_cfg)
    latest = out / "latest"  # a stable path to the newest run's artifacts
    if latest.is_symlink() or latest.exists():
        latest.unlink()
    latest.symlink_to(run_dir.relative_to(out), target_is_directory=True)
    return LocalResult(seconds, run_dir, tracking, _outputs(run_dir), summary)
