"""validate_contracts: the data contracts of one hand-off, checked before the next step reads it."""

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Input, Markdown, Output

from qrewrite_components.images import RUNTIME_IMAGE


@dsl.component(base_image=RUNTIME_IMAGE, install_kfp_package=False)
def validate_contracts(
    data: Input[Dataset],
    contracts: list,
    parent_run_id: str,
    results: Output[Artifact],
    report: Output[Markdown],
):
    """Validate ``<contract>.parquet`` under ``data`` against each named Great Expectations
    contract; fail the run on the first violation. Library: ``qrewrite.contracts``."""
    import os
    from pathlib import Path

    from qrewrite.contracts import validate_path
    from qrewrite.errors import ContractViolation
    from qrewrite.tracking import PARENT_RUN_ENV, log_step

    os.environ[PARENT_RUN_ENV] = parent_run_id
    out = Path(results.path)
    checked = [validate_path(c, Path(data.path) / f"{c}.parquet", out) for c in contracts]
    Path(report.path).write_text(
        "\n\n".join((out / f"{r.contract}.md").read_text() for r in checked)
    )
    log_step(
        "validate:" + ",".join(contracts),
        {f"{r.contract}/success": float(r.success) for r in checked},
        [out / f"{r.contract}.md" for r in checked],
    )
    for r in checked:
        print(r.summary_line())
        if not r.success:
            raise ContractViolation(r.summary_line())
