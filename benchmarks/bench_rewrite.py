"""Batch rewriting benchmark: batched vs one-query-at-a-time generation, queries/s.

Run with ``make bench-rewrite`` (after ``make demo``, which trains the model it measures; without
one it builds an untrained model of the local preset's shape, which generates to the token limit
and so measures the worst case). Greedy generation of ``--max-new-tokens`` at most, the serving
code path (``serving.Rewriter``). Prints a Markdown table and, with ``--write``, replaces the
rewriting section of ``docs/benchmarks.md``. Timings are measurements, never test assertions.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path

from docs_section import markers, write_section

BEGIN, END = markers("rewrite")


def _queries(data: Path, n: int) -> list[str]:
    import pandas as pd

    stats = data / "mined" / "query_stats.parquet"
    if stats.exists():
        q = pd.read_parquet(stats, columns=["query", "searches"]).sort_values("searches")
        return q["query"].tolist()[-n:]
    base = ["red running shoes", "oak desk", "wireles earbuds", "cotton hoodie xl", "blu kicks"]
    return [f"{b} {i}" for i in range(n // len(base) + 1) for b in base][:n]


def _model(path: Path | None, work: Path) -> tuple[Path, str]:
    if path is not None and (path / "config.json").exists():
        return path, str(path)
    from qrewrite.training.models import ModelShape, build_small_model, save_model, train_tokenizer

    texts = ["red running shoes", "oak desk", "wireless earbuds", "cotton hoodie"] * 200
    tok = train_tokenizer(texts, 600)
    out = work / "untrained"
    save_model(build_small_model(tok, ModelShape(), seed=0), tok, out, {"step": "bench"})
    return out, "untrained model of the local preset's shape"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("out/demo/latest/grpo-align/model"))
    ap.add_argument("--data", type=Path, default=Path("out/demo/latest/mine-search-logs"))
    ap.add_argument("--work", type=Path, default=Path(".bench"))
    ap.add_argument("--queries", type=int, default=512, help="queries for the batched runs")
    ap.add_argument("--single-queries", type=int, default=64, help="queries one at a time")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 128])
    ap.add_argument("--max-new-tokens", type=int, default=16)
    ap.add_argument("--write", type=Path, help="docs/benchmarks.md to update")
    args = ap.parse_args()

    import torch

    from qrewrite.serving.rewriter import GenerationSettings, Rewriter

    args.work.mkdir(parents=True, exist_ok=True)
    model_dir, model_name = _model(args.model, args.work)
    queries = _queries(args.data, args.queries)
    rows = []
    for batch in [1, *args.batch_sizes]:
        n = args.single_queries if batch == 1 else len(queries)
        r = Rewriter.from_dir(
            model_dir, GenerationSettings(batch_size=batch, max_new_tokens=args.max_new_tokens)
        )
        r.generate(queries[: min(batch, 8)])  # warm-up: first-call allocations
        r.stats.queries, r.stats.seconds, r.stats.batches = 0, 0.0, []
        t0 = time.perf_counter()
        r.generate(queries[:n])
        seconds = time.perf_counter() - t0
        rows.append(
            (batch, n, seconds, n / seconds, 1000 * sum(r.stats.batches) / len(r.stats.batches))
        )
        print(f"batch {batch:>4}: {n} queries in {seconds:.2f} s = {n / seconds:.1f} queries/s")
    single = rows[0][3]
    lines = [
        BEGIN,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {platform.machine()}, {os.cpu_count()} CPU "
        f"cores, torch {torch.__version__} ({'CUDA' if torch.cuda.is_available() else 'CPU'}); "
        f"model: {model_name}; greedy, at most {args.max_new_tokens} new tokens; "
        "`python benchmarks/bench_rewrite.py`.",
        "",
        "| batch size | queries | seconds | queries/s | ms per generate() | vs one at a time |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for batch, n, seconds, qps, ms in rows:
        lines.append(
            f"| {batch} | {n} | {seconds:.2f} | {qps:.1f} | {ms:.0f} | {qps / single:.1f}x |"
        )
    lines += ["", END]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section(args.write, "rewrite", section, "Batch rewriting (`qrewrite rewrite`)")


if __name__ == "__main__":
    main()
