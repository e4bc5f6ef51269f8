"""The images the components run in, named in one place.

One image per role, tagged with the package version, so a release's compiled pipeline runs the
code of that release (``make images`` builds them with these names). Override at compile time
with ``QREWRITE_IMAGE_REGISTRY`` / ``QREWRITE_IMAGE_TAG`` (``qrewrite compile --image-registry
--image-tag`` sets them); they are read when this module is first imported.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from qrewrite import __version__

REGISTRY = os.environ.get("QREWRITE_IMAGE_REGISTRY", "ghcr.io/qrewrite")
TAG = os.environ.get("QREWRITE_IMAGE_TAG", __version__)
# data, labeling, evaluation and registry steps
RUNTIME_IMAGE = f"{REGISTRY}/qrewrite-runtime:{TAG}"
# SFT and GRPO (CUDA, vLLM)
TRAINING_IMAGE = f"{REGISTRY}/qrewrite-training:{TAG}"


def use_images(
    registry: str | None = None, tag: str | None = None, rename: dict[str, str] | None = None
) -> dict[str, str]:
    """Point every component at ``registry``/``tag`` (compile time); returns image -> new image.
    ``rename`` swaps image names, e.g. the CPU runtime image for the CUDA training image on a
    cluster without GPUs.

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
        image_name = (rename or {}).get(image_name, image_name)
        new = f"{registry or REGISTRY}/{image_name}:{tag or old_tag}"
        changed[container.image] = new
        container.image = new
    return changed


@contextmanager
def component_images(
    registry: str | None = None, tag: str | None = None, rename: dict[str, str] | None = None
) -> Iterator[dict[str, str]]:
    """``use_images`` for the pipeline built inside the block; the components' images are put
    back after it (tasks copy their component's image when the pipeline is built)."""
    import qrewrite_components as package

    containers = [
        getattr(package, name).component_spec.implementation.container for name in package.__all__
    ]
    before = [c.image for c in containers]
    try:
        yield use_images(registry, tag, rename)
    finally:
        for container, image in zip(containers, before, strict=True):
            container.image = image
