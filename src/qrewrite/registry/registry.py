"""The model registry's writes: register a trained model as a challenger, gated against the
champion (:mod:`qrewrite.registry.gate`); promote and roll back by hand. MLflow 3 aliases
(``challenger``, ``champion``), not stages.

Everything a person needs at 3 a.m. is on the model version: the lineage
(:mod:`qrewrite.registry.lineage`: data snapshot, config, contract results, training and pipeline
run ids), the evaluation metrics, and the gate's decision and reason. The champion's history is a
registered-model tag, so a rollback knows where to go.
"""

from __future__ import annotations

import json
import logging
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from qrewrite.errors import ConfigError, DataError
from qrewrite.registry.client import alias_version, registry_client
from qrewrite.registry.config import CHALLENGER, CHAMPION, RegistryConfig
from qrewrite.registry.gate import GATE_METRICS, GateDecision, gate, metric_value
from qrewrite.registry.lineage import Lineage
from qrewrite.registry.lineage import lineage as model_lineage
from qrewrite.serving.policy import ServingPolicy
from qrewrite.tracking import mlflow_run

log = logging.getLogger(__name__)

HISTORY_TAG = "champion_history"  # JSON list of former champion versions, newest last
HISTORY_LIMIT = 50


@dataclass
class Registration:
    """What ``register`` did: the version (``created`` False when it already held the model),
    the gate's decision, the champion afterwards and the lineage recorded."""

    name: str
    version: str
    created: bool
    decision: GateDecision
    champion: str | None
    lineage: Lineage

    def summary_lines(self) -> list[str]:
        """What ``register`` says when it is done (the CLI and the pipeline step alike)."""
        what = "registered" if self.created else "already registered"
        if not self.decision.promote:
            verdict = "not promoted"
        elif self.champion == self.version:
            verdict = "promoted to champion"
        else:  # the pipeline promotes in its own step, after the gate
            verdict = "passed"
        return [
            f"register: {what} {self.name} version {self.version} (alias challenger)",
            f"register: gate: {verdict}: {self.decision.reason}",
            f"register: {self.name}@champion = {self.champion or 'none'}",
        ]


@dataclass(frozen=True)
class RegistrySummary:
    """The registered model's aliases, the gate tag of the challenger and the former champions
    (newest last)."""

    name: str
    champion: str | None
    challenger: str | None
    challenger_gate: str
    history: list[str]
    config: RegistryConfig

    def alias(self, alias: str) -> str | None:
        """The version ``alias`` (``champion`` or ``challenger``) points at, or None."""
        return {CHAMPION: self.champion, CHALLENGER: self.challenger}.get(alias)

    def to_dict(self) -> dict[str, Any]:
        """The summary as plain data, the config as a dict."""
        return {
            "name": self.name,
            "champion": self.champion,
            "challenger": self.challenger,
            "challenger_gate": self.challenger_gate,
            "history": list(self.history),
            "config": asdict(self.config),
        }


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
    previous = alias_version(client, name, CHAMPION)
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
        if k.startswith("metric.") and metric_value(v) is not None
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


def _check_measured(report: dict[str, Any], metrics_path: Path, weights: str) -> None:
    """Refuse to register a model other than the one ``metrics_path`` measured as its candidate,
    when that one is a folder here to compare with (what was measured is what is shipped)."""
    from qrewrite.registry.lineage import fingerprint

    measured = (report.get("models") or {}).get(report.get("candidate"))
    if not measured or "://" in measured or not Path(measured).is_dir():
        return  # a registry URI, or measured on another machine: nothing here to compare
    try:
        same = fingerprint(Path(measured)) == weights
    except ConfigError:  # no weights there any more
        return
    if not same:
        raise ConfigError(
            f"register: {metrics_path} measured {report['candidate']!r} ({measured}), whose "
            "weights differ from the model passed; register the model its candidate names"
        )


def evaluated_candidate(metrics_path: str | Path, model_dirs: dict[str, str]) -> str:
    """The directory, out of ``model_dirs`` (variant name -> directory), of the variant the
    evaluation in ``metrics_path`` put forward as its candidate: what was measured is what gets
    registered, also when the GRPO model lost to the SFT model it came from."""
    path = Path(metrics_path)
    name = _read_metrics(path).get("candidate")
    if name not in model_dirs:
        raise DataError(
            f"{path}: its candidate {name!r} is none of the models passed ({', '.join(model_dirs)})"
        )
    return model_dirs[name]


def _log_model(
    name: str,
    model_dir: Path,
    report: dict[str, Any],
    policy: ServingPolicy,
    lin: Lineage,
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
    numeric = {f"eval/{k}": v for k, v in metrics.items() if metric_value(v) is not None}
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
                metadata={"qrewrite": lin.tags(), "serving_policy": policy.describe()},
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
    lin: Lineage,
    policy: ServingPolicy,
) -> None:
    """The version's model card (``model_card.md`` in its run, beside ``report.html``) and
    its description: the serving policy in words, the gate's verdict, where the card is."""
    from qrewrite.evaluation.report import model_card

    run_id = client.get_model_version(name, version).run_id
    card = model_card(report, title=f"{name} version {version}", gate=verdict, lineage=lin.tags())
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
    *,
    lineage: Lineage | None = None,
    report_path: str | Path | None = None,
    auto_promote: bool = True,
    data_dir: str | Path | None = None,
    labels: str | Path | None = None,
) -> Registration:
    """Log and register ``model_dir`` as the ``challenger`` (once per trained model), then gate
    it against the champion and promote it when it wins.

    ``lineage``: the model's (:func:`qrewrite.registry.lineage.lineage`, with the data, config
    and contracts it knows of); without it, what ``model_dir`` alone tells.

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
    lin = lineage if lineage is not None else model_lineage(model_dir)
    _check_measured(report, Path(metrics_path), lin.fingerprint)
    name = config.registered_model
    client = registry_client(config.tracking_uri, must_exist=False)
    existing = client.search_model_versions(
        f"name='{name}' and tags.fingerprint='{lin.fingerprint}'"
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
            if lin.register_run_id is None:
                lin = replace(lin, register_run_id=run.info.run_id)
        created = True
        for k, v in lin.tags().items():
            client.set_model_version_tag(name, version, k, str(v))
        for k in GATE_METRICS:
            if metric_value(metrics.get(k)) is not None:
                client.set_model_version_tag(name, version, f"metric.{k}", repr(float(metrics[k])))
        log.info("registry: registered %s version %s", name, version)
    client.set_registered_model_alias(name, CHALLENGER, version)

    champion_version = alias_version(client, name, CHAMPION)
    champion_metrics = None
    paired_gain = None  # the challenger's gain paired by query, when measured in this run
    if champion_version == version:
        decision = GateDecision(False, "already the champion", config.primary_metric)
        return Registration(name, version, created, decision, champion_version, lin)
    if champion_version is not None:
        evaluated = report.get("variants", {}).get(CHAMPION)
        champ_uri = str(report.get("models", {}).get(CHAMPION, ""))
        if evaluated and champ_uri.endswith(f"/{champion_version}"):
            champion_metrics = evaluated  # measured in the same run, on the same queries
            paired = report.get("champion_difference") or {}
            if paired.get("metric") == config.primary_metric and paired.get("difference"):
                paired_gain = paired["difference"]
        else:
            champion_metrics = _version_metrics(client, name, champion_version)
            log.warning(
                "registry: the champion (version %s) was not evaluated in this run; comparing "
                "with the metrics recorded at its registration, on other data perhaps",
                champion_version,
            )
    decision = gate(
        config,
        metrics,
        champion=champion_metrics,
        no_rewrite=report["variants"].get("no-rewrite"),
        paired_gain=paired_gain,
    )
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


def promote(
    config: RegistryConfig, version: str, *, reason: str = "promoted by hand"
) -> str | None:
    """Make ``version`` the champion by hand; returns the previous champion."""
    from mlflow.exceptions import MlflowException

    client = registry_client(config.tracking_uri)
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
    client = registry_client(config.tracking_uri)
    name = config.registered_model
    current = alias_version(client, name, CHAMPION)
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


def registry_summary(config: RegistryConfig) -> RegistrySummary:
    """Aliases and history of the registered model (for the CLI and the demo)."""
    client = registry_client(config.tracking_uri)
    name = config.registered_model
    challenger = alias_version(client, name, CHALLENGER)
    gate_tag = ""
    if challenger is not None:
        gate_tag = (client.get_model_version(name, challenger).tags or {}).get("gate", "")
    return RegistrySummary(
        name=name,
        champion=alias_version(client, name, CHAMPION),
        challenger=challenger,
        challenger_gate=gate_tag,
        history=_history(client, name),
        config=config,
    )
