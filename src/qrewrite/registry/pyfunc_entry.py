"""Models-from-code entry point of the query-rewriter pyfunc model.

MLflow copies this file into the logged model and runs it at load time, so the registry stores
code that imports the installed ``qrewrite`` instead of a pickled Python object.
"""

import mlflow

from qrewrite.registry.pyfunc import QueryRewriterModel

mlflow.models.set_model(QueryRewriterModel())
