"""mine_search_logs: rewrite candidates and query stats from the search log."""

from kfp import dsl
from kfp.dsl import Dataset, Input, Markdown, Output

from qrewrite_components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def mine_search_logs(
    config: str,
    market: Input[Dataset],
    window_end: str,
    window_days: int,
    scheduled_time: str,
    parent_run_id: str,
    mined: Output[Dataset],
    report: Output[Markdown],
):
    """Mine session reformulations, co-engagement and engaged titles over the run's time
    window (``window_end``, else the scheduled time, else the whole log).
    Library: ``qrewrite.mining.mine``."""
    import os
    import shutil
    from pathlib import Path

    from qrewrite.config import config_from_preset_text
    from qrewrite.mining.config import MiningConfig, mining_window
    from qrewrite.mining.mine import mine
    from qrewrite.tracking import PARENT_RUN_ENV, log_step

    os.environ[PARENT_RUN_ENV] = parent_run_id
    cfg = config_from_preset_text(MiningConfig, config, "mine")
    start, end = mining_window(window_end, window_days, scheduled_time)
    if end is not None:
        cfg.start, cfg.end = start, end
    result = mine(cfg, data_dir=market.path, out_dir=mined.path)
    shutil.copyfile(Path(mined.path) / "mining_report.md", report.path)
    mined.metadata.update({"start": cfg.start or "", "end": cfg.end or "", **result.candidates})
    log_step(
        "mine",
        {
            "queries": result.queries,
            "candidates": result.candidates,
            "input": result.input,
        },
        [Path(mined.path) / "mining_report.md", Path(mined.path) / "mining_report.json"],
        {"window_start": cfg.start or "log start", "window_end": cfg.end or "log end"},
    )
    print("\n".join(result.summary_lines(mined.path)))
