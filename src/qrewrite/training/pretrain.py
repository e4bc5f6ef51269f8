"""``qrewrite pretrain``: a tokenizer and a small Qwen2 trained from scratch on the shop's own text.

The published system starts from a model pretrained on the shop's data; the local preset gets the
same start in about a minute of CPU: catalog titles, mined queries and mined rewrites as a
language-modelling corpus (queries of the eval split are left out). The cluster preset skips this
step and starts SFT from a real instruct model on a mounted volume.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from qrewrite import __version__
from qrewrite.errors import DataError
from qrewrite.tables import read_parquet_table
from qrewrite.text import normalize_query
from qrewrite.training.common import (
    edge_means,
    plot_curves,
    quiet_libraries,
    quiet_trainer,
    series,
    tokens_seen,
    trainer_arguments,
)
from qrewrite.training.models import ModelShape, build_small_model, save_model, train_tokenizer
from qrewrite.training.tracking import DEFAULT_TRACKING_URI, mlflow_callback, mlflow_run

log = logging.getLogger(__name__)


@dataclass
class PretrainConfig:
    """Tokenizer, model size and training of ``qrewrite pretrain`` (section ``pretrain:``)."""

    seed: int = 7
    vocab_size: int = 4000
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_length: int = 64  # tokens per packed block
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    batch_size: int = 32
    gradient_accumulation_steps: int = 1
    learning_rate: float = 3e-3
    warmup_steps: int = 10
    logging_steps: int = 5
    precision: str = "auto"
    gradient_checkpointing: bool = False
    tracking_uri: str = DEFAULT_TRACKING_URI
    experiment: str = "qrewrite"

    def shape(self) -> ModelShape:
        return ModelShape(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_hidden_layers,
            num_attention_heads=self.num_attention_heads,
            num_key_value_heads=self.num_key_value_heads,
            max_position_embeddings=max(256, 4 * self.max_length),
        )


def domain_corpus(data_dir: Path, mined_dir: Path, exclude_queries: set[str]) -> list[str]:
    """Titles, queries and rewrites, deduplicated; texts of ``exclude_queries`` left out."""
    catalog = read_parquet_table(data_dir / "catalog.parquet", "catalog").to_pandas()
    stats = read_parquet_table(
        mined_dir / "query_stats.parquet", "query stats", "run `qrewrite mine` first"
    ).to_pandas()
    cands = read_parquet_table(
        mined_dir / "rewrite_candidates.parquet", "rewrite candidates", "run `qrewrite mine` first"
    ).to_pandas()
    texts = [*catalog["title"], *stats["query"], *cands["rewrite"]]
    corpus = [
        t
        for t in dict.fromkeys(str(t) for t in texts)
        if t.strip() and normalize_query(t) not in exclude_queries
    ]
    if not corpus:
        raise DataError(f"{data_dir}: no titles or queries to pretrain on")
    return corpus


def eval_queries(datasets_dir: Path | None) -> set[str]:
    """Normalised queries of the eval splits, which pretraining must not see."""
    if datasets_dir is None:
        return set()
    from datasets import load_from_disk

    out: set[str] = set()
    for name in ("sft", "grpo"):
        path = datasets_dir / name
        if (path / "dataset_dict.json").exists():
            out |= {normalize_query(q) for q in load_from_disk(str(path))["eval"]["query"]}
    return out


def pretrain(
    config: PretrainConfig,
    data_dir: str | Path,
    mined_dir: str | Path,
    out_dir: str | Path,
    datasets_dir: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the tokenizer and the model; save a model directory to ``out_dir``; return a report."""
    quiet_libraries()
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    out = Path(out_dir)
    excluded = eval_queries(Path(datasets_dir) if datasets_dir else None)
    corpus = domain_corpus(Path(data_dir), Path(mined_dir), excluded)
    t0 = time.perf_counter()
    tokenizer = train_tokenizer(corpus, config.vocab_size)
    model = build_small_model(tokenizer, config.shape(), config.seed)
    eos = tokenizer.eos_token
    dataset = Dataset.from_dict({"text": [t + eos for t in corpus]}).shuffle(seed=config.seed)
    args = SFTConfig(
        **trainer_arguments(config, out / "checkpoints", progress),
        max_length=config.max_length,
        packing=True,
        packing_strategy="wrapped",  # classic LM pretraining: a stream cut into blocks
        save_strategy="no",
        dataset_text_field="text",
    )
    with mlflow_run(config.tracking_uri, config.experiment, "pretrain", config) as run:
        import mlflow

        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=dataset,
            processing_class=tokenizer,
            callbacks=[mlflow_callback("pretrain")],
        )
        quiet_trainer(trainer, progress)
        result = trainer.train()
        seconds = time.perf_counter() - t0
        losses = series(trainer.state.log_history, "loss")
        first, last = edge_means([v for _, v in losses])
        n_params = sum(p.numel() for p in model.parameters())
        tokens = tokens_seen(trainer.state.log_history)
        report = {
            "qrewrite_version": __version__,
            "config": asdict(config),
            "corpus_texts": len(corpus),
            "excluded_eval_queries": len(excluded),
            "vocab_size": len(tokenizer),
            "parameters": n_params,
            "steps": int(result.global_step),
            "train_seconds": round(seconds, 1),
            "loss_first_20pct": first,
            "loss_last_20pct": last,
            "mlflow_run_id": run.info.run_id,
        }
        mlflow.log_metrics(
            {
                "pretrain/loss_first_20pct": first,
                "pretrain/loss_last_20pct": last,
                "pretrain/parameters": n_params,
            }
        )
        report["tokens_seen"] = tokens
        report["tokens_per_second"] = round(tokens / seconds, 1) if tokens else None
        save_model(trainer.model, tokenizer, out, {"step": "pretrain", **report})
        plot_curves({"loss": losses}, "Domain pretraining loss", out / "pretrain_loss.png")
        (out / "pretrain_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
