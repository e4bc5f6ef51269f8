"""The model registry: register a trained model as a challenger, gate it against the champion,
promote and roll back by hand. MLflow 3 aliases (``challenger``, ``champion``), not stages.

Everything a person needs at 3 a.m. is on the model version: the lineage (data snapshot, config,
contract results, training and pipeline run ids), the evaluation metrics, and the gate's decision
and reason. The champion's history is a registered-model tag, so a rollback knows where to go.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from qrewrite import __version__
from qrewrite.errors import ConfigError, DataError
from qrewrite.serving.policy import ServingPolicy
from qrewrite.training.tracking import (
    DEFAULT_TRACKING_URI,
    check_tracking_store,
    mlflow_run,
    resolve_tracking_uri,
    use_tracking_uri,
)

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_TAG = "champion_history"  # JSON list of former champion versions, newest last
HISTORY_LIMIT = 50
# metrics copied onto the version as tags ("metric.<key>"), read by later gates
GATE_METRICS = (
    "relevance_rate",
    "served_relevance_rate",
    "served_rate",
    "ucvr_uplift_unfiltered",
    "ndcg_at_10_uplift_unfiltered",
    "hit_rate",
    "hit_rate_original",
    "increment",
    "ndcg_at_10",
    "ucvr_uplift",
    "ucvr_uplift_ci_low",
    "ucvr_uplift_ci_high",
    "ndcg_at_10_uplift",
    "ndcg_at_10_uplift_ci_low",
    "ndcg_at_10_uplift_ci_high",
    "tagging_macro_f1",
)


@dataclass
class RegistryConfig:
    """Options of ``qrewrite register`` / ``promote`` / ``rollback`` (section ``registry:``)."""

    registered_model: str = "query-rewriter"
    # the gate: the challenger must beat the champion on this metric by more than ``margin``...
    primary_metric: str = "ucvr_uplift"
    # ...or on this one where the primary is not measured: on judged data, nDCG@10 on people's
    # grades of original + rewrite over the original's (docs/evaluation.md#on-human-judgments)
    fallback_metric: str = "ndcg_at_10_uplift"
    margin: float = 0.0
    # ...and may not lose more than this much relevance rate (absolute, 0.02 = 2 points)
    relevance_tolerance: float = 0.02
    # the first model must beat no-rewrite with the uplift's interval above 0 when it has one
    require_ci_above_zero: bool = True
    # floors every challenger must clear, first or not (None: no floor). Relevance is the
    # teacher's, of every top rewrite (the model alone) and of the served ones
    min_relevance_rate: float | None = 0.3
    min_served_relevance_rate: float | None = 0.5
    min_served_rate: float | None = 0.05
    # the primary (or fallback) uplift with every top rewrite served: the model alone must not
    # make search worse, whatever vetting rescues
    min_unfiltered_uplift: float | None = 0.0
    # per metric, how far apart models trained on different seeds from the same data land
    # (docs/benchmarks.md): a challenger must beat the champion by more to replace it
    seed_spread: dict[str, float] = field(default_factory=dict)
    tracking_uri: str = DEFAULT_TRACKING_URI
    experiment: str = "qrewrite"


@dataclass
class GateCheck:
    """One floor of the gate and how the challenger fared."""

    name: str
    passed: bool
    detail: str


@dataclass
class GateDecision:
    promote: bool
    reason: str
    metric: str
    challenger_value: float | None = None
    champion_value: float | None = None
    checks: list[GateCheck] = field(default_factory=list)


@dataclass
class Registration:
    name: str
    version: str
    created: bool
    decision: GateDecision
    champion: str | None
    lineage: dict[str, str] = field(default_factory=dict)


def _client(tracking_uri: str, *, must_exist: bool = True) -> Any:
    """An MLflow client of the registry at ``tracking_uri`` (``$MLFLOW_TRACKING_URI`` first),
    after checking that it is there and answers (only ``register`` may create a store)."""
    from mlflow import MlflowClient

    logging.getLogger("alembic").setLevel(logging.WARNING)
    uri = resolve_tracking_uri(tracking_uri)
    check_tracking_store(uri, must_exist=must_exist)
    use_tracking_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def _num(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v == v else None  # NaN -> None


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


def lineage(
    model_dir: Path,
    data_dir: Path | None,
    datasets_dir: Path | None,
    config_file: Path | None,
    contracts_dir: Path | list[Path] | None,
    pipeline_run_id: str | None,
) -> dict[str, str]:
    """Where the model came from, as version tags (strings, MLflow's tag type).

    ``contracts_dir``: the folder(s) of contract results (``<contract>.json``) of this data."""
    card_path = model_dir / "qrewrite_model.json"
    card = json.loads(card_path.read_text()) if card_path.exists() else {}
    out = {
        "fingerprint": fingerprint(model_dir),
        "qrewrite_version": __version__,
        "training_step": str(card.get("step", "")),
        "training_run_id": str(card.get("mlflow_run_id", "")),
        "pipeline_run_id": pipeline_run_id or os.environ.get("QREWRITE_PIPELINE_RUN_ID", ""),
    }
    if data_dir is not None:
        snap = [data_dir / "manifest.json"]
        if datasets_dir is not None:
            snap.append(datasets_dir / "dataset_report.json")
        out["data_snapshot"] = _hash_files(snap)
    if config_file is not None:
        out["config_hash"] = _hash_files([config_file])
    folders = contracts_dir if isinstance(contracts_dir, list) else [contracts_dir]
    folders = [f for f in folders if f is not None and f.is_dir()]
    if folders:
        results = {}
        for f in sorted(p for d in folders for p in d.glob("*.json")):
            try:
                r = json.loads(f.read_text())
            except json.JSONDecodeError:
                continue
            if isinstance(r, dict) and "contract" in r and "success" in r:
                results[str(r["contract"])] = bool(r["success"])
        passed = sum(results.values())
        out["contracts"] = f"{passed}/{len(results)} passed" + (
            ""
            if passed == len(results)
            else f"; failed: {', '.join(k for k, v in results.items() if not v)}"
        )
    return out


def _floor_checks(
    config: RegistryConfig, metric: str, challenger: dict[str, Any]
) -> list[GateCheck]:
    """The floors every challenger must clear, champion or not: what the model does alone
    counts, not only what vetting keeps of it."""
    floors = [
        ("relevance_rate", config.min_relevance_rate, "teacher relevance of every top rewrite"),
        ("served_relevance_rate", config.min_served_relevance_rate, "of the served ones"),
        ("served_rate", config.min_served_rate, "share of queries served"),
    ]
    if metric.endswith("uplift"):
        floors.append((f"{metric}_unfiltered", config.min_unfiltered_uplift, "the model alone"))
    checks = []
    for key, floor, what in floors:
        if floor is None:
            continue
        value = _num(challenger.get(key))
        if value is None:
            checks.append(GateCheck(key, False, f"{key} not measured (floor {floor:g}; {what})"))
        else:
            checks.append(
                GateCheck(key, value >= floor, f"{key} {value:.4f} >= {floor:g} ({what})")
            )
    return checks


def _decision(
    promote: bool,
    reason: str,
    metric: str,
    checks: list[GateCheck],
    value: float | None = None,
    base: float | None = None,
) -> GateDecision:
    failed = [c for c in checks if not c.passed]
    if promote and failed:
        promote = False
        reason = f"held by the floors ({', '.join(c.name for c in failed)}), though {reason}"
    listed = "; ".join(f"{'ok' if c.passed else 'FAILED'}: {c.detail}" for c in checks)
    return GateDecision(
        promote,
        reason + (f". Checks: {listed}" if listed else ""),
        metric,
        value,
        base,
        checks,
    )


def gate(
    config: RegistryConfig,
    challenger: dict[str, Any],
    champion: dict[str, Any] | None,
    no_rewrite: dict[str, Any] | None,
) -> GateDecision:
    """Should the challenger become champion? Pure: metrics in, decision and reason out.

    It must clear every floor (:func:`_floor_checks`) and beat no-rewrite (the first champion,
    with its interval above zero) or the champion by more than the margin and, where the preset
    records it, by more than the spread training seeds alone produce. Every check and its value
    is in the reason."""
    metric = config.primary_metric
    if _num(challenger.get(metric)) is None:
        metric = config.fallback_metric
    value = _num(challenger.get(metric))
    if value is None:
        return GateDecision(
            False,
            f"the challenger has neither {config.primary_metric} nor {config.fallback_metric}",
            metric,
        )
    checks = _floor_checks(config, metric, challenger)
    rel = _num(challenger.get("relevance_rate"))
    if champion is None:
        # against no-rewrite: an uplift is already relative to it; other metrics are compared
        base = 0.0 if metric.endswith("uplift") else _num((no_rewrite or {}).get(metric))
        if base is None:
            return _decision(False, f"no no-rewrite baseline for {metric}", metric, checks, value)
        if value <= base + config.margin:
            return _decision(
                False,
                f"{metric} {value:.4f} does not beat no-rewrite ({base:.4f}) by more than the "
                f"margin {config.margin}",
                metric,
                checks,
                value,
                base,
            )
        low = _num(challenger.get(f"{metric}_ci_low"))
        if config.require_ci_above_zero and low is not None and low <= 0:
            return _decision(
                False,
                f"{metric} {value:.4f} beats no-rewrite but its 95% interval starts at {low:.4f} "
                "(not above 0)",
                metric,
                checks,
                value,
                base,
            )
        return _decision(
            True,
            f"first champion: {metric} {value:.4f} beats no-rewrite ({base:.4f})",
            metric,
            checks,
            value,
            base,
        )
    champ = _num(champion.get(metric))
    if champ is None:
        return _decision(
            False,
            f"the champion has no {metric} to compare with; promote by hand",
            metric,
            checks,
            value,
        )
    if value <= champ + config.margin:
        return _decision(
            False,
            f"{metric} {value:.4f} does not beat the champion's {champ:.4f} by more than the "
            f"margin {config.margin}",
            metric,
            checks,
            value,
            champ,
        )
    spread = config.seed_spread.get(metric)
    if spread is not None and value - champ <= spread:
        return _decision(
            False,
            f"{metric} {value:.4f} beats the champion's {champ:.4f} by {value - champ:.4f}, "
            f"inside the spread that training seeds alone produce ({spread:g}, "
            "registry.seed_spread): not a real difference, the champion stays",
            metric,
            checks,
            value,
            champ,
        )
    champ_rel = _num(champion.get("relevance_rate"))
    if rel is not None and champ_rel is not None and rel < champ_rel - config.relevance_tolerance:
        return _decision(
            False,
            f"{metric} improves ({value:.4f} > {champ:.4f}) but relevance rate drops from "
            f"{champ_rel:.4f} to {rel:.4f}, more than the tolerance {config.relevance_tolerance}",
            metric,
            checks,
            value,
            champ,
        )
    return _decision(
        True,
        f"{metric} {value:.4f} beats the champion's {champ:.4f}",
        metric,
        checks,
        value,
        champ,
    )


def _history(client: Any, name: str) -> list[str]:
    from mlflow.exceptions import MlflowException

    try:
        tags = client.get_registered_model(name).tags or {}
    except MlflowException:  # not registered yet
        return []
    try:
        return [str(v) for v in json.loads(tags.get(HISTORY_TAG, "[]"))]
    except json.JSONDecodeError:
        return []


def _set_champion(client: Any, name: str, version: str, reason: str) -> str | None:
    """Point ``champion`` at ``version``; push the previous champion onto the history."""
    previous = _alias_version(client, name, CHAMPION)
    if previous == version:
        return previous
    if previous is not None:
        history = ([*_history(client, name), previous])[-HISTORY_LIMIT:]
        client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_registered_model_alias(name, CHAMPION, version)
    client.set_model_version_tag(
        name, version, "promoted_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    client.set_model_version_tag(name, version, "promotion_reason", reason[:5000])
    client.set_model_version_tag(name, version, "previous_champion", previous or "")
    log.info("registry: %s@champion is now version %s (was %s)", name, version, previous)
    return previous


def _version_metrics(client: Any, name: str, version: str) -> dict[str, float]:
    tags = client.get_model_version(name, version).tags or {}
    return {
        k.removeprefix("metric."): float(v)
        for k, v in tags.items()
        if k.startswith("metric.") and _num(v) is not None
    }


def _read_metrics(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise DataError(
            f"{path}: not found; run `qrewrite evaluate` first and pass its metrics.json"
        )
    try:
        report = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON ({e.msg} at line {e.lineno})") from e
    if not isinstance(report, dict) or "metrics" not in report or "variants" not in report:
        raise DataError(f"{path}: not an evaluate metrics.json (no 'metrics' / 'variants' keys)")
    return report


def _log_model(
    name: str,
    model_dir: Path,
    report: dict[str, Any],
    policy: ServingPolicy,
    lin: dict[str, str],
    *,
    metrics_path: Path,
    report_path: Path | None,
    data_dir: str | Path | None,
    labels: str | Path | None,
) -> str:
    """Log the pyfunc model (weights, serving policy and teacher, qrewrite's code) in the active
    run and register it; returns the new version."""
    import tempfile

    import mlflow
    import pandas as pd

    import qrewrite
    from qrewrite.registry import pyfunc as pyfunc_module
    from qrewrite.registry.pyfunc import (
        MAX_QUERIES_PER_REQUEST,
        MAX_QUERY_CHARS,
        MODEL_ARTIFACT,
        POLICY_ARTIFACT,
        pip_requirements,
        signature,
    )
    from qrewrite.serving.rewriter import generation_settings
    from qrewrite.serving.served import save_policy

    metrics = report["metrics"]
    numeric = {f"eval/{k}": v for k, v in metrics.items() if _num(v) is not None}
    mlflow.log_metrics(numeric)
    mlflow.log_artifact(str(metrics_path))
    if report_path is not None:
        # the report, Markdown and self-contained HTML, beside the model card
        for path in (report_path, report_path.with_suffix(".html")):
            if path.exists():
                mlflow.log_artifact(str(path))
    with tempfile.TemporaryDirectory() as tmp:
        teacher = None
        if policy.needs_teacher:
            from qrewrite.labeling.teacher import Teacher

            assert data_dir is not None
            teacher = Teacher.from_data(data_dir, labels)  # as evaluation built it
        policy_dir = save_policy(
            Path(tmp) / POLICY_ARTIFACT,
            policy,
            teacher=teacher,
            # generate as evaluation measured
            generation=generation_settings(report.get("config") or {}),
        )
        with warnings.catch_warnings():
            # MLflow asks for type hints on predict; the signature below is explicit instead
            warnings.filterwarnings("ignore", message=".*[Tt]ype hint.*")
            info = mlflow.pyfunc.log_model(
                name="model",
                # models from code: the registry holds code that imports qrewrite, no pickle
                python_model=str(Path(pyfunc_module.__file__).with_name("pyfunc_entry.py")),
                artifacts={MODEL_ARTIFACT: str(model_dir), POLICY_ARTIFACT: str(policy_dir)},
                # qrewrite travels with the model: a serving environment installs only the
                # pinned requirements, from any package index
                code_paths=[str(Path(qrewrite.__file__).parent)],
                signature=signature(),
                # checked at logging time: the packaged model loads and answers this
                input_example=pd.DataFrame({"query": ["wireless earbuds"]}),
                pip_requirements=pip_requirements(),
                metadata={"qrewrite": lin, "serving_policy": policy.describe()},
                model_config={
                    "limits": {
                        "max_queries_per_request": MAX_QUERIES_PER_REQUEST,
                        "max_query_chars": MAX_QUERY_CHARS,
                    },
                },
                registered_model_name=name,
            )
    return str(info.registered_model_version)


def _write_card(
    client: Any,
    name: str,
    version: str,
    report: dict[str, Any],
    verdict: str,
    lin: dict,
    policy: ServingPolicy,
) -> None:
    """The version's model card (``model_card.md`` in its run, beside ``report.html``) and
    its description: the serving policy in words, the gate's verdict, where the card is."""
    from qrewrite.evaluation.report import model_card

    run_id = client.get_model_version(name, version).run_id
    card = model_card(report, title=f"{name} version {version}", gate=verdict, lineage=lin)
    if run_id:
        client.log_text(run_id, card, "model_card.md")
    description = (
        f"Serves: {policy.describe()}; predict returns the served rewrite (or none).\n\n"
        f"Gate: {verdict}\n\nModel card: model_card.md and report.html in run {run_id}."
    )
    client.update_model_version(name, version, description=description[:5000])


def register(
    config: RegistryConfig,
    model_dir: str | Path,
    metrics_path: str | Path,
    tags: dict[str, str] | None = None,
    report_path: str | Path | None = None,
    *,
    auto_promote: bool = True,
    data_dir: str | Path | None = None,
    labels: str | Path | None = None,
) -> Registration:
    """Log and register ``model_dir`` as the ``challenger`` (once per trained model), then gate
    it against the champion and promote it when it wins.

    The logged model carries the serving policy its evaluation measured under (from
    ``metrics_path``'s config) and, when that policy vets with the teacher, the teacher built
    from ``data_dir`` and ``labels``, as evaluation built it: it serves what was measured.
    With ``auto_promote=False`` the decision is recorded on the version but not applied: the
    pipeline promotes in a step of its own, under ``dsl.If`` on the decision.
    """
    from qrewrite.training.models import check_model_dir

    model_dir = check_model_dir(model_dir, "model to register")
    report = _read_metrics(Path(metrics_path))
    metrics = report["metrics"]
    policy = ServingPolicy.of(report.get("config") or {})
    if policy.needs_teacher and data_dir is None:
        raise ConfigError(
            f"register: {metrics_path} was measured under the serving policy vet={policy.vet!r}, "
            "which vets with the teacher: pass --data and --labels (the ones evaluate read) so "
            "that the registered model carries it"
        )
    lin = {**lineage(model_dir, None, None, None, None, None), **(tags or {})}
    name = config.registered_model
    client = _client(config.tracking_uri, must_exist=False)
    existing = client.search_model_versions(
        f"name='{name}' and tags.fingerprint='{lin['fingerprint']}'"
    )
    if existing:
        version = str(max(int(v.version) for v in existing))
        created = False
        log.info(
            "registry: %s version %s already holds this model; not registering again", name, version
        )
    else:
        with mlflow_run(config.tracking_uri, config.experiment, "register") as run:
            version = _log_model(
                name,
                model_dir,
                report,
                policy,
                lin,
                metrics_path=Path(metrics_path),
                report_path=Path(report_path) if report_path else None,
                data_dir=data_dir,
                labels=labels,
            )
            lin.setdefault("register_run_id", run.info.run_id)
        created = True
        for k, v in lin.items():
            client.set_model_version_tag(name, version, k, str(v))
        for k in GATE_METRICS:
            if _num(metrics.get(k)) is not None:
                client.set_model_version_tag(name, version, f"metric.{k}", repr(float(metrics[k])))
        log.info("registry: registered %s version %s", name, version)
    client.set_registered_model_alias(name, CHALLENGER, version)

    champion_version = _alias_version(client, name, CHAMPION)
    champion_metrics = None
    if champion_version == version:
        decision = GateDecision(False, "already the champion", config.primary_metric)
        return Registration(name, version, created, decision, champion_version, lin)
    if champion_version is not None:
        evaluated = report.get("variants", {}).get(CHAMPION)
        champ_uri = str(report.get("models", {}).get(CHAMPION, ""))
        if evaluated and champ_uri.endswith(f"/{champion_version}"):
            champion_metrics = evaluated  # measured in the same run, on the same queries
        else:
            champion_metrics = _version_metrics(client, name, champion_version)
            log.warning(
                "registry: the champion (version %s) was not evaluated in this run; comparing "
                "with the metrics recorded at its registration, on other data perhaps",
                champion_version,
            )
    decision = gate(config, metrics, champion_metrics, report["variants"].get("no-rewrite"))
    if decision.promote:
        verdict = "promoted: " if auto_promote else "passed, promoted by the pipeline: "
    else:
        verdict = "held: "
    verdict += decision.reason
    client.set_model_version_tag(name, version, "gate", verdict[:5000])
    _write_card(client, name, version, report, verdict, lin, policy)
    if decision.promote and auto_promote:
        _set_champion(client, name, version, f"gate: {decision.reason}")
        champion_version = version
    log.info("registry: %s version %s %s", name, version, verdict)
    return Registration(name, version, created, decision, champion_version, lin)


def promote(config: RegistryConfig, version: str, reason: str = "promoted by hand") -> str | None:
    """Make ``version`` the champion by hand; returns the previous champion."""
    from mlflow.exceptions import MlflowException

    client = _client(config.tracking_uri)
    try:
        client.get_model_version(config.registered_model, str(version))
    except MlflowException as e:
        raise ConfigError(
            f"registry: {config.registered_model} has no version {version}; "
            "list them with `mlflow models` or the MLflow UI"
        ) from e
    return _set_champion(client, config.registered_model, str(version), reason)


def rollback(config: RegistryConfig) -> tuple[str, str]:
    """Point ``champion`` back at the previous champion; returns (from, to)."""
    client = _client(config.tracking_uri)
    name = config.registered_model
    current = _alias_version(client, name, CHAMPION)
    if current is None:
        raise ConfigError(f"registry: {name} has no champion to roll back")
    history = _history(client, name)
    while history and history[-1] == current:
        history.pop()
    if not history:
        raise ConfigError(
            f"registry: {name}@champion is version {current} and no earlier champion is "
            "recorded; promote a version by hand with `qrewrite promote --version V`"
        )
    target = history.pop()
    client.set_registered_model_alias(name, CHAMPION, target)
    client.set_registered_model_tag(name, HISTORY_TAG, json.dumps(history))
    client.set_model_version_tag(
        name, current, "rolled_back_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    log.warning("registry: rolled %s@champion back from version %s to %s", name, current, target)
    return current, target


def is_model_uri(text: str) -> bool:
    return text.startswith(("models:/", "runs:/", "mlflow-artifacts:/"))


def resolve_champion(
    registered_model: str, tracking_uri: str = DEFAULT_TRACKING_URI
) -> tuple[Path, str] | None:
    """The current champion's model directory and pinned URI, or None (with the reason logged)
    when there is none yet: evaluation then compares with the baselines only."""
    try:
        return resolve_model_dir(f"models:/{registered_model}@{CHAMPION}", tracking_uri)
    except ConfigError as e:
        log.warning("no champion to compare against (%s)", e)
        return None


@dataclass
class ResolvedModel:
    """A model ready to load: its weights folder, a pinned description of what it is, and the
    serving policy folder a registered model carries (None for a plain model directory)."""

    path: Path
    pinned: str
    policy_dir: Path | None = None


def resolve_model_dir(
    uri: str, tracking_uri: str = DEFAULT_TRACKING_URI, cache: str | Path | None = None
) -> tuple[Path, str]:
    """A local model directory for a path or a registry URI (``models:/name@alias``,
    ``models:/name/version``); returns (directory, a pinned description of what it is)."""
    resolved = resolve_model(uri, tracking_uri, cache=cache)
    return resolved.path, resolved.pinned


def resolve_model(
    uri: str, tracking_uri: str = DEFAULT_TRACKING_URI, *, cache: str | Path | None = None
) -> ResolvedModel:
    """:func:`resolve_model_dir`, with the registered model's serving policy folder."""
    from qrewrite.training.models import check_model_dir

    if not is_model_uri(uri):
        return ResolvedModel(check_model_dir(uri, "model"), uri)
    import mlflow
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
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


def registry_summary(config: RegistryConfig) -> dict[str, Any]:
    """Aliases and history of the registered model (for the CLI and the demo)."""
    client = _client(config.tracking_uri)
    name = config.registered_model
    challenger = _alias_version(client, name, CHALLENGER)
    gate_tag = ""
    if challenger is not None:
        gate_tag = (client.get_model_version(name, challenger).tags or {}).get("gate", "")
    return {
        "name": name,
        "champion": _alias_version(client, name, CHAMPION),
        "challenger": challenger,
        "challenger_gate": gate_tag,
        "history": _history(client, name),
        "config": asdict(config),
    }
