"""label_rewrite_pairs: relevance grades of every mined (query, rewrite) pair."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Output

from qrewrite_components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def label_rewrite_pairs(
    config: str,
    market: Input[Dataset],
    mined: Input[Dataset],
    parent_run_id: str,
    labels: Output[Dataset],
):
    """Grade the candidates with the relevance teacher (or the configured LLM backend);
    writes ``labeled_pairs.parquet``. Library: ``qrewrite.labeling.label``."""
    import os
    from pathlib import Path

    from qrewrite.config import config_from_preset_text
    from qrewrite.labeling.label import LabelConfig, label
    from qrewrite.tracking import PARENT_RUN_ENV, log_step

    os.environ[PARENT_RUN_ENV] = parent_run_id
    cfg = config_from_preset_text(LabelConfig, config, "label")
    out = Path(labels.path) / "labeled_pairs.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    result = label(
        cfg,
        data_dir=market.path,
        candidates_path=Path(mined.path) / "rewrite_candidates.parquet",
        out_path=out,
    )
    labels.metadata.update({"pairs": result.pairs_labeled, "backend": result.backend})
    log_step(
        "label",
        {
            "pairs_labeled": result.pairs_labeled,
            "grades": result.grades,
            "set_aside": result.set_aside,
            "seconds": result.seconds,
        },
        [out.with_suffix(".report.json")],
        {"backend": result.backend},
    )
    print("\n".join(result.summary_lines(out)))
