"""``qrewrite label``: grade mined pairs (query, rewrite) and (query, title) -> labeled_pairs."""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qrewrite import __version__
from qrewrite.errors import ConfigError, DataError
from qrewrite.labeling.llm import LLMClient, LLMSettings, ResultCache, grade_with_llm
from qrewrite.labeling.teacher import GRADE_COLUMNS, Teacher, TeacherConfig, embeddings_beside
from qrewrite.outputs import check_not_an_input, staged_output
from qrewrite.tables import read_judgments, read_parquet_table, table_fingerprint

log = logging.getLogger(__name__)

BACKENDS = ("teacher", "llm")
MAX_TEXT_CHARS = 300  # longer "queries" are pasted text; their tail carries no intent

LABELED_PAIRS = pa.schema(
    [
        pa.field("query", pa.string(), nullable=False),
        pa.field("rewrite", pa.string(), nullable=False),
        pa.field("pair_kind", pa.string(), nullable=False),  # query_rewrite | query_title
        pa.field("source", pa.string()),
        pa.field("product_id", pa.string()),
        pa.field("grade", pa.int8(), nullable=False),
        pa.field("p_irrelevant", pa.float64(), nullable=False),
        pa.field("p_partial", pa.float64(), nullable=False),
        pa.field("p_relevant", pa.float64(), nullable=False),
        pa.field("backend", pa.string(), nullable=False),
        pa.field("signals", pa.string(), nullable=False),  # JSON: what the grade rests on
    ]
)


@dataclass
class LabelConfig:
    """Settings of ``qrewrite label`` (section ``label:`` of a preset): the backend and the
    default teacher's thresholds (see :class:`qrewrite.labeling.teacher.TeacherConfig`)."""

    backend: str = "teacher"
    # the default teacher (one source of defaults: TeacherConfig)
    type_similarity: float = TeacherConfig.type_similarity
    type_margin: float = TeacherConfig.type_margin
    relevant_similarity: float = TeacherConfig.relevant_similarity
    partial_similarity: float = TeacherConfig.partial_similarity
    title_relevant_similarity: float = TeacherConfig.title_relevant_similarity
    title_partial_similarity: float = TeacherConfig.title_partial_similarity
    support_purchases: int = TeacherConfig.support_purchases
    reformulation_odds: float = TeacherConfig.reformulation_odds
    shared_purchase_odds: float = TeacherConfig.shared_purchase_odds
    encoder_batch_size: int = TeacherConfig.encoder_batch_size
    calibrate_on_judgments: bool = TeacherConfig.calibrate_on_judgments
    calibration_folds: int = TeacherConfig.calibration_folds
    calibration_encoder: bool = TeacherConfig.calibration_encoder
    calibration_feedback_depth: int = TeacherConfig.calibration_feedback_depth
    calibration_title_names: bool = TeacherConfig.calibration_title_names
    calibration_topics: int = TeacherConfig.calibration_topics
    # backend llm: an OpenAI-compatible chat endpoint (docs/labeling.md#the-llm-backend)
    llm_endpoint: str = ""
    llm_model: str = ""
    llm_api_key_env: str = LLMSettings.api_key_env
    llm_timeout_s: float = LLMSettings.timeout_s
    llm_max_retries: int = LLMSettings.max_retries
    llm_backoff_s: float = LLMSettings.backoff_s
    llm_concurrency: int = LLMSettings.concurrency
    llm_circuit_breaker: int = LLMSettings.circuit_breaker
    # a directory kept between runs (on the cluster, the workspace volume): the text embeddings
    # of the last run's labeling are preloaded from it and replaced by this run's, so a scheduled
    # run embeds only titles and queries that are new since ("" : off; docs/labeling.md)
    embedding_cache: str = ""

    def llm_settings(self) -> LLMSettings:
        return LLMSettings(
            endpoint=self.llm_endpoint,
            model=self.llm_model,
            api_key_env=self.llm_api_key_env,
            timeout_s=self.llm_timeout_s,
            max_retries=self.llm_max_retries,
            backoff_s=self.llm_backoff_s,
            concurrency=self.llm_concurrency,
            circuit_breaker=self.llm_circuit_breaker,
        )

    def teacher_config(self) -> TeacherConfig:
        names = {f.name for f in fields(TeacherConfig)}
        return TeacherConfig(**{k: v for k, v in asdict(self).items() if k in names})


def read_candidates(path: Path) -> pd.DataFrame:
    """A candidates parquet with at least query and rewrite, or a one-line DataError."""
    table = read_parquet_table(path, "candidates", "run `qrewrite mine` first")
    for col in ("query", "rewrite"):
        if col not in table.column_names:
            raise DataError(
                f"{path}: missing column {col}; expected rewrite_candidates "
                "(docs/data.md#rewrite_candidates)"
            )
        t = table.schema.field(col).type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            raise DataError(f"{path}: column {col} is {t}, expected UTF-8 strings")
    if table.num_rows == 0:
        raise DataError(f"{path}: no candidate pairs to label")
    return table.to_pandas()


@dataclass
class LabelReport:
    """What ``label`` did; :meth:`to_dict` is ``<out>.report.json``."""

    qrewrite_version: str
    backend: str
    config: dict[str, Any]  # ``asdict`` of :class:`LabelConfig`
    candidates: str  # the candidates file read
    output: str  # the labeled_pairs file written
    pairs_read: int
    pairs_labeled: int
    fingerprints: dict[str, str]
    set_aside: dict[str, int]  # reason -> pairs
    set_aside_file: str | None
    truncated_to_chars: dict[str, int]  # limit, pairs
    grades: dict[int, int]
    grades_by_source: dict[str, dict[int, int]]
    learned: dict[str, Any]  # synonyms, synonym_examples, filler_words
    encoder: dict[str, Any]  # load_seconds, texts (embedded here), stored (for later steps)
    llm: dict[str, Any] | None  # the llm backend's requests, retries and fallbacks
    calibration: dict[str, Any] | None  # the teacher's calibration on judgments
    seconds: float
    pairs_per_second: int | None

    def to_dict(self) -> dict[str, Any]:
        """The report as a mapping, keys in the order of ``<out>.report.json``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary_lines(self, out_path: str | Path) -> list[str]:
        """What ``label`` says when it is done: grades, speed, and every pair not graded
        normally."""
        grades = ", ".join(f"{g}: {n:,}" for g, n in self.grades.items())
        lines = [
            f"label: {self.pairs_labeled:,} pairs graded by {self.backend} in "
            f"{self.seconds:.1f}s ({self.pairs_per_second:,} pairs/s; encoder load "
            f"{self.encoder['load_seconds']:.1f}s) -> {out_path} (grades {grades})"
        ]
        if self.set_aside:
            reasons = ", ".join(f"{k}: {v}" for k, v in self.set_aside.items())
            lines.append(
                f"label: set aside {sum(self.set_aside.values()):,} pairs ({reasons}); see "
                f"{self.set_aside_file}"
            )
        if self.llm and self.llm["fell_back_to_teacher"]:
            llm = self.llm
            reasons = "; ".join(f"{k} ({v})" for k, v in list(llm["failure_reasons"].items())[:3])
            lines.append(
                f"label: the llm endpoint could not grade {llm['fell_back_to_teacher']:,} pairs; "
                f"the teacher graded them (backend column says which): {reasons}"
            )
        truncated = self.truncated_to_chars
        if truncated["pairs"]:
            lines.append(
                f"label: {truncated['pairs']:,} pairs had text longer than {truncated['limit']} "
                f"characters, graded on the first {truncated['limit']}"
            )
        return lines


def label(
    config: LabelConfig,
    *,
    data_dir: str | Path,
    candidates_path: str | Path,
    out_path: str | Path,
) -> LabelReport:
    """Grade every candidate pair and write ``labeled_pairs`` to ``out_path`` (parquet), pairs set
    aside to ``<out>.rejected.parquet`` and a report to ``<out>.report.json``. Returns the report.
    """
    if config.backend not in BACKENDS:
        raise ConfigError(
            f"label: unknown backend {config.backend!r}; available: {', '.join(BACKENDS)}"
        )
    if config.calibration_feedback_depth < 0:
        raise ConfigError(
            f"label.calibration_feedback_depth={config.calibration_feedback_depth}: expected "
            "0 (no feedback signal) or more results"
        )
    if config.calibration_topics < 0:
        raise ConfigError(
            f"label.calibration_topics={config.calibration_topics}: expected 0 (no topic "
            "signal) or more dimensions"
        )
    data, out = Path(data_dir), Path(out_path)
    # the outputs a run owns: written together at the end, a stale set-aside file removed
    owned = [
        out.name,
        out.with_suffix(".rejected.parquet").name,
        out.with_suffix(".report.json").name,
        embeddings_beside(out).name,
    ]
    check_not_an_input("label", [out.parent / name for name in owned], [data, candidates_path])
    catalog_path = data / "catalog.parquet"
    if not catalog_path.exists():
        raise DataError(
            f"{catalog_path}: catalog not found; --data must be a synth or "
            "import-judged output directory"
        )
    catalog = read_parquet_table(catalog_path, "catalog").to_pandas()
    pairs = read_candidates(Path(candidates_path))

    query = pairs["query"].fillna("").astype(str)
    rewrite = pairs["rewrite"].fillna("").astype(str)
    reason = pd.Series("", index=pairs.index, dtype=object)
    reason[rewrite.str.strip() == ""] = "empty_rewrite"
    reason[query.str.strip() == ""] = "empty_query"
    rejected = pairs[reason != ""].assign(reject_reason=reason[reason != ""])
    kept = pairs[reason == ""].copy()
    truncated = int(
        ((query.str.len() > MAX_TEXT_CHARS) | (rewrite.str.len() > MAX_TEXT_CHARS))[
            reason == ""
        ].sum()
    )
    kept["query"] = kept["query"].str.slice(0, MAX_TEXT_CHARS)
    kept["rewrite"] = kept["rewrite"].str.slice(0, MAX_TEXT_CHARS)
    if kept.empty:
        raise DataError(
            f"{candidates_path}: every pair was set aside ({len(rejected)} rows: "
            f"{rejected['reject_reason'].value_counts().to_dict()})"
        )

    teacher = Teacher(catalog, config.teacher_config())
    cache = EmbeddingCache(config.embedding_cache) if config.embedding_cache else None
    if cache is not None:
        cache.preload(teacher)
    judgments = read_judgments(data)
    calibration: dict | None = None
    if judgments is not None and config.calibrate_on_judgments and config.backend == "teacher":
        calibration = asdict(teacher.calibrate(judgments))
    llm_report: dict | None = None
    if config.backend == "llm":
        client = LLMClient(config.llm_settings(), ResultCache(out.with_suffix(".llm_cache.sqlite")))
        t0 = time.perf_counter()
        teacher.learn_from(kept)  # the fallback for what the endpoint cannot grade
        graded, backends = grade_with_llm(client, kept, lambda p: teacher.grade(p, learn=False))
        seconds = time.perf_counter() - t0
        encoder_load = getattr(teacher._encoder, "load_seconds", 0.0)
        errors = pd.Series([s.get("llm_error") for s in graded["signals"]]).dropna()
        llm_report = {
            "endpoint": config.llm_endpoint,
            "model": config.llm_model,
            "requests": client.requests,
            "retries": client.retries,
            "graded_by_llm": backends.count("llm"),
            "fell_back_to_teacher": backends.count("teacher"),
            "failure_reasons": {str(k): int(v) for k, v in errors.value_counts().items()},
            "circuit_opened": client.circuit_open,
            "cache": str(out.with_suffix(".llm_cache.sqlite")),
        }
    else:
        # the encoder is loaded up front, so that speed is reported without its loading
        encoder_load = (
            teacher.encoder.load_seconds
            if teacher.calibration is None or config.calibration_encoder
            else 0.0
        )
        t0 = time.perf_counter()
        teacher.learn_from(kept)
        graded = teacher.grade(kept, learn=False)
        seconds = time.perf_counter() - t0
        backends = [config.backend] * len(kept)

    pid = kept["product_id"] if "product_id" in kept else pd.Series(None, index=kept.index)
    result = pd.DataFrame(
        {
            "query": kept["query"],
            "rewrite": kept["rewrite"],
            "pair_kind": np.where(pid.notna(), "query_title", "query_rewrite"),
            "source": kept.get("source"),
            "product_id": pid,
            "grade": graded["grade"].astype(np.int8),
            **{c: graded[c] for c in GRADE_COLUMNS},
            "backend": backends,
            "signals": [json.dumps(s, sort_keys=True, default=str) for s in graded["signals"]],
        }
    )
    rejected_path = out.with_suffix(".rejected.parquet")

    report = LabelReport(
        qrewrite_version=__version__,
        backend=config.backend,
        config=asdict(config),
        candidates=str(candidates_path),
        output=str(out),
        pairs_read=len(pairs),
        pairs_labeled=len(result),
        fingerprints={
            "candidates": table_fingerprint(pairs),
            "labeled_pairs": table_fingerprint(result),
        },
        set_aside={k: int(v) for k, v in rejected["reject_reason"].value_counts().items()},
        set_aside_file=str(rejected_path) if len(rejected) else None,
        truncated_to_chars={"limit": MAX_TEXT_CHARS, "pairs": truncated},
        grades={int(g): int(n) for g, n in result["grade"].value_counts().sort_index().items()},
        grades_by_source={
            str(s): {int(g): int(n) for g, n in grp["grade"].value_counts().sort_index().items()}
            for s, grp in result.groupby(result["source"].fillna("unknown"))
        },
        learned={
            "synonyms": len(teacher.learned["synonyms"]),
            "synonym_examples": dict(sorted(teacher.learned["synonyms"].items())[:30]),
            "filler_words": teacher.learned["filler"],
        },
        encoder={
            "load_seconds": round(encoder_load, 2),
            "texts": teacher.encoder_texts,
            **({"cache": cache.summary()} if cache is not None else {}),
        },
        llm=llm_report,
        calibration=calibration,
        seconds=round(seconds, 2),
        pairs_per_second=round(len(result) / seconds) if seconds else None,
    )
    with staged_output(out.parent, owned, step="label") as stage:
        pq.write_table(
            pa.Table.from_pandas(result, schema=LABELED_PAIRS, preserve_index=False),
            stage / out.name,
            compression="zstd",
        )
        if len(rejected):
            rejected.to_parquet(stage / rejected_path.name, index=False)
        # the texts embedded here, for the steps that build this teacher again (from_data)
        report.encoder["stored"] = teacher.save_embeddings(stage / embeddings_beside(out).name)
        report_json = json.dumps(report.to_dict(), indent=2, default=str) + "\n"
        (stage / out.with_suffix(".report.json").name).write_text(report_json)
    if cache is not None:
        # after the outputs: a run that fails leaves the cache as the last good run left it
        cache.store(teacher)
    log.info("label: %d pairs in %.1fs", len(result), seconds)
    return report


class EmbeddingCache:
    """The text embeddings a scheduled run hands to the next: ``<directory>/embeddings.parquet``,
    the vectors of every text the last run's teacher embedded or used (so it holds what the shop
    has now, not everything it ever had). A file that cannot be read, or that another encoder
    made, is embedded again, with a warning: a cache never fails a run."""

    FILE = "embeddings.parquet"

    def __init__(self, directory: str | Path) -> None:
        self.path = Path(directory) / self.FILE
        self.preloaded = 0
        self.written = 0

    def preload(self, teacher: Teacher) -> None:
        from qrewrite.labeling.encoder import load_embeddings

        if not self.path.is_file():
            log.info("label: no embedding cache at %s yet; it is written after this run", self.path)
            return
        try:
            self.preloaded = load_embeddings(teacher.encoder, self.path)
        except DataError as e:
            log.warning("label: embedding cache not used, the texts are embedded again: %s", e)
        else:
            log.info("label: %d embeddings preloaded from %s", self.preloaded, self.path)

    def store(self, teacher: Teacher) -> None:
        from qrewrite.labeling.encoder import save_embeddings

        encoder = teacher._encoder
        if encoder is None:
            return  # nothing was embedded: the cache stays as it was
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.{os.getpid()}.partial")
        try:
            self.written = save_embeddings(encoder, partial, only=getattr(encoder, "used", None))
            if self.written:
                os.replace(partial, self.path)  # readers see the old file or the new, whole
                log.info("label: embedding cache %s now holds %d texts", self.path, self.written)
        finally:
            partial.unlink(missing_ok=True)

    def summary(self) -> dict[str, object]:
        return {"path": str(self.path), "preloaded": self.preloaded}
