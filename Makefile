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

.PHONY: setup demo test lint bench bench-rewrite clean

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
	$(BIN)/qrewrite sft --config configs/local.yaml --set tasks=rewrite --datasets $(OUT)/datasets --base-model $(OUT)/models/pretrained --out $(OUT)/models/sft-single-task --no-progress
	$(BIN)/qrewrite grpo --config configs/local.yaml --datasets $(OUT)/datasets --data $(OUT)/market --model $(OUT)/models/sft --out $(OUT)/models/grpo --no-progress
	$(BIN)/qrewrite evaluate --config configs/local.yaml --data $(OUT)/market --datasets $(OUT)/datasets --labels $(OUT)/labels/labeled_pairs.parquet \
	  --baseline single-task-sft=$(OUT)/models/sft-single-task --baseline multi-task-sft=$(OUT)/models/sft \
	  --model $(OUT)/models/grpo --name multi-task-sft+grpo --champion query-rewriter --out $(OUT)/evaluation --no-progress
	$(BIN)/qrewrite register --config configs/local.yaml --model $(OUT)/models/grpo --metrics $(OUT)/evaluation/metrics.json --report $(OUT)/evaluation/report.md \
	  --data $(OUT)/market --datasets $(OUT)/datasets --contracts $(OUT)/contracts
	@# the serving table comes from the champion only; when the gate held the model there is none
	@if $(BIN)/qrewrite models --config configs/local.yaml --require-alias champion; then \
	  $(BIN)/qrewrite rewrite --config configs/local.yaml --model models:/query-rewriter@champion --queries $(OUT)/mined/query_stats.parquet --out $(OUT)/serving/rewrites.parquet --no-progress; \
	else echo "demo: no champion, so no serving table: the gate held the model (reason above and on the version's gate tag)"; fi
	@echo ""
	@echo "Demo outputs:"
	@echo "  marketplace      $(OUT)/market/   (catalog, search_log, truth/, manifest.json)"
	@echo "  mined            $(OUT)/mined/    (rewrite_candidates, query_stats; read mining_report.md)"
	@echo "  labels           $(OUT)/labels/   (labeled_pairs; quality vs truth in label_eval.md)"
	@echo "  contract reports $(OUT)/contracts/*.md"
	@echo "  Data Docs        $(OUT)/contracts/data_docs/<contract>/index.html"
	@echo "  training sets    $(OUT)/datasets/ (sft, grpo; read dataset_report.md)"
	@echo "  models           $(OUT)/models/{pretrained,sft-single-task,sft,grpo}/ (sft_report.md, grpo_report.md, curves)"
	@echo "  evaluation       $(OUT)/evaluation/report.html (ablation, simulated A/B test; metrics.json)"
	@echo "  registry         models:/query-rewriter@champion in $(MLFLOW_TRACKING_URI)"
	@echo "  serving table    $(OUT)/serving/rewrites.parquet (query -> top-k rewrites; only with a champion)"
	@echo "  MLflow           mlflow ui --backend-store-uri $(MLFLOW_TRACKING_URI)"

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check src components pipelines tests benchmarks
	$(BIN)/ruff format --check src components pipelines tests benchmarks

bench: setup
	$(BIN)/python benchmarks/bench_mining.py --scales large huge --work .bench --write docs/benchmarks.md

# batched vs one-at-a-time rewriting of the demo's model (run `make demo` first)
bench-rewrite: setup
	$(BIN)/python benchmarks/bench_rewrite.py --model $(OUT)/models/grpo --data $(OUT) --write docs/benchmarks.md

clean:
	rm -rf out .bench .pytest_cache .ruff_cache
