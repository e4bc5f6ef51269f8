"""``qrewrite rewrite``: the serving table an online cache loads, query -> top-k rewrites.

Input is a text file (one query per line), or a CSV / parquet file with a ``query`` column.
Empty lines and duplicate queries (after normalisation) are counted and skipped; a query longer
than ``max_query_chars`` stops the run with its line number, unless ``skip_long_queries`` is set,
in which case long queries are counted and skipped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qrewrite import __version__
from qrewrite.errors import ConfigError, DataError
from qrewrite.outputs import check_not_an_input, staged_output
from qrewrite.serving import engines
from qrewrite.serving.engines import VllmCandidates, choose_engine
from qrewrite.serving.policy import ServingPolicy
from qrewrite.serving.rewriter import GenerationSettings, Rewriter, generation_settings
from qrewrite.serving.served import TEACHER_DIR, ServedRewriter, load_policy
from qrewrite.text import normalize_query
from qrewrite.tracking import DEFAULT_TRACKING_URI

log = logging.getLogger(__name__)

REWRITES_SCHEMA = pa.schema(
    [
        ("query", pa.string()),
        ("rank", pa.int32()),
        ("rewrite", pa.string()),
        ("score", pa.float32()),
        ("grade", pa.int8()),
        ("p_relevant", pa.float32()),
        ("served", pa.bool_()),  # the rank-1 rewrite passed the serving policy
        ("teacher_grade", pa.int8()),  # the teacher's grade of the rank-1 rewrite (vet: teacher)
        # what the teacher finds the rank-1 rewrite's page gains (vet: page; ServingPolicy)
        ("page_gain", pa.float32()),
    ]
)


REGISTERED = "registered"  # rewrite.vet: the policy the model was registered with


@dataclass
class RewriteConfig:
    """Options of ``qrewrite rewrite`` (section ``rewrite:``)."""

    k: int = 3
    samples: int = 4
    top_k: int = 20
    temperature: float = 1.0
    abstain_on_copy: bool = True  # no rewrite when the greedy one copies the query
    continue_copies: bool = False  # ...unless decoded again past the copy (GenerationSettings)
    drop_repeats: bool = True  # drop candidates that repeat a word (GenerationSettings)
    correct_spelling: bool = True  # the model's spelling correction first (GenerationSettings)
    correction_beams: int = 4  # ...the likeliest respelling of this many (GenerationSettings)
    max_new_tokens: int = 16
    batch_size: int = 64
    max_query_chars: int = 200
    skip_long_queries: bool = False
    # rewrite at most this many queries (0: all): the most searched when the file has a
    # ``searches`` column (mine's query_stats does), else the first ones
    max_queries: int = 0
    # the serving policy (qrewrite.serving.policy). "registered": the one the model was
    # registered with, which its evaluation measured; model | teacher | both | page override it
    vet: str = REGISTERED
    min_p_relevant: float = 0.5
    min_page_gain: float = 0.0  # vet "page" given here (a registered policy carries its own)
    seed: int = 7
    # what generates the candidates (serving/engines.py): auto: vLLM's offline engine where the
    # vllm package and a CUDA device are there, else HF generate; hf; vllm (an error without them).
    # Prompts, candidate set, scoring and the serving policy are the same either way
    engine: str = "auto"
    # the share of the GPU vLLM takes; the HF model that scores and grades shares the GPU
    vllm_gpu_memory_utilization: float = 0.5
    tracking_uri: str = (
        DEFAULT_TRACKING_URI  # where models:/ URIs resolve ($MLFLOW_TRACKING_URI wins)
    )

    def generation(self) -> GenerationSettings:
        return generation_settings(self)


def read_queries(path: Path, config: RewriteConfig) -> tuple[list[str], dict[str, int]]:
    """Distinct queries of ``path`` in file order, and counts of what was set aside."""
    if not path.exists():
        raise DataError(f"{path}: query file not found")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    else:
        lines = path.read_text(encoding="utf-8", errors="strict").splitlines()
        frame = pd.DataFrame({"query": lines})
    if "query" not in frame.columns:
        raise DataError(
            f"{path}: no 'query' column (columns: {', '.join(map(str, frame.columns))})"
        )
    frame = frame.reset_index(drop=True)
    if config.max_queries and "searches" in frame.columns:
        frame = frame.sort_values("searches", ascending=False, kind="stable")
    counts = {"rows": len(frame), "empty": 0, "too_long": 0, "duplicates": 0}
    seen: set[str] = set()
    out: list[str] = []
    rows = zip((frame.index + 1).tolist(), frame["query"].tolist(), strict=True)
    for line_no, raw in rows:
        text = "" if raw is None or (isinstance(raw, float) and raw != raw) else str(raw).strip()
        if not text:
            counts["empty"] += 1
            continue
        if len(text) > config.max_query_chars:
            if not config.skip_long_queries:
                raise DataError(
                    f"{path}: row {line_no} has a query of {len(text)} characters (limit "
                    f"{config.max_query_chars}); fix the file or pass --set skip_long_queries=true"
                )
            counts["too_long"] += 1
            continue
        key = normalize_query(text)
        if key in seen:
            counts["duplicates"] += 1
            continue
        seen.add(key)
        out.append(text)
    if config.max_queries and len(out) > config.max_queries:
        counts["beyond_max_queries"] = len(out) - config.max_queries
        out = out[: config.max_queries]
    return out, counts


@dataclass
class ExportSetup:
    """What ``qrewrite rewrite`` serves with, and where that came from."""

    policy: ServingPolicy
    teacher: Any
    generation: GenerationSettings
    source: str


def serving_setup(
    config: RewriteConfig,
    *,
    policy_dir: str | Path | None = None,
    data_dir: str | Path | None = None,
    labels: str | Path | None = None,
) -> ExportSetup:
    """The policy ``qrewrite rewrite`` serves with, its teacher and the generation settings.

    ``vet: registered`` (the default) serves a registered model (``policy_dir``: its serving
    folder) with the policy, teacher and generation settings it was registered with, which its
    evaluation measured (batch size included: sampling draws per batch, so the same queries get
    the same rewrites as through the MLflow model); a model directory that carries none is served
    by its own vetting and the config's settings. An explicit ``vet`` overrides the policy; its
    teacher comes from ``data_dir`` and ``labels`` when given, else from the registered model."""
    if config.vet == REGISTERED:
        if policy_dir is not None:
            if data_dir is not None:
                log.warning(
                    "rewrite: the model carries its serving policy and teacher; --data and "
                    "--labels are not used (set rewrite.vet to vet with another teacher)"
                )
            setup = load_policy(policy_dir)
            return ExportSetup(
                setup.policy, setup.teacher, setup.generation, "registered with the model"
            )
        log.warning(
            "rewrite: the model carries no serving policy (not a registered model); serving by "
            "the model's own vetting, P(relevant) >= %s",
            config.min_p_relevant,
        )
        policy = ServingPolicy("model", config.min_p_relevant)
        return ExportSetup(policy, None, config.generation(), "the model's own vetting")
    policy = ServingPolicy.of(config)
    policy.check("rewrite")
    teacher = None
    if policy.needs_teacher:
        from qrewrite.labeling.teacher import Teacher

        if data_dir is not None:
            teacher = Teacher.from_data(data_dir, labels)
        elif policy_dir is not None and (Path(policy_dir) / TEACHER_DIR).exists():
            teacher = Teacher.load(Path(policy_dir) / TEACHER_DIR)
        else:
            raise ConfigError(
                f"rewrite.vet={config.vet!r} vets with the teacher, which reads the catalog: "
                "pass --data (the synth or import-judged directory) and --labels "
                "(labeled_pairs.parquet), or serve a registered model (models:/...), which "
                "carries its teacher"
            )
    return ExportSetup(policy, teacher, config.generation(), "config")


@dataclass
class ExportSummary:
    """What ``rewrite`` exported; :meth:`to_dict` is the ``.json`` summary beside the table."""

    qrewrite_version: str
    model: str  # the model's pinned reference, else its directory
    queries: int
    rows: int
    queries_without_rewrite: int
    queries_served: int
    # queries whose first rewrite is the model's own spelling correction (correct_spelling)
    queries_spelling_fixed: int
    policy: str  # the serving policy, described
    policy_source: str  # where the policy came from
    generation: dict[str, Any]  # ``asdict`` of the generation settings
    engine: str  # what generated the candidates: hf or vllm
    engine_reason: str  # why that engine (``rewrite.engine``, and what auto found)
    set_aside: dict[str, int]  # reason -> queries skipped
    seconds: float
    vetting_seconds: float
    queries_per_second: float | None
    config: dict[str, Any]  # ``asdict`` of :class:`RewriteConfig`

    def to_dict(self) -> dict[str, Any]:
        """The summary as a mapping, keys in the order of the ``.json`` file."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary_lines(self, out_path: str | Path) -> list[str]:
        """What ``rewrite`` says when it is done: rewritten, served, set aside, speed."""
        aside = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in self.set_aside.items() if v)
        return [
            f"rewrite: {self.queries:,} queries -> {self.rows:,} rewrites "
            f"({self.queries_without_rewrite} queries without one, {self.queries_spelling_fixed} "
            f"spelling corrections first, {self.queries_served} served "
            f"by the policy {self.policy_source}: {self.policy}) in {self.seconds} s "
            f"({self.queries_per_second} queries/s, candidates by {self.engine}: "
            f"{self.engine_reason}) with {self.model} -> {out_path}"
            + (f"; set aside: {aside}" if aside else "")
        ]


def export_rewrites(
    config: RewriteConfig,
    *,
    model_dir: str | Path,
    queries_file: str | Path,
    out_file: str | Path,
    model_ref: str = "",
    progress: bool = True,
    data_dir: str | Path | None = None,
    labels: str | Path | None = None,
    policy_dir: str | Path | None = None,
    cuda_available: Callable[[], bool] = engines.cuda_available,
) -> ExportSummary:
    """Rewrite every query of ``queries_file`` and write the serving table to ``out_file``
    (parquet; one row per (query, rank)) with a ``.json`` summary next to it. The rank-1
    rewrite of each query is marked ``served`` when it passes the serving policy
    (:func:`serving_policy` says which). ``config.engine`` says what generates the candidates
    (:func:`~qrewrite.serving.engines.choose_engine`, asking ``cuda_available`` whether there
    is a CUDA device); only that differs between the engines."""
    if config.k < 1:
        raise ConfigError("rewrite.k must be >= 1")
    if not 0 < config.vllm_gpu_memory_utilization <= 1:
        raise ConfigError(
            f"rewrite.vllm_gpu_memory_utilization={config.vllm_gpu_memory_utilization}: "
            "expected a share of the GPU, above 0 and at most 1"
        )
    out = Path(out_file)
    check_not_an_input("rewrite", [out, out.with_suffix(".json")], [queries_file, model_dir])
    # before reading or generating: a wrong --data or engine fails in seconds
    engine = choose_engine(config.engine, cuda=cuda_available)
    setup = serving_setup(config, policy_dir=policy_dir, data_dir=data_dir, labels=labels)
    queries, counts = read_queries(Path(queries_file), config)
    for what in ("empty", "too_long", "duplicates", "beyond_max_queries"):
        if counts.get(what):
            log.warning(
                "rewrite: skipped %d %s row(s) of %s",
                counts[what],
                what.replace("_", " "),
                queries_file,
            )
    if not queries:
        raise DataError(
            f"{queries_file}: no queries to rewrite ({counts['rows']} rows, all skipped)"
        )
    rewriter = Rewriter.from_dir(model_dir, setup.generation)
    if engine.name == "vllm":
        rewriter.candidates = VllmCandidates(
            engine.vllm,
            model_dir,
            rewriter.tokenizer,
            setup.generation,
            generation_config=getattr(rewriter.model, "generation_config", None),
            gpu_memory_utilization=config.vllm_gpu_memory_utilization,
        )
    log.info("rewrite: candidates by %s (%s)", engine.name, engine.reason)
    served_rewriter = ServedRewriter(rewriter, setup.policy, setup.teacher)
    t0 = time.perf_counter()
    ranked = served_rewriter.rewriter.rewrite(queries, k=config.k, progress=progress)
    seconds = time.perf_counter() - t0  # the model's work alone: what queries/s measures
    t1 = time.perf_counter()
    served = served_rewriter.vet(queries, ranked)
    rows = [
        (
            s.query,
            rank,
            r.text,
            r.score,
            r.grade,
            r.p_relevant,
            rank == 1 and s.served,
            s.teacher_grade if rank == 1 else None,
            s.page_gain if rank == 1 else None,
        )
        for s in served
        for rank, r in enumerate(s.rewrites, start=1)
    ]
    table = pa.Table.from_pylist(
        [dict(zip(REWRITES_SCHEMA.names, r, strict=True)) for r in rows], schema=REWRITES_SCHEMA
    )
    summary = ExportSummary(
        qrewrite_version=__version__,
        model=model_ref or str(model_dir),
        queries=len(queries),
        rows=table.num_rows,
        queries_without_rewrite=sum(1 for r in ranked if not r),
        queries_served=sum(s.served for s in served),
        queries_spelling_fixed=served_rewriter.rewriter.stats.corrections,
        policy=setup.policy.describe(),
        policy_source=setup.source,
        generation=asdict(setup.generation),
        engine=engine.name,
        engine_reason=engine.reason,
        set_aside={k: v for k, v in counts.items() if k != "rows"},
        seconds=round(seconds, 2),
        vetting_seconds=round(time.perf_counter() - t1, 2),
        queries_per_second=round(len(queries) / seconds, 1) if seconds else None,
        config=asdict(config),
    )
    # the table and its summary together, once both are written (a cache loader never reads a
    # half-written table, and a failure keeps the previous one)
    with staged_output(
        out.parent, [out.name, out.with_suffix(".json").name], step="rewrite"
    ) as stage:
        pq.write_table(table, stage / out.name, compression="zstd")
        (stage / out.with_suffix(".json").name).write_text(
            json.dumps(summary.to_dict(), indent=2) + "\n"
        )
    return summary
