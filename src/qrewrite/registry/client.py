"""The MLflow client of the registry, and the version an alias points at."""

from __future__ import annotations

import logging
from typing import Any

from qrewrite.tracking import check_tracking_store, resolve_tracking_uri, use_tracking_uri


def registry_client(tracking_uri: str, *, must_exist: bool = True) -> Any:
    """An MLflow client of the registry at ``tracking_uri`` (``$MLFLOW_TRACKING_URI`` first),
    after checking that it is there and answers (only ``register`` may create a store)."""
    from mlflow import MlflowClient

    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = resolve_tracking_uri(tracking_uri)
    check_tracking_store(uri, must_exist=must_exist)
    use_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def alias_version(client: Any, name: str, alias: str) -> str | None:
    """The version ``name@alias`` points at, or None when the alias is not set."""
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None
