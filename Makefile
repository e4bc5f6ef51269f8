# One command each on a fresh machine: `make demo`, `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The CPU wheel of this torch version is installed first so that nothing pulls a CUDA build.
TORCH_VERSION ?= 2.13.0
OUT    ?= out/demo
# The demo's training steps log here unless the environment points at a tracking server.
MLFLOW_TRACKING_URI ?= sqlite:///$(OUT)/mlflow/mlflow.db

.PHONY: setup demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==$(TORCH_VERSION)"
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: export MLFLOW_TRACKING_URI := $(MLFLOW_TRACKING_URI)
demo: setup
	$(BIN)/qrewrite synth --config configs/local.yaml --out $(OUT)/market
	$(BIN)/qrewrite validate --contract catalog --data $(OUT)/market/catalog.parquet --report $(OUT)/contracts
	$(BIN)/qrewrite validate --contract search_log --data $(OUT)/market/search_log.parquet --report $(OUT)/contracts
	$(BIN)/qrewrite mine --config configs/local.yaml --data $(OUT)/market --out $(OUT)/mined
	$(BIN)/qrewrite validate --contract rewrite_candidates --data $(OUT)/mined/rewrite_candidates.parquet --report $(OUT)/contracts
	$(BIN)/qrewrite validate --contract query_stats --data $(OUT)/mined/query_stats.parquet --report $(OUT)/contracts
	$(BIN)/qrewrite label --config configs/local.yaml --data $(OUT)/market --candidates $(OUT)/mined/rewrite_candidates.parquet --out $(OUT)/labels/labeled_pairs.parquet
	$(BIN)/qrewrite validate --contract labeled_pairs --data $(OUT)/labels/labeled_pairs.parquet --report $(OUT)/contracts
	$(BIN)/qrewrite label-eval --data $(OUT)/market --labels $(OUT)/labels/labeled_pairs.parquet --report $(OUT)/labels > /dev/null
	$(BIN)/qrewrite build-datasets --config configs/local.yaml --data $(OUT)/market --mined $(OUT)/mined --labels $(OUT)/labels/labeled_pairs.parquet --out $(OUT)/datasets --report $(OUT)/contracts
	$(BIN)/qrewrite pretrain --config configs/local.yaml --data $(OUT)/market --mined $(OUT)/mined --datasets $(OUT)/datasets --out $(OUT)/models/pretrained --no-progress
	$(BIN)/qrewrite sft --config configs/local.yaml --datasets $(OUT)/datasets --base-model $(OUT)/models/pretrained --out $(OUT)/models/sft --no-progress
	$(BIN)/qrewrite grpo --config configs/local.yaml --datasets $(OUT)/datasets --data $(OUT)/market --model $(OUT)/models/sft --out $(OUT)/models/grpo --no-progress
	@echo ""
	@echo "Demo outputs:"
	@echo "  marketplace      $(OUT)/market/   (catalog, search_log, truth/, manifest.json)"
	@echo "  mined            $(OUT)/mined/    (rewrite_candidates, query_stats; read mining_report.md)"
	@echo "  labels           $(OUT)/labels/   (labeled_pairs; quality vs truth in label_eval.md)"
	@echo "  contract reports $(OUT)/contracts/*.md"
	@echo "  Data Docs        $(OUT)/contracts/data_docs/<contract>/index.html"
	@echo "  training sets    $(OUT)/datasets/ (sft, grpo; read dataset_report.md)"
	@echo "  models           $(OUT)/models/{pretrained,sft,grpo}/ (sft_report.md, grpo_report.md, curves)"
	@echo "  MLflow           mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI)"

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

bench: setup
	$(BIN)/python benchmarks/bench_mining.py --scales large huge --work .bench --write docs/benchmarks.md

clean:
	rm -rf out .bench .pytest_cache .ruff_cache
