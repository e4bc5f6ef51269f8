"""The promotion gate: should a challenger replace the champion? Pure: metrics in, decision and
every check, with its value, out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qrewrite.registry.config import RegistryConfig

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
class GateCheck:
    """One floor of the gate and how the challenger fared."""

    name: str
    passed: bool
    detail: str


@dataclass
class GateDecision:
    """The gate's verdict: promote or not, why (every check listed), on which metric, and the
    challenger's and the compared value (the champion's, or no-rewrite's for a first champion)."""

    promote: bool
    reason: str
    metric: str
    challenger_value: float | None = None
    champion_value: float | None = None
    checks: list[GateCheck] = field(default_factory=list)


def metric_value(value: Any) -> float | None:
    """``value`` as a float; None when it is missing, not a number or NaN."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if v == v else None  # NaN -> None


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
        value = metric_value(challenger.get(key))
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
    *,
    champion: dict[str, Any] | None,
    no_rewrite: dict[str, Any] | None,
    paired_gain: Sequence[float] | None = None,
) -> GateDecision:
    """Should the challenger become champion? Pure: metrics in, decision and reason out.

    ``champion`` holds the champion's metrics (None: there is none yet), ``no_rewrite`` the
    no-rewrite baseline's. The challenger must clear every floor (:func:`_floor_checks`) and beat
    no-rewrite (the first champion, with its interval above zero) or the champion by more than
    the margin and, where the preset records it, by more than the spread training seeds alone
    produce. ``paired_gain`` is the challenger's gain over the champion on the primary metric
    paired by query, ``[point, low, high]``, where both were evaluated in the same run: with
    ``require_established_gain`` its interval must lie above zero. Every check and its value is
    in the reason."""
    metric = config.primary_metric
    if metric_value(challenger.get(metric)) is None:
        metric = config.fallback_metric
    value = metric_value(challenger.get(metric))
    if value is None:
        return GateDecision(
            False,
            f"the challenger has neither {config.primary_metric} nor {config.fallback_metric}",
            metric,
        )
    checks = _floor_checks(config, metric, challenger)
    rel = metric_value(challenger.get("relevance_rate"))
    if champion is None:
        # against no-rewrite: an uplift is already relative to it; other metrics are compared
        base = 0.0 if metric.endswith("uplift") else metric_value((no_rewrite or {}).get(metric))
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
        low = metric_value(challenger.get(f"{metric}_ci_low"))
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
    champ = metric_value(champion.get(metric))
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
    paired = [metric_value(v) for v in paired_gain or ()]
    if (
        config.require_established_gain
        and len(paired) == 3
        and None not in paired
        and metric == config.primary_metric
        and paired[1] <= 0
    ):
        point, low, high = paired
        return _decision(
            False,
            f"{metric} {value:.4f} beats the champion's {champ:.4f}, but paired by query the "
            f"gain is {point:+.4f} with a 95% interval [{low:+.4f}, {high:+.4f}] that does not "
            "lie above 0: the held-out queries do not establish it, the champion stays "
            "(registry.require_established_gain)",
            metric,
            checks,
            value,
            champ,
        )
    champ_rel = metric_value(champion.get("relevance_rate"))
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
