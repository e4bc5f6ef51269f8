"""The images the components run in, named in one place.

One image per role, tagged with the package version, so a release's compiled pipeline runs the
code of that release (``make images`` builds them with these names). The defaults can be
overridden with ``QREWRITE_IMAGE_REGISTRY`` / ``QREWRITE_IMAGE_TAG``, read when this module is
first imported. A build of the pipeline can also pick another registry, tag or image per step
(``qrewrite compile --image-registry --image-tag``, a kind cluster's CPU-only images):
``image_for`` names that image, and the pipeline sets it on each task (``platform.on_cluster``)
so the components themselves keep the image they were defined with.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from qrewrite import __version__

REGISTRY = os.environ.get("QREWRITE_IMAGE_REGISTRY", "ghcr.io/qrewrite")
TAG = os.environ.get("QREWRITE_IMAGE_TAG", __version__)
# data, labeling, evaluation and registry steps
RUNTIME_IMAGE = f"{REGISTRY}/qrewrite-runtime:{TAG}"
# SFT and GRPO (CUDA, vLLM)
TRAINING_IMAGE = f"{REGISTRY}/qrewrite-training:{TAG}"


def image_for(
    defined: str,
    *,
    registry: str | None = None,
    tag: str | None = None,
    rename: Mapping[str, str] | None = None,
) -> str:
    """The image a step whose component was defined with image ``defined`` runs in.

    ``registry`` replaces the defined one (default: ``REGISTRY``), ``tag`` the defined tag
    (default: keep it), and ``rename`` swaps image names, e.g. the CPU runtime image for the
    CUDA training image on a cluster without GPUs.
    """
    repo_tag = defined.rsplit("/", 1)[-1]
    name, _, defined_tag = repo_tag.partition(":")
    name = (rename or {}).get(name, name)
    return f"{registry or REGISTRY}/{name}:{tag or defined_tag}"
