"""A model to load from a path or a registry URI (``models:/name@alias``,
``models:/name/version``): registered models are downloaded once into a cache and pinned to
their version."""

from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from qrewrite.errors import ConfigError
from qrewrite.registry.client import registry_client
from qrewrite.registry.config import CHAMPION
from qrewrite.tracking import DEFAULT_TRACKING_URI, resolve_tracking_uri

log = logging.getLogger(__name__)


def is_model_uri(text: str) -> bool:
    """Whether ``text`` names a model in MLflow rather than a directory."""
    return text.startswith(("models:/", "runs:/", "mlflow-artifacts:/"))


@dataclass
class ResolvedModel:
    """A model ready to load: its weights folder, a pinned description of what it is, and the
    serving policy folder a registered model carries (None for a plain model directory)."""

    path: Path
    pinned: str
    policy_dir: Path | None = None


def resolve_champion(
    registered_model: str, *, tracking_uri: str = DEFAULT_TRACKING_URI
) -> tuple[Path, str] | None:
    """The current champion's model directory and pinned URI, or None (with the reason logged)
    when there is none yet: evaluation then compares with the baselines only."""
    try:
        return resolve_model_dir(
            f"models:/{registered_model}@{CHAMPION}", tracking_uri=tracking_uri
        )
    except ConfigError as e:
        log.warning("no champion to compare against (%s)", e)
        return None


def resolve_model_dir(
    uri: str, *, tracking_uri: str = DEFAULT_TRACKING_URI, cache: str | Path | None = None
) -> tuple[Path, str]:
    """A local model directory for a path or a registry URI (``models:/name@alias``,
    ``models:/name/version``); returns (directory, a pinned description of what it is)."""
    resolved = resolve_model(uri, tracking_uri=tracking_uri, cache=cache)
    return resolved.path, resolved.pinned


def resolve_model(
    uri: str, *, tracking_uri: str = DEFAULT_TRACKING_URI, cache: str | Path | None = None
) -> ResolvedModel:
    """:func:`resolve_model_dir`, with the registered model's serving policy folder."""
    from qrewrite.training.models import check_model_dir

    if not is_model_uri(uri):
        return ResolvedModel(check_model_dir(uri, "model"), uri)
    import mlflow
    from mlflow.exceptions import MlflowException

    client = registry_client(tracking_uri)
    pinned = uri
    if uri.startswith("models:/"):
        ref = uri.removeprefix("models:/")
        try:
            if "@" in ref:
                name, alias = ref.split("@", 1)
                pinned = f"models:/{name}/{client.get_model_version_by_alias(name, alias).version}"
            else:
                name, version = ref.rsplit("/", 1)
                client.get_model_version(name, version)
        except (MlflowException, ValueError) as e:
            raise ConfigError(
                f"{uri}: not in the registry at {resolve_tracking_uri(tracking_uri)} "
                f"({str(e).splitlines()[0][:200]}); check the name, version or alias"
            ) from e
    root = Path(
        cache
        or os.environ.get("QREWRITE_MODEL_CACHE", Path.home() / ".cache" / "qrewrite" / "models")
    )
    dst = (
        root
        / hashlib.sha256(f"{resolve_tracking_uri(tracking_uri)}|{pinned}".encode()).hexdigest()[:16]
    )
    if not (dst / "MLmodel").exists():
        dst.mkdir(parents=True, exist_ok=True)
        try:
            mlflow.artifacts.download_artifacts(artifact_uri=pinned, dst_path=str(dst))
        except MlflowException as e:
            raise ConfigError(
                f"{uri}: could not download the model ({str(e).splitlines()[0][:200]})"
            ) from e
    from qrewrite.registry.pyfunc import MODEL_ARTIFACT, POLICY_ARTIFACT

    weights = _artifact_dir(dst, MODEL_ARTIFACT, uri)
    policy = _artifact_dir(dst, POLICY_ARTIFACT, uri, required=False)
    return ResolvedModel(check_model_dir(weights, f"model {pinned}"), pinned, policy)


def _artifact_dir(pyfunc_dir: Path, key: str, uri: str, *, required: bool = True) -> Path | None:
    """Where a downloaded pyfunc model keeps an artifact (its MLmodel file says)."""
    import yaml

    spec = yaml.safe_load((pyfunc_dir / "MLmodel").read_text())
    try:
        rel = spec["flavors"]["python_function"]["artifacts"][key]["path"]
    except (KeyError, TypeError) as e:
        if not required:
            return None
        raise ConfigError(
            f"{uri}: not a query-rewriter model (its MLmodel has no '{key}' artifact)"
        ) from e
    return pyfunc_dir / rel
