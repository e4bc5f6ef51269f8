"""promote_champion: move the ``champion`` alias to the version that passed the gate."""

from kfp import dsl

from qrewrite_components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def promote_champion(config: str, version: str, parent_run_id: str) -> str:
    """Point ``champion`` at ``version``, recording the previous champion for ``qrewrite
    rollback``; returns the previous champion (empty when none).
    Library: ``qrewrite.registry.registry.promote``."""
    import os

    from qrewrite.config import config_from_preset_text
    from qrewrite.registry.config import RegistryConfig
    from qrewrite.registry.registry import promote
    from qrewrite.tracking import PARENT_RUN_ENV

    os.environ[PARENT_RUN_ENV] = parent_run_id
    cfg = config_from_preset_text(RegistryConfig, config, "registry")
    previous = promote(
        cfg, version, reason="gate passed in the pipeline (see the version's gate tag)"
    )
    print(f"promote_champion: {cfg.registered_model}@champion = {version} (was {previous})")
    return previous or ""
