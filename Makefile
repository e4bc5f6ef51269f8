# One command each on a fresh machine: `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The CPU wheel of this torch version is installed first so that nothing pulls a CUDA build.
TORCH_VERSION ?= 2.13.0
OUT    ?= out/demo

.PHONY: setup demo test lint bench bench-rewrite clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

# The Kubeflow pipeline through kfp.local: data -> train -> evaluate-and-promote (docs/operations.md).
# MLflow: $(OUT)/mlflow/mlflow.db unless MLFLOW_TRACKING_URI is set.
demo: setup
	$(BIN)/qrewrite run --local --config configs/local.yaml --out $(OUT)

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src components pipelines tests benchmarks
	$(BIN)/ruff format --check src components pipelines tests benchmarks

bench: setup
	$(BIN)/python benchmarks/bench_mining.py --scales large huge --work .bench --write docs/benchmarks.md

# batched vs one-at-a-time rewriting of the demo's model (run `make demo` first)
bench-rewrite: setup
	$(BIN)/python benchmarks/bench_rewrite.py --model $(OUT)/latest/grpo-align/model --data $(OUT)/latest/mine-search-logs --write docs/benchmarks.md

clean:
	rm -rf out .bench .pytest_cache .ruff_cache
