#!/usr/bin/env bash
# `make test-containers`: build the runtime image offline and run the pipeline in it.
#   1. a base image: BASE_IMAGE if given, else debootstrap + docker import (no registry needed);
#   2. a wheelhouse (.wheelhouse/) from this machine's package index, so the build needs no network;
#   3. the runtime image, tagged as the components name it (components/images.py);
#   4. checks inside it: the non-root user, the CLI, the contracts;
#   5. the MLflow server with the manifest's command on a real PostgreSQL (where Debian's
#      postgresql is installed), read-only root filesystem, Host-header checks;
#   6. the whole pipeline at tiny scale with every step in the image (kfp.local DockerRunner).
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

step "the MLflow server as k8s/base/mlflow/mlflow.yaml runs it, on PostgreSQL"
initdb=""
for candidate in /usr/lib/postgresql/*/bin/initdb; do [[ -x "$candidate" ]] && initdb="$candidate"; done
if [[ -z "$initdb" || "$(id -u)" != 0 ]] || ! command -v kubectl >/dev/null; then
  echo "skipped: needs root, Debian's postgresql and kubectl (apt-get install postgresql)"
else
  pgbin="$(dirname "$initdb")"
  pgdir="$(mktemp -d)"
  pgport=55432
  mlport=55000
  stop_mlflow_check() {
    docker rm -f qrewrite-mlflow-check >/dev/null 2>&1 || true
    su postgres -c "$pgbin/pg_ctl -D $pgdir/data stop" >/dev/null 2>&1 || true
    rm -rf "$pgdir"
  }
  trap stop_mlflow_check EXIT
  chown postgres "$pgdir"
  openssl rand -hex 16 > "$pgdir/pw"
  chmod 644 "$pgdir/pw"
  su postgres -c "$pgbin/initdb -D $pgdir/data -U mlflow --auth=scram-sha-256 --pwfile=$pgdir/pw" >/dev/null
  su postgres -c "$pgbin/pg_ctl -D $pgdir/data -w -l $pgdir/log -o '-p $pgport -k $pgdir -c listen_addresses=127.0.0.1' start" >/dev/null
  PGPASSWORD="$(cat "$pgdir/pw")" psql -q -h 127.0.0.1 -p "$pgport" -U mlflow -d postgres -c "create database mlflow"
  # the container exactly as the kind overlay renders it: its command, args and literal env; the
  # Secrets' values come from here; the Service ports become this machine's free ports
  kubectl kustomize k8s/overlays/kind | "$PYTHON" -c "
import sys, yaml
for d in yaml.safe_load_all(sys.stdin):
    if d and d['kind'] == 'Deployment' and d['metadata']['name'] == 'mlflow':
        c = d['spec']['template']['spec']['containers'][0]
        print(c['args'][0].replace('@postgres:5432/', '@postgres:$pgport/').replace('--port 5000', '--port $mlport'))
        for e in c['env']:
            if 'value' in e:
                print(f\"{e['name']}={e['value']}\", file=open('$pgdir/env', 'a'))
" > "$pgdir/args"
  docker run -d --name qrewrite-mlflow-check --network host --add-host postgres:127.0.0.1 \
    --read-only --tmpfs /tmp --env-file "$pgdir/env" -e PGUSER=mlflow \
    -e PGPASSWORD="$(cat "$pgdir/pw")" -e AWS_ACCESS_KEY_ID=unused -e AWS_SECRET_ACCESS_KEY=unused \
    "$IMAGE" sh -ec "$(cat "$pgdir/args")" >/dev/null
  api="http://127.0.0.1:$mlport/api/2.0/mlflow/experiments/search?max_results=1"
  for _ in $(seq 60); do
    curl -sf -o /dev/null -H "Host: localhost" "http://127.0.0.1:$mlport/health" && break
    sleep 2
  done
  code() { curl -s -o /dev/null -w '%{http_code}' -H "Host: $1" "$api"; }
  [[ "$(code mlflow.mlflow.svc.cluster.local:5000)" == 200 ]] \
    || { docker logs qrewrite-mlflow-check | tail -20; echo "test-containers: the in-cluster name is refused" >&2; exit 1; }
  [[ "$(code evil.example.com)" == 403 ]] \
    || { echo "test-containers: an unknown Host header is served (MLFLOW_SERVER_ALLOWED_HOSTS)" >&2; exit 1; }
  tables="$(PGPASSWORD="$(cat "$pgdir/pw")" psql -tA -h 127.0.0.1 -p "$pgport" -U mlflow -d mlflow \
    -c "select count(*) from information_schema.tables where table_schema = 'public'")"
  echo "mlflow server: up on PostgreSQL ($tables tables), read-only root filesystem, in-cluster Host 200, unknown Host 403"
  stop_mlflow_check
  trap - EXIT
fi

step "the tiny pipeline, every step in $IMAGE (kfp.local DockerRunner)"
rm -rf "$OUT"
time "$PYTHON" -m qrewrite.cli run --local --runner docker --config configs/tiny.yaml \
  --out "$OUT" --promotion-margin -1
echo "test-containers: passed"
