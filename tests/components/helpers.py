"""What the direct component tests share: the tiny preset as a component's ``config`` text (with
overrides that keep training to a few steps), local ``kfp.dsl`` artifacts, and the MLflow runs a
step logged under the pipeline's run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import yaml

TINY = Path(__file__).parents[2] / "configs" / "tiny.yaml"


def preset(**sections: dict[str, Any]) -> str:
    """The tiny preset's text with some keys of some sections replaced (the component reads
    unknown keys as errors, so a misspelt override fails the test)."""
    doc = yaml.safe_load(TINY.read_text())
    for section, values in sections.items():
        doc.setdefault(section, {}).update(values)
    return yaml.safe_dump(doc, sort_keys=False)


def artifact(cls, path: Path, **metadata: Any):
    """A local artifact of type ``cls`` at ``path`` (``.path`` is the folder or file itself)."""
    return cls(name=path.name, uri=str(path), metadata=dict(metadata))


def client() -> Any:
    """An MLflow client of this test's store (``$MLFLOW_TRACKING_URI``, set by the ``store``
    fixture), named explicitly: MLflow's process-wide URI may still be an earlier test's."""
    import mlflow

    uri = os.environ["MLFLOW_TRACKING_URI"]
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def child_runs(parent: str) -> dict[str, Any]:
    """The MLflow runs logged under the pipeline run ``parent``, by run name."""
    exp = client().get_run(parent).info.experiment_id
    runs = client().search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent}'")
    return {r.info.run_name: r for r in runs}


def artifact_paths(run_id: str, folder: str = "") -> set[str]:
    """The files a run logged under ``folder`` (one level)."""
    return {a.path for a in client().list_artifacts(run_id, folder or None)}
