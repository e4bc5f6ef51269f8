"""The images the components run in, named in one place.

One image per role, tagged with the package version, so a release's compiled pipeline runs the
code of that release (``make images`` builds them with these names). Override at compile time
with ``QREWRITE_IMAGE_REGISTRY`` / ``QREWRITE_IMAGE_TAG`` (``qrewrite compile --image-registry
--image-tag`` sets them); they are read when this module is first imported.
"""

from __future__ import annotations

import os

from qrewrite import __version__

REGISTRY = os.environ.get("QREWRITE_IMAGE_REGISTRY", "ghcr.io/qrewrite")
TAG = os.environ.get("QREWRITE_IMAGE_TAG", __version__)
# data, labeling, evaluation and registry steps
RUNTIME_IMAGE = f"{REGISTRY}/qrewrite-runtime:{TAG}"
# SFT and GRPO (CUDA, vLLM)
TRAINING_IMAGE = f"{REGISTRY}/qrewrite-training:{TAG}"


def use_images(registry: str | None = None, tag: str | None = None) -> dict[str, str]:
    """Point every component at ``registry``/``tag`` (compile time); returns image -> new image.

    Components fix their image when they are defined; this rewrites it on the already-defined
    components, so it works however the package was imported.
    """
    import qrewrite_components as package

    changed: dict[str, str] = {}
    for name in package.__all__:
        spec = getattr(package, name).component_spec
        container = spec.implementation.container
        repo_tag = container.image.rsplit("/", 1)[-1]
        image_name, _, old_tag = repo_tag.partition(":")
        new = f"{registry or REGISTRY}/{image_name}:{tag or old_tag}"
        changed[container.image] = new
        container.image = new
    return changed
