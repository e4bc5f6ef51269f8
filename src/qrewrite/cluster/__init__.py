"""Training on the cluster's own engine: Kubeflow Trainer v2 ``TrainJob``s for the training steps
that ask for more than one process (``trainjob``: render, run, always delete; ``launch``: a
step's inputs, settings and model folder to and from the job). Knows Kubernetes, not Kubeflow
Pipelines: the components call it."""
