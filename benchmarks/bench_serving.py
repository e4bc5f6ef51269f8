"""Online serving benchmark: the registered champion behind ``mlflow models serve`` on 127.0.0.1,
called over HTTP as a search service would.

Run with ``make bench-serving`` after ``make demo`` (which registers the champion it measures).
Single-query latency (p50, p99 over ``--requests`` sequential requests, each a head query of the
demo's log) and batch throughput (queries/s at a few request sizes); every figure includes the
serving policy the model carries (the teacher vets each top rewrite). Prints a Markdown table and,
with ``--write``, replaces the serving section of ``docs/benchmarks.md``. Timings are
measurements, never test assertions.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from docs_section import current_commit, markers, write_section

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = markers("serving")


def _queries(stats: Path, n: int) -> list[str]:
    import pandas as pd

    frame = pd.read_parquet(stats, columns=["query", "searches"])
    return frame.sort_values("searches", ascending=False)["query"].head(n).tolist()


def _post(base: str, queries: list[str]) -> tuple[float, list[dict]]:
    import requests

    body = json.dumps({"dataframe_split": {"columns": ["query"], "data": [[q] for q in queries]}})
    t0 = time.perf_counter()
    r = requests.post(
        f"{base}/invocations",
        data=body,
        headers={"Content-Type": "application/json"},
        timeout=600,
    )
    seconds = time.perf_counter() - t0
    r.raise_for_status()
    return seconds, r.json()["predictions"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="models:/query-rewriter@champion")
    ap.add_argument("--tracking-uri", default="sqlite:///out/demo/mlflow/mlflow.db")
    ap.add_argument(
        "--queries",
        type=Path,
        default=Path("out/demo/latest/mine-search-logs/mined/query_stats.parquet"),
    )
    ap.add_argument("--requests", type=int, default=300, help="single-query requests")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[16, 64, 256])
    ap.add_argument(
        "--server-threads",
        type=int,
        default=1,
        help="OMP_NUM_THREADS of the server (0: torch's default, one per core)",
    )
    ap.add_argument("--work", type=Path, default=Path(".bench/serving"))
    ap.add_argument("--write", type=Path, help="docs/benchmarks.md to update")
    args = ap.parse_args()

    sys.path.insert(0, str(ROOT))
    from tests.registry.servers import model_server  # the server the tests start, the same way

    from qrewrite.environment import current_environment

    if not args.queries.exists():
        sys.exit(f"{args.queries}: not found; run `make demo` first")
    queries = _queries(args.queries, max(args.requests, *args.batch_sizes))
    args.work.mkdir(parents=True, exist_ok=True)
    threads = {"OMP_NUM_THREADS": str(args.server_threads)} if args.server_threads else {}
    with model_server(args.model, args.tracking_uri, args.work, env=threads) as base:
        for q in queries[:5]:  # warm-up: first-call allocations, the teacher's encoder
            _post(base, [q])
        single = []
        served = 0
        for q in queries[: args.requests]:
            seconds, rows = _post(base, [q])
            single.append(1000 * seconds)
            served += rows[0]["served"] is not None
        batches = []
        for size in args.batch_sizes:
            runs = [_post(base, queries[:size])[0] for _ in range(3)]
            batches.append((size, float(np.median(runs))))
    lat = np.array(single)
    env = current_environment()
    lines = [
        BEGIN,
        "",
        f"`make bench-serving` on {datetime.now(UTC):%b %d %Y}, commit {current_commit()}, "
        f"{env.cpu_model} ({env.cpus} CPUs), one uvicorn worker with "
        f"`OMP_NUM_THREADS={args.server_threads or 'unset'}`: `mlflow models serve` of "
        f"`{args.model}` (the demo's champion, with the serving policy and teacher it carries), "
        "called over HTTP on 127.0.0.1 with `dataframe_split` JSON.",
        "",
        "| requests | queries per request | p50 ms | p99 ms | mean ms | queries/s |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {len(lat)} | 1 | {np.percentile(lat, 50):.0f} | {np.percentile(lat, 99):.0f} | "
        f"{lat.mean():.0f} | {1000 / lat.mean():.1f} |",
    ]
    for size, seconds in batches:
        lines.append(f"| 3 (median) | {size} | | | {1000 * seconds:.0f} | {size / seconds:.1f} |")
    lines += [
        "",
        f"- served by the policy: {served} of {len(lat)} single-query requests "
        f"({100 * served / len(lat):.0f}%); goal p99 under 100 ms for one query: "
        + ("met" if np.percentile(lat, 99) < 100 else "**not met**"),
        "",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section(args.write, "serving", section, "Online serving (`mlflow models serve`)")


if __name__ == "__main__":
    main()
