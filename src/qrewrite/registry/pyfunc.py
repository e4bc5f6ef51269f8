"""The MLflow pyfunc model: merged weights and tokenizer as an artifact, ``predict`` on a
DataFrame of queries.

``mlflow.transformers`` cannot log transformers 5 checkpoints (docs/evaluation.md); a
``PythonModel`` wrapping :class:`qrewrite.serving.rewriter.Rewriter` can, and serves exactly the
code path evaluation measured.
"""

from __future__ import annotations

from typing import Any

import mlflow.pyfunc
import pandas as pd

from qrewrite import __version__
from qrewrite.serving.rewriter import GenerationSettings, Rewriter

MODEL_ARTIFACT = "model"  # the key of the weights folder in the pyfunc's artifacts
DEFAULT_K = 3


def signature() -> Any:
    """Input: column ``query``; output: the top-k ``rewrites`` with their ``grades`` (0, 1, 2,
    the model's own tagging) and ``scores``; parameter ``k``."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "query")]),
        outputs=Schema(
            [
                ColSpec("string", "query"),
                ColSpec(Array("string"), "rewrites"),
                ColSpec(Array("long"), "grades"),
                ColSpec(Array("double"), "scores"),
            ]
        ),
        params=ParamSchema([ParamSpec("k", "long", DEFAULT_K)]),
    )


class QueryRewriterModel(mlflow.pyfunc.PythonModel):
    """``predict(DataFrame[query], params={"k": 3})`` returns a DataFrame of ``query``,
    ``rewrites``, ``grades`` and ``scores``, one row per input query."""

    def load_context(self, context: Any) -> None:
        settings = GenerationSettings(**(context.model_config or {}).get("generation", {}))
        self.rewriter = Rewriter.from_dir(context.artifacts[MODEL_ARTIFACT], settings)

    # no type hints on predict: MLflow would read them as a schema; the signature is explicit
    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "query" not in frame.columns:
            raise ValueError(
                f"query-rewriter: input has columns {list(frame.columns)}; expected 'query'"
            )
        queries = frame["query"].astype(str).tolist()
        k = int((params or {}).get("k", DEFAULT_K))
        ranked = self.rewriter.rewrite(queries, k=k)
        return pd.DataFrame(
            {
                "query": queries,
                "rewrites": [[r.text for r in row] for row in ranked],
                "grades": [[r.grade for r in row] for row in ranked],
                "scores": [[round(r.score, 4) for r in row] for row in ranked],
            }
        )


def pip_requirements() -> list[str]:
    """What a serving environment needs; the project's own images ship them (issue: containers)."""
    import torch
    import transformers

    return [
        f"qrewrite=={__version__}",
        f"torch=={torch.__version__.split('+')[0]}",
        f"transformers=={transformers.__version__}",
        f"mlflow=={mlflow.__version__}",
    ]
