"""The MLflow model registry: ``config`` (options, aliases), ``lineage`` (where a model came
from), ``gate`` (the promotion gate), ``registry`` (register, promote, roll back), ``resolve``
(a model by path or registry URI), ``client`` (the MLflow client) and ``pyfunc`` (the packaged
model)."""
