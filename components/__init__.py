"""KFP v2 components of the qrewrite pipeline: one module per step, each a thin adapter.

A component turns its input artifacts into paths, calls the step's function in ``qrewrite``
(the library, which knows nothing of Kubeflow), and files what it wrote as output artifacts.
Each step also records what it produced in MLflow, nested under the pipeline run's MLflow run.
Installed as the package ``qrewrite_components``.
"""

from qrewrite_components.build_training_datasets import build_training_datasets
from qrewrite_components.end_mlflow_run import end_mlflow_run
from qrewrite_components.evaluate_rewriter import evaluate_rewriter
from qrewrite_components.grpo_align import grpo_align
from qrewrite_components.label_rewrite_pairs import label_rewrite_pairs
from qrewrite_components.mine_search_logs import mine_search_logs
from qrewrite_components.pretrain_small_model import pretrain_small_model
from qrewrite_components.promote_champion import promote_champion
from qrewrite_components.register_challenger import register_challenger
from qrewrite_components.sft_multitask import sft_multitask
from qrewrite_components.stage_marketplace import stage_marketplace
from qrewrite_components.start_mlflow_run import start_mlflow_run
from qrewrite_components.validate_contracts import validate_contracts

__all__ = [
    "build_training_datasets",
    "end_mlflow_run",
    "evaluate_rewriter",
    "grpo_align",
    "label_rewrite_pairs",
    "mine_search_logs",
    "pretrain_small_model",
    "promote_champion",
    "register_challenger",
    "sft_multitask",
    "stage_marketplace",
    "start_mlflow_run",
    "validate_contracts",
]
