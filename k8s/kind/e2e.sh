#!/usr/bin/env bash
# End to end on a local kind cluster: create it, install Kubeflow Pipelines 2.17, Kubeflow Trainer
# v2.3.0 and the MLflow stack (k8s/overlays/kind), load the runtime image, run the pipeline at
# tiny scale with SFT on two CPU processes (a TrainJob, gloo), and check that the run succeeded,
# that no TrainJob is left and that MLflow's `champion` alias is set.
#
# Usage: k8s/kind/e2e.sh            (from anywhere; about 20-30 minutes on a laptop)
#   KEEP_CLUSTER=1   leave the cluster up afterwards (default: delete it when the run passed)
#   SKIP_BUILD=1     use the runtime image already in the local Docker engine
# Needs docker (an engine that answers), kind, kubectl, openssl and network access to GitHub
# (the KFP manifests) and the image registries; without them it says so and skips (exit 0).
set -euo pipefail
cd "$(dirname "$0")/../.."
CLUSTER="${CLUSTER:-qrewrite-e2e}"
PYTHON="${PYTHON:-.venv/bin/python}"
QREWRITE=("$PYTHON" -m qrewrite.cli)
WORK="${WORK:-out/e2e}"
KFP_PORT="${KFP_PORT:-8080}"
MLFLOW_PORT="${MLFLOW_PORT:-5000}"

skip() { echo "e2e: SKIP: $*"; exit 0; }
step() { printf '\n== e2e: %s\n' "$*"; }

# ---- what this needs, checked before anything is created -------------------------------------
for tool in docker kind kubectl openssl curl; do
  command -v "$tool" >/dev/null || skip "$tool is not installed"
done
docker info >/dev/null 2>&1 || skip "no Docker engine answers (start Docker, or dockerd as root)"
curl -sfI --max-time 10 https://github.com >/dev/null || skip "no network access to github.com (KFP's manifests)"
curl -sfI --max-time 10 https://ghcr.io/v2/ >/dev/null || curl -s --max-time 10 -o /dev/null https://ghcr.io/v2/ \
  || skip "no network access to ghcr.io (KFP's images)"
[[ -x "$PYTHON" ]] || skip "$PYTHON not found: run \`make setup\` first"
VERSION="$("$PYTHON" -c 'from qrewrite import __version__; print(__version__)')"
IMAGE="ghcr.io/qrewrite/qrewrite-runtime:$VERSION"
mkdir -p "$WORK"
pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; }
trap cleanup EXIT

# ---- cluster -------------------------------------------------------------------------------
step "kind cluster $CLUSTER"
if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config k8s/kind/cluster.yaml --wait 5m
fi
kubectl config use-context "kind-$CLUSTER"

# ---- Kubeflow Pipelines (two steps: the CRDs must exist before the rest) ----------------------
step "Kubeflow Pipelines 2.17 (platform-agnostic)"
kubectl apply -k k8s/kfp/cluster-scoped
kubectl wait --for condition=established --timeout=120s crd/applications.app.k8s.io
kubectl apply -k k8s/kfp/platform-agnostic

# ---- Kubeflow Trainer (two steps: the runtimes need the controller's webhook) -----------------
step "Kubeflow Trainer v2.3.0 (controller, JobSet, torch-distributed runtime)"
kubectl apply --server-side -k k8s/trainer/manager
kubectl -n kubeflow-system wait --for=condition=Available deployment --all --timeout=10m
kubectl apply --server-side -k k8s/trainer/runtimes

# ---- Secrets: generated here, never written to disk ------------------------------------------
step "Secrets (random credentials)"
for ns in mlflow kubeflow; do
  kubectl create namespace "$ns" --dry-run=client -o yaml | kubectl apply -f -
done
create_secret() {  # namespace name --from-literal=... ; kept if it exists (a re-run)
  local ns="$1" name="$2"; shift 2
  kubectl -n "$ns" get secret "$name" >/dev/null 2>&1 || kubectl -n "$ns" create secret generic "$name" "$@"
}
create_secret mlflow mlflow-postgres --from-literal=username=mlflow \
  --from-literal=password="$(openssl rand -hex 24)"
create_secret mlflow mlflow-minio --from-literal=access_key="mlflow$(openssl rand -hex 4)" \
  --from-literal=secret_key="$(openssl rand -hex 24)"
# the tracking server proxies artifacts and has no auth on kind: the steps' keys stay empty
create_secret kubeflow qrewrite-mlflow-credentials --from-literal=aws_access_key_id= \
  --from-literal=aws_secret_access_key= --from-literal=mlflow_tracking_username= \
  --from-literal=mlflow_tracking_password=

# ---- the runtime image -----------------------------------------------------------------------
step "runtime image $IMAGE"
if [[ -z "${SKIP_BUILD:-}" ]]; then
  make images-runtime
fi
kind load docker-image "$IMAGE" --name "$CLUSTER"

# ---- the MLflow stack and the pipeline's objects ----------------------------------------------
step "MLflow stack and pipeline objects (k8s/overlays/kind)"
kubectl apply -k k8s/overlays/kind
kubectl -n mlflow rollout status statefulset/postgres --timeout=10m
kubectl -n mlflow rollout status statefulset/minio --timeout=10m
kubectl -n mlflow wait --for=condition=complete job/minio-create-bucket --timeout=10m
kubectl -n mlflow rollout status deployment/mlflow --timeout=10m
kubectl -n kubeflow wait --for=condition=Available deployment --all --timeout=20m

# ---- the run ---------------------------------------------------------------------------------
step "compile (profile kind: no GPUs, runtime image, pretraining; preset tiny)"
"${QREWRITE[@]}" compile --profile kind --preset tiny --out "$WORK/pipeline.yaml"
kubectl -n kubeflow port-forward svc/ml-pipeline-ui "$KFP_PORT:80" >"$WORK/kfp-port-forward.log" 2>&1 &
pids+=($!)
kubectl -n mlflow port-forward svc/mlflow "$MLFLOW_PORT:5000" >"$WORK/mlflow-port-forward.log" 2>&1 &
pids+=($!)
for _ in $(seq 60); do
  curl -sf "http://localhost:$KFP_PORT/apis/v2beta1/healthz" >/dev/null && break
  sleep 2
done
# SFT on two CPU processes: the step launches a TrainJob (torch-distributed runtime, gloo)
printf 'extends: tiny\nsft:\n  processes_per_node: 2\n  distributed: ddp\n' >"$WORK/two-processes.yaml"
step "submit and wait (a margin of -1 lets the gate pass: quality means nothing at tiny scale)"
"${QREWRITE[@]}" submit --host "http://localhost:$KFP_PORT" --package "$WORK/pipeline.yaml" \
  --run-name "e2e-tiny-$(date +%Y%m%d-%H%M%S)" --param promotion_margin=-1 \
  --param config="@$WORK/two-processes.yaml" --wait 3600

step "no TrainJob left behind"
left="$(kubectl -n kubeflow get trainjobs.trainer.kubeflow.org -o name)"
[[ -z "$left" ]] || { echo "e2e: FAILED: TrainJobs left: $left"; exit 1; }

# ---- what must be true afterwards ------------------------------------------------------------
step "the champion alias in MLflow"
MLFLOW_TRACKING_URI="http://localhost:$MLFLOW_PORT" "$PYTHON" - <<'PY'
from mlflow import MlflowClient

version = MlflowClient().get_model_version_by_alias("query-rewriter", "champion")
print(f"e2e: models:/query-rewriter@champion = version {version.version} (run {version.run_id})")
PY
echo "e2e: passed"
if [[ -z "${KEEP_CLUSTER:-}" ]]; then
  kind delete cluster --name "$CLUSTER"
fi
