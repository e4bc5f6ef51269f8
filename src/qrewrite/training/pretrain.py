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
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from qrewrite import __version__
from qrewrite.errors import ConfigError, DataError
from qrewrite.outputs import check_output, staged_output
from qrewrite.tables import read_parquet_table
from qrewrite.text import normalize_query, tokenize
from qrewrite.tracking import mlflow_callback, mlflow_run
from qrewrite.training.common import (
    check_schedule,
    edge_means,
    native_lm_head_on_cpu,
    plot_curves,
    quiet_libraries,
    quiet_trainer,
    series,
    tokens_seen,
    trainer_arguments,
)
from qrewrite.training.models import (
    MODEL_FILES,
    ModelShape,
    build_small_model,
    save_model,
    token_embedding_prior,
    train_tokenizer,
)
from qrewrite.training.options import TrackingOptions, TrainerOptions
from qrewrite.training.prompts import answer, normalize_prompt, rewrite_prompt

log = logging.getLogger(__name__)

# what the step writes into its model folder (MODEL_FILES: the model itself)
PRETRAIN_OUTPUTS = (*MODEL_FILES, "pretrain_loss.png", "pretrain_report.json")


# the prompt pretraining's denoising pairs are asked under (pretrain.denoise_instruction)
DENOISE_PROMPTS = {"rewrite": rewrite_prompt, "normalize": normalize_prompt}
# how the token embeddings start (PretrainConfig.embedding_init), as the summary says it
EMBEDDING_STARTS = {"random": "a random start", "minilm": "MiniLM"}
MIN_VOCAB = 512  # bytes, special and prompt tokens, and a few hundred merges
# More tokens per word than this and the tokenizer spells the shop's words out letter by letter:
# the model then spends its few layers assembling words instead of reading the query
MAX_TOKENS_PER_WORD = 2.5


@dataclass(kw_only=True)
class PretrainConfig(TrainerOptions, TrackingOptions):
    """Tokenizer, model size and training of ``qrewrite pretrain`` (section ``pretrain:``); the
    trainer and tracking options shared with the other steps are in
    :mod:`qrewrite.training.options`."""

    vocab_size: int = 4000
    hidden_size: int = 128
    intermediate_size: int = 384
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    max_length: int = 64  # tokens per packed block (lm) or per example (denoise)
    # "lm": a language model of the shop's text; "denoise": noisy query -> clean form in the
    # rewrite prompt (training/denoise.py), which teaches the model to read the query before SFT;
    # "lm+denoise": both, mixed
    objective: str = "lm"
    denoise_pairs: int = 20000  # at least this many pairs...
    # ...or this many per distinct word of the shop's text, when more, up to denoise_pairs_max
    # (0: no cap): real titles have ten times the simulator's vocabulary, and a model that saw
    # each word twice does not learn to read them (docs/benchmarks.md)
    denoise_pairs_per_word: float = 0.0
    denoise_pairs_max: int = 0
    denoise_query_share: float = 0.3  # of the pairs, logged queries (the rest: catalog forms)
    # the instruction the denoising pairs are asked under: "rewrite" (the rewrite prompt) or
    # "normalize" (SFT task C's own instruction)
    denoise_instruction: str = "rewrite"
    # where the token embeddings start: "random", or "minilm": where the bundled sentence
    # encoder puts each token's text (models.token_embedding_prior), so that the small model
    # starts knowing which of the shop's words mean alike; measured, not kept in the presets
    # (docs/benchmarks.md, "Token embeddings from MiniLM")
    embedding_init: str = "random"
    # this step's schedule (TrainerOptions defaults otherwise)
    epochs: float = 1.0
    batch_size: int = 32
    learning_rate: float = 3e-3

    def check(self) -> None:
        """Every mistake that would give a model that cannot learn, before any work."""
        self.objectives()
        if self.denoise_instruction not in DENOISE_PROMPTS:
            raise ConfigError(
                f"pretrain.denoise_instruction={self.denoise_instruction!r}: expected one of "
                f"{', '.join(DENOISE_PROMPTS)}"
            )
        if self.embedding_init not in EMBEDDING_STARTS:
            raise ConfigError(
                f"pretrain.embedding_init={self.embedding_init!r}: expected one of "
                f"{', '.join(EMBEDDING_STARTS)}"
            )
        check_schedule("pretrain", self)
        if self.vocab_size < MIN_VOCAB:
            raise ConfigError(
                f"pretrain.vocab_size={self.vocab_size} is too small for the shop's text: the "
                f"byte alphabet alone takes 256; use at least {MIN_VOCAB} (the local preset "
                "uses 4000)"
            )
        if self.hidden_size % self.num_attention_heads:
            raise ConfigError(
                f"pretrain.hidden_size={self.hidden_size} is not a multiple of "
                f"num_attention_heads={self.num_attention_heads}"
            )
        if self.num_attention_heads % self.num_key_value_heads:
            raise ConfigError(
                f"pretrain.num_attention_heads={self.num_attention_heads} is not a multiple of "
                f"num_key_value_heads={self.num_key_value_heads}"
            )

    def objectives(self) -> set[str]:
        parts = {p.strip() for p in self.objective.split("+") if p.strip()}
        if not parts or parts - {"lm", "denoise"}:
            raise ConfigError(
                f"pretrain.objective={self.objective!r}: expected lm, denoise or lm+denoise"
            )
        if "denoise" in parts and self.denoise_pairs < 1:
            raise ConfigError("pretrain.denoise_pairs must be >= 1 with the denoise objective")
        if self.denoise_pairs_per_word < 0 or self.denoise_pairs_max < 0:
            raise ConfigError(
                "pretrain.denoise_pairs_per_word and denoise_pairs_max must be >= 0 "
                f"(got {self.denoise_pairs_per_word}, {self.denoise_pairs_max})"
            )
        if self.denoise_pairs_max and self.denoise_pairs_max < self.denoise_pairs:
            raise ConfigError(
                f"pretrain.denoise_pairs_max={self.denoise_pairs_max} is below "
                f"denoise_pairs={self.denoise_pairs}"
            )
        return parts

    def pairs_for(self, words: int) -> int:
        """How many denoising pairs for a shop whose text has ``words`` distinct words."""
        n = max(self.denoise_pairs, round(self.denoise_pairs_per_word * words))
        return min(n, self.denoise_pairs_max) if self.denoise_pairs_max else n

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


def denoising_texts(
    tokenizer: Any, pairs: list[tuple[str, str]], instruction: str = "rewrite"
) -> list[str]:
    """Each (noisy, clean) pair as a chat: the noisy text under the rewrite prompt, or SFT
    task C's normalisation prompt (``instruction``), answered by the clean one."""
    prompt = DENOISE_PROMPTS[instruction]
    return [
        tokenizer.apply_chat_template(prompt(noisy) + answer(clean), tokenize=False)
        for noisy, clean in pairs
    ]


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


def pretraining_pairs(
    config: PretrainConfig,
    data_dir: Path,
    mined_dir: Path,
    exclude_queries: set[str],
    *,
    words: int = 0,
) -> list[tuple[str, str]]:
    """Denoising pairs (training/denoise.py) from the catalog and the logged queries, as many
    as :meth:`PretrainConfig.pairs_for` gives a shop of ``words`` distinct words; queries in
    ``exclude_queries`` are neither targets nor evidence."""
    from qrewrite.training.denoise import shop_denoising_pairs

    return shop_denoising_pairs(
        read_parquet_table(data_dir / "catalog.parquet", "catalog").to_pandas(),
        read_parquet_table(mined_dir / "query_stats.parquet", "query stats").to_pandas(),
        read_parquet_table(
            mined_dir / "rewrite_candidates.parquet", "rewrite candidates"
        ).to_pandas(),
        exclude_queries=exclude_queries,
        n_pairs=config.pairs_for(words),
        seed=config.seed,
        query_share=config.denoise_query_share,
    )


def tokens_per_word(tokenizer: Any, texts: list[str], sample: int = 2000) -> float:
    """Mean tokens per whitespace word over (the first ``sample`` of) ``texts``."""
    texts = texts[:sample]
    words = sum(len(t.split()) for t in texts)
    if not words:
        return 0.0
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return sum(len(i) for i in ids) / words


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


@dataclass
class PretrainResult:
    """What ``pretrain`` did; :meth:`to_dict` is ``pretrain_report.json``."""

    qrewrite_version: str
    config: dict[str, Any]  # the step's settings (``asdict`` of its config)
    corpus_texts: int  # language-modelling texts (0 without the lm objective)
    tokens_per_word: float
    denoising_pairs: int
    denoising_examples: list[list[str]]  # the first ten (noisy, clean) pairs
    excluded_eval_queries: int
    vocab_size: int
    embedding_init: str  # where the token embeddings started (PretrainConfig.embedding_init)
    parameters: int
    steps: int
    train_seconds: float
    loss_first_20pct: float
    loss_last_20pct: float
    mlflow_run_id: str
    tokens_seen: int
    tokens_per_second: float | None

    def to_dict(self) -> dict[str, Any]:
        """The report as a mapping, keys in the order of ``pretrain_report.json``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary_lines(self, out_dir: str | Path) -> list[str]:
        """What ``pretrain`` says when it is done (the CLI and the pipeline step alike)."""
        return [
            f"pretrain: {self.parameters:,}-parameter Qwen2, vocab {self.vocab_size:,} "
            f"(embeddings from {EMBEDDING_STARTS[self.embedding_init]}), "
            f"{self.corpus_texts:,} texts + {self.denoising_pairs:,} denoising pairs, "
            f"{self.steps} steps in {self.train_seconds} s; loss "
            f"{self.loss_first_20pct:.3f} -> {self.loss_last_20pct:.3f} -> {out_dir}"
        ]


def pretrain_arguments(
    config: PretrainConfig, *, output_dir: Path, progress: bool, denoising: bool
) -> dict[str, Any]:
    """The keyword arguments of TRL's ``SFTConfig`` for ``config`` (``denoising``: the corpus
    holds denoising pairs, which are never packed)."""
    from trl import SFTConfig

    return trainer_arguments(
        config,
        step="pretrain",
        args_class=SFTConfig,
        output_dir=output_dir,
        progress=progress,
        step_arguments={
            "max_length": config.max_length,
            # classic LM pretraining packs a stream cut into blocks; a denoising pair must stay
            # whole (its answer reads its own query, never a neighbour's)
            "packing": not denoising,
            "packing_strategy": "wrapped",
            "save_strategy": "no",
            "dataset_text_field": "text",
        },
    )


def pretrain(
    config: PretrainConfig,
    *,
    data_dir: str | Path,
    mined_dir: str | Path,
    out_dir: str | Path,
    datasets_dir: str | Path | None = None,
    progress: bool = True,
) -> PretrainResult:
    """Train the tokenizer and the model; save a model directory to ``out_dir``; return what
    was done."""
    quiet_libraries()
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    config.check()
    objectives = config.objectives()
    out = Path(out_dir)
    check_output("pretrain", out, PRETRAIN_OUTPUTS, inputs=[data_dir, mined_dir, datasets_dir])
    # a pass-through trainer argument that cannot be used fails here, before any work
    pretrain_arguments(
        config, output_dir=out / "checkpoints", progress=progress, denoising="denoise" in objectives
    )
    excluded = eval_queries(Path(datasets_dir) if datasets_dir else None)
    corpus = domain_corpus(Path(data_dir), Path(mined_dir), excluded)
    t0 = time.perf_counter()
    pairs: list[tuple[str, str]] = []
    if "denoise" in objectives:
        words = len({w for text in corpus for w in tokenize(text)})
        log.info(
            "pretrain: %d denoising pairs for %d distinct words", config.pairs_for(words), words
        )
        pairs = pretraining_pairs(config, Path(data_dir), Path(mined_dir), excluded, words=words)
    tokenizer = train_tokenizer(corpus, config.vocab_size)
    per_word = tokens_per_word(tokenizer, corpus)
    if per_word > MAX_TOKENS_PER_WORD:
        log.warning(
            "pretrain: vocab_size=%d is too small for this shop's text: %.2f tokens per word "
            "(above %.1f, the model spells words out); raise pretrain.vocab_size",
            config.vocab_size,
            per_word,
            MAX_TOKENS_PER_WORD,
        )
    embeddings = None
    if config.embedding_init == "minilm":
        from qrewrite.labeling.encoder import SentenceEncoder

        # a token is a word or a piece of one: a short window holds it
        encoder = SentenceEncoder(max_seq_length=16)
        embeddings = token_embedding_prior(tokenizer, config.hidden_size, encoder.encode)
        log.info("pretrain: token embeddings start from %s", encoder.identity)
    model = build_small_model(tokenizer, config.shape(), config.seed, embeddings=embeddings)
    eos = tokenizer.eos_token
    texts = [t + eos for t in corpus] if "lm" in objectives else []
    texts += denoising_texts(tokenizer, pairs, config.denoise_instruction)
    dataset = Dataset.from_dict({"text": texts}).shuffle(seed=config.seed)
    args = SFTConfig(
        **pretrain_arguments(
            config, output_dir=out / "checkpoints", progress=progress, denoising=bool(pairs)
        )
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
        native_lm_head_on_cpu(trainer.model)
        result = trainer.train()
        seconds = time.perf_counter() - t0
        losses = series(trainer.state.log_history, "loss")
        first, last = edge_means([v for _, v in losses])
        n_params = sum(p.numel() for p in model.parameters())
        tokens = tokens_seen(trainer.state.log_history)
        outcome = PretrainResult(
            qrewrite_version=__version__,
            config=asdict(config),
            corpus_texts=len(corpus) if "lm" in objectives else 0,
            tokens_per_word=round(per_word, 3),
            denoising_pairs=len(pairs),
            denoising_examples=[list(p) for p in pairs[:10]],
            excluded_eval_queries=len(excluded),
            vocab_size=len(tokenizer),
            embedding_init=config.embedding_init,
            parameters=n_params,
            steps=int(result.global_step),
            train_seconds=round(seconds, 1),
            loss_first_20pct=first,
            loss_last_20pct=last,
            mlflow_run_id=run.info.run_id,
            tokens_seen=tokens,
            tokens_per_second=round(tokens / seconds, 1) if tokens else None,
        )
        mlflow.log_metrics(
            {
                "pretrain/loss_first_20pct": first,
                "pretrain/loss_last_20pct": last,
                "pretrain/parameters": n_params,
            }
        )
        report = outcome.to_dict()
        # the model folder is replaced only when the new model is whole (qrewrite.outputs)
        with staged_output(out, PRETRAIN_OUTPUTS, step="pretrain") as stage:
            save_model(trainer.model, tokenizer, stage, {"step": "pretrain", **report})
            plot_curves({"loss": losses}, "Domain pretraining loss", stage / "pretrain_loss.png")
            (stage / "pretrain_report.json").write_text(json.dumps(report, indent=2) + "\n")
    return outcome
