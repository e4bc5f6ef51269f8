"""stage_marketplace: the catalog and search log this run trains on, as a Dataset."""

from kfp import dsl
from kfp.dsl import Dataset, Output

from qrewrite_components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def stage_marketplace(config: str, data_source: str, parent_run_id: str, market: Output[Dataset]):
    """Copy the shop's export (a directory) or synthesize the embedded marketplace
    (``data_source: synthetic``) into ``market``. Library: ``qrewrite.market.stage``."""
    import os

    from qrewrite.config import config_from_preset_text
    from qrewrite.market.simulate import SynthConfig
    from qrewrite.market.stage import stage_marketplace as stage
    from qrewrite.tracking import PARENT_RUN_ENV, log_step

    os.environ[PARENT_RUN_ENV] = parent_run_id
    synth = config_from_preset_text(SynthConfig, config, "synth")
    staged = stage(source=data_source, out_dir=market.path, synth=synth)
    market.metadata.update(staged.to_dict())
    log_step("stage_marketplace", staged.rows, [], {"data_source": staged.source})
    print("\n".join(staged.summary_lines(market.path)))
