"""The MLflow model registry: pyfunc packaging, register, gate, promote, roll back."""
