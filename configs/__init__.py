"""The presets, installed as the package ``qrewrite_presets`` so that the images and a pipeline
run find them by name (``config: cluster``) without a checkout of this repository."""
