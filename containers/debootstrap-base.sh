#!/usr/bin/env bash
# A Debian base image made without pulling from a registry: debootstrap a minimal bookworm with
# python3 and python3-venv, then `docker import` it. For machines that reach Debian's package
# mirror but no image registry (`make test-containers`); pass its tag as BASE_IMAGE.
# Usage: containers/debootstrap-base.sh [TAG]   (as root; needs debootstrap and a Docker engine)
set -euo pipefail
tag="${1:-qrewrite-base:bookworm}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
if docker image inspect "$tag" >/dev/null 2>&1; then
  echo "debootstrap-base: $tag exists; docker rmi it to rebuild"
  exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap-base: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }
root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$root" "$mirror"
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin
tar -C "$root" -c . | docker import - "$tag"
echo "debootstrap-base: built $tag"
