"""The registry's options (section ``registry:`` of a preset) and the aliases it moves."""

from __future__ import annotations

from dataclasses import dataclass, field

from qrewrite.tracking import DEFAULT_TRACKING_URI

CHAMPION = "champion"
CHALLENGER = "challenger"


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
    # where the champion was evaluated in the same run, the challenger's gain on the primary
    # metric paired by query (evaluation's champion_difference) must have its 95% interval above
    # zero: a gain the held-out queries do not establish keeps the champion
    require_established_gain: bool = True
    tracking_uri: str = DEFAULT_TRACKING_URI
    experiment: str = "qrewrite"
