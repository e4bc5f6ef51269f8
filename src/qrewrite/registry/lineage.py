"""Where a registered model came from: its weights' fingerprint, the training and pipeline run
ids, the data snapshot, the config and the contract results, as model version tags."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path

from qrewrite import __version__
from qrewrite.errors import ConfigError


@dataclass(frozen=True)
class Lineage:
    """A model's lineage; :meth:`tags` gives it as model version tags (strings, MLflow's tag
    type). A field left None was not asked for and is no tag."""

    fingerprint: str
    qrewrite_version: str
    training_step: str
    training_run_id: str
    pipeline_run_id: str
    data_snapshot: str | None = None
    config_hash: str | None = None
    contracts: str | None = None
    # set by ``register`` once it has logged the model
    register_run_id: str | None = None

    def tags(self) -> dict[str, str]:
        """The lineage as tags, in field order."""
        values = ((f.name, getattr(self, f.name)) for f in fields(self))
        return {name: value for name, value in values if value is not None}


def fingerprint(model_dir: Path) -> str:
    """sha256 of the weight files: the same trained model always gives the same fingerprint."""
    h = hashlib.sha256()
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("*.bin"))
    if not files:
        raise ConfigError(f"{model_dir}: no weights (*.safetensors) to register")
    for f in files:
        h.update(f.name.encode())
        with f.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def _hash_files(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for p in paths:
        if p.exists():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()[:16]


def _contracts(folders: list[Path]) -> str:
    """``"<passed>/<checked> passed"``, and the failed ones, of the contract results
    (``<contract>.json``) in ``folders``."""
    results = {}
    for f in sorted(p for d in folders for p in d.glob("*.json")):
        try:
            r = json.loads(f.read_text())
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict) and "contract" in r and "success" in r:
            results[str(r["contract"])] = bool(r["success"])
    passed = sum(results.values())
    return f"{passed}/{len(results)} passed" + (
        ""
        if passed == len(results)
        else f"; failed: {', '.join(k for k, v in results.items() if not v)}"
    )


def lineage(
    model_dir: Path,
    *,
    data_dir: Path | None = None,
    datasets_dir: Path | None = None,
    config_file: Path | None = None,
    contract_dirs: Sequence[Path] = (),
    pipeline_run_id: str | None = None,
) -> Lineage:
    """Where the model in ``model_dir`` came from.

    ``data_dir`` (the staged marketplace, with ``datasets_dir``'s report) gives the data
    snapshot, ``config_file`` the config hash, ``contract_dirs`` (folders of contract results,
    ``<contract>.json``; missing ones are skipped) the contracts summary. ``pipeline_run_id``
    defaults to ``$QREWRITE_PIPELINE_RUN_ID``."""
    card_path = model_dir / "qrewrite_model.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    weights = fingerprint(model_dir)
    data_snapshot = None
    if data_dir is not None:
        snap = [data_dir / "manifest.json"]
        if datasets_dir is not None:
            snap.append(datasets_dir / "dataset_report.json")
        data_snapshot = _hash_files(snap)
    config_hash = _hash_files([config_file]) if config_file is not None else None
    folders = [f for f in contract_dirs if f.is_dir()]
    return Lineage(
        fingerprint=weights,
        qrewrite_version=__version__,
        training_step=str(card.get("step", "")),
        training_run_id=str(card.get("mlflow_run_id", "")),
        pipeline_run_id=pipeline_run_id or os.environ.get("QREWRITE_PIPELINE_RUN_ID", ""),
        data_snapshot=data_snapshot,
        config_hash=config_hash,
        contracts=_contracts(folders) if folders else None,
    )
