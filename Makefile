# One command each on a fresh machine: `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The CPU wheel of this torch version is installed first so that nothing pulls a CUDA build.
TORCH_VERSION ?= 2.13.0
OUT    ?= out/demo
# Images: tagged with the package version, the tag components/images.py names
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE_REGISTRY      ?= ghcr.io/qrewrite
RUNTIME_BASE_IMAGE  ?= docker.io/library/python:3.12-slim-bookworm
TRAINING_BASE_IMAGE ?= docker.io/nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
DOCKER_BUILD_ARGS   ?=

.PHONY: setup lock demo test test-serving-env test-distributed lint bench bench-mining-sizing bench-determinism bench-quality bench-quality-training bench-rewrite bench-serving bench-teacher bench-judged bench-judged-scale bench-training images images-runtime images-training test-containers clean

# Exact versions of everything installed (pip-tools' compiled requirements of pyproject.toml):
# `make setup`, CI and both images install under it, so two machines a week apart train with the
# same packages. `make lock` refreshes it after pyproject.toml changes (tests check it covers
# pyproject's dependencies).
LOCK   := requirements.lock

$(STAMP): pyproject.toml $(LOCK)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet --constraint $(LOCK) -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# torch is locked at TORCH_VERSION without a local build tag: the CPU wheel here, a CUDA build there
lock:
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "pip-tools>=7.4,<8"
	echo "torch==$(TORCH_VERSION)" > $(VENV)/torch-constraint.txt
	$(BIN)/pip-compile --quiet --extra dev --extra server --strip-extras --no-emit-index-url \
	  --no-emit-find-links --constraint $(VENV)/torch-constraint.txt -o $(LOCK) pyproject.toml
	sed -i 's/^torch==\([^+]*\)+.*/torch==\1/' $(LOCK)

# The Kubeflow pipeline through kfp.local: data -> train -> evaluate-and-promote (docs/operations.md).
# MLflow: $(OUT)/mlflow/mlflow.db unless MLFLOW_TRACKING_URI is set.
demo: setup
	$(BIN)/qrewrite run --local --config configs/local.yaml --out $(OUT)

test: setup
	$(BIN)/python -m pytest -q

# the registered model's requirements in a fresh virtual environment, as a serving image builds
# it (2-3 min; CI runs it after `make test`)
test-serving-env: setup
	QREWRITE_TEST_SERVING_ENV=1 $(BIN)/python -m pytest -q tests/registry/test_served_model.py -k clean_environment

# the distributed SFT path under FSDP on two CPU processes (about 40 s; CI runs it after `make test`)
test-distributed: setup
	QREWRITE_TEST_FSDP=1 $(BIN)/python -m pytest -q tests/training/test_distributed_sft.py

lint: setup
	$(BIN)/ruff check src components pipelines tests benchmarks
	$(BIN)/ruff format --check src components pipelines tests benchmarks

bench: setup
	$(BIN)/python benchmarks/bench_mining.py --scales large huge --work .bench --write docs/benchmarks.md

# mining at huge on one and two DuckDB threads and under memory limits below the data (5 runs, ~5 min)
bench-mining-sizing: setup
	$(BIN)/python benchmarks/bench_mining.py --sizing --scales huge --work .bench --write docs/benchmarks.md

# The data steps under the numpy/torch kernels and threads other CPUs pick: the same data? (~2 min)
bench-determinism: setup
	$(BIN)/python benchmarks/bench_determinism.py --work .bench/determinism --write docs/benchmarks.md

# The rewriter's quality across seeds: one full `qrewrite run --local --ablation` per seed (11-12 min each)
bench-quality: setup
	$(BIN)/python benchmarks/bench_quality.py --vary market --seeds 7 11 13 --ablation --write docs/benchmarks.md
	$(BIN)/python benchmarks/rewrite_errors.py --runs .bench/quality/market-seed7 .bench/quality/market-seed11 .bench/quality/market-seed13 --commit $$(git rev-parse --short HEAD) --write docs/benchmarks.md
	$(BIN)/python benchmarks/copies.py --runs .bench/quality/market-seed7 .bench/quality/market-seed11 .bench/quality/market-seed13 --commit $$(git rev-parse --short HEAD) --write docs/benchmarks.md
	$(BIN)/python benchmarks/candidate_ranking.py --runs .bench/quality/market-seed7 .bench/quality/market-seed11 .bench/quality/market-seed13 --commit $$(git rev-parse --short HEAD) --write docs/benchmarks.md

# ... with the marketplace fixed at the preset's seed and the training seeds varied
bench-quality-training: setup
	$(BIN)/python benchmarks/bench_quality.py --vary training --seeds 101 102 103 --write docs/benchmarks.md

# the teacher against human judgments (JUDGED=<file>, default the shared crowdflower set; 1-2 min)
JUDGED ?= ../shared/data/crowdflower/crowdflower_train.tsv
bench-teacher: setup
	$(BIN)/python benchmarks/bench_teacher.py --input $(JUDGED) --write docs/benchmarks.md

# the whole pipeline on a human-judged set, measured on people's grades (about 10 min)
JUDGED_SCALE ?= numeric:1:4
bench-judged: setup
	$(BIN)/python benchmarks/bench_judged.py --input $(JUDGED) --grade-scale $(JUDGED_SCALE) --write docs/benchmarks.md
	$(BIN)/python benchmarks/page_vetter.py --work .bench/judged --write docs/benchmarks.md

# the judged path at the size of the public sets (9,400 queries, ~64,000 judged pairs), on a
# set made from the simulator: its speed at that size, not its quality (about half an hour)
bench-judged-scale: setup
	$(BIN)/python benchmarks/make_judged_set.py --out .bench/judged-scale-set/judged.tsv
	$(BIN)/python benchmarks/bench_judged.py --input .bench/judged-scale-set/judged.tsv --grade-scale numeric:1:3 --work .bench/judged-scale --market .bench/judged-scale-set/market --name judged-scale --write docs/benchmarks.md
	$(BIN)/python benchmarks/page_vetter.py --work .bench/judged-scale --market .bench/judged-scale-set/market --write docs/benchmarks.md

# batched vs one-at-a-time rewriting of the demo's model (run `make demo` first)
bench-rewrite: setup
	$(BIN)/python benchmarks/bench_rewrite.py --model $(OUT)/latest/grpo-align/model --data $(OUT)/latest/mine-search-logs --write docs/benchmarks.md

# the champion behind `mlflow models serve`, over HTTP: latency p50/p99 and batch throughput
# (run `make demo` first; about 2 min)
bench-serving: setup
	$(BIN)/python benchmarks/bench_serving.py --tracking-uri sqlite:///$(OUT)/mlflow/mlflow.db --queries $(OUT)/latest/mine-search-logs/mined/query_stats.parquet --write docs/benchmarks.md

# GPU throughput through the library (SFT tokens/s, GRPO steps/s, rewriting); on a GPU node
bench-training: setup
	$(BIN)/python benchmarks/bench_training.py --write docs/benchmarks.md

# The two component images (containers/Dockerfile); docs/operations.md, "Images"
images: images-runtime images-training

images-runtime:
	docker build -f containers/Dockerfile --build-arg BASE_IMAGE=$(RUNTIME_BASE_IMAGE) \
	  --build-arg EXTRAS=server --build-arg IMAGE_TITLE=qrewrite-runtime --build-arg VERSION=$(VERSION) \
	  $(DOCKER_BUILD_ARGS) -t $(IMAGE_REGISTRY)/qrewrite-runtime:$(VERSION) .

# vLLM pins the CUDA torch it was built with: no torch of our own (TORCH_VERSION empty)
images-training:
	docker build -f containers/Dockerfile --build-arg BASE_IMAGE=$(TRAINING_BASE_IMAGE) \
	  --build-arg TORCH_VERSION= --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 \
	  --build-arg EXTRAS=vllm --build-arg LOCK_SKIP='torch|torchvision|torchaudio|triton|xformers' \
	  --build-arg IMAGE_TITLE=qrewrite-training --build-arg VERSION=$(VERSION) \
	  $(DOCKER_BUILD_ARGS) -t $(IMAGE_REGISTRY)/qrewrite-training:$(VERSION) .

# Opt-in: build the runtime image offline and run the tiny pipeline in it (needs a Docker engine)
test-containers: setup
	IMAGE_REGISTRY=$(IMAGE_REGISTRY) bash containers/test-containers.sh

clean:
	rm -rf out .bench .pytest_cache .ruff_cache .wheelhouse
