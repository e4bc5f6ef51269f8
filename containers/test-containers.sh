#!/usr/bin/env bash
# `make test-containers`: build the runtime image offline and run the pipeline in it.
#   1. a base image: BASE_IMAGE if given, else debootstrap + docker import (no registry needed);
#   2. a wheelhouse (.wheelhouse/) from this machine's package index, so the build needs no network;
#   3. the runtime image, tagged as the components name it (components/images.py);
#   4. checks inside it: the non-root user, the CLI, the contracts;
#   5. the whole pipeline at tiny scale with every step in the image (kfp.local DockerRunner).
# Needs a running Docker engine (Debian's docker.io starts with `dockerd &` as root).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
VERSION="$("$PYTHON" -c 'from qrewrite import __version__; print(__version__)')"
REGISTRY="${IMAGE_REGISTRY:-ghcr.io/qrewrite}"
IMAGE="$REGISTRY/qrewrite-runtime:$VERSION"
BASE_IMAGE="${BASE_IMAGE:-qrewrite-base:bookworm}"
OUT="${OUT:-out/containers}"

if ! docker info >/dev/null 2>&1; then
  echo "test-containers: no Docker engine answers at ${DOCKER_HOST:-/var/run/docker.sock};" \
       "start one (as root: dockerd &) and run again" >&2
  exit 2
fi
step() { printf '\n== test-containers: %s\n' "$*"; }

if [[ "$BASE_IMAGE" == qrewrite-base:* ]]; then
  step "base image $BASE_IMAGE (debootstrap)"
  containers/debootstrap-base.sh "$BASE_IMAGE"
fi

step "wheelhouse .wheelhouse/ (torch CPU and every dependency of .[server])"
"$PYTHON" -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print('\n'.join(p['dependencies'] + p['optional-dependencies']['server']))" > .wheelhouse.req
"$PYTHON" -m pip download -q -d .wheelhouse "torch==${TORCH_VERSION:-2.13.0}" -r .wheelhouse.req \
  "setuptools>=69" wheel 2>&1 | grep -v "^WARNING: Location" || true
rm -f .wheelhouse.req

step "build $IMAGE from $BASE_IMAGE, offline"
time docker build -f containers/Dockerfile \
  --build-arg BASE_IMAGE="$BASE_IMAGE" \
  --build-arg WHEELHOUSE=.wheelhouse \
  --build-arg PIP_NO_INDEX=1 \
  --build-arg VERSION="$VERSION" \
  -t "$IMAGE" .
docker image ls "$IMAGE"

step "inside the image: user, CLI, data contracts"
uid="$(docker run --rm "$IMAGE" id -u)"
[[ "$uid" == 1000 ]] || { echo "test-containers: the image runs as uid $uid, expected 1000" >&2; exit 1; }
docker run --rm "$IMAGE" qrewrite --help >/dev/null
docker run --rm "$IMAGE" python -c "
from qrewrite.contracts import available_contracts, contracts_dir
names = available_contracts()
assert {'catalog', 'search_log', 'labeled_pairs'} <= set(names), names
print('contracts in', contracts_dir(), ':', ', '.join(names))"

step "the tiny pipeline, every step in $IMAGE (kfp.local DockerRunner)"
rm -rf "$OUT"
time "$PYTHON" -m qrewrite.cli run --local --runner docker --config configs/tiny.yaml \
  --out "$OUT" --promotion-margin -1
echo "test-containers: passed"
