"""Serving: batched rewrite generation, the batch export table, the MLflow pyfunc model."""
