"""The qrewrite Kubeflow pipeline: sub-pipelines (data, train, evaluate-and-promote) wired from
the components, one public pipeline, and how it is run (locally with ``kfp.local``, compiled
for the Kubeflow UI, submitted or scheduled on a cluster). Installed as ``qrewrite_pipelines``.
"""
