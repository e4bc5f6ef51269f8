"""Mining benchmark: impressions/s, peak RSS, and mining time over one DuckDB full scan.

Run with ``make bench``. For each scale it synthesizes the marketplace once (kept under
``--work`` and reused while its manifest matches), then, each in a fresh child process so that
peak memory is that step's alone:

1. a DuckDB full scan of ``search_log.parquet`` that touches every column;
2. ``qrewrite mine`` on the same file.

It prints a Markdown table and, with ``--write``, replaces the mining section of
``docs/benchmarks.md``. Timings are measurements, never test assertions.

``--sizing`` (``make bench-mining-sizing``) instead mines the largest scale asked for with one
and two DuckDB threads and under memory limits well below the data, recording the wall time,
peak RSS and how much DuckDB spilled to its temp directory: what docs/operations.md sizes a
node by.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from docs_section import current_commit, markers, write_section

from qrewrite.market.simulate import SynthConfig

BEGIN, END = markers("mining")
# (DuckDB threads, memory limit) per sizing run: the default limit on one and two threads, then
# limits well below the log (huge: 320 MiB of parquet, about 2.8 GiB at peak with the default)
SIZING_RUNS = ((1, "3GB"), (2, "3GB"), (2, "1GB"), (2, "512MB"), (2, "256MB"))

SCAN_SQL = """
SELECT count(*), count(DISTINCT session_id) > 0, max(user_id), max(search_id),
       max("timestamp"), max(length(query)), max(position), max(product_id),
       sum(clicked::INT), sum(carted::INT), sum(purchased::INT)
FROM read_parquet('{path}')
"""


def _tree_bytes(folder: Path) -> int:
    total = 0
    for path in folder.rglob("*"):
        with contextlib.suppress(OSError):  # a spill file DuckDB removed while we looked
            total += path.stat().st_size if path.is_file() else 0
    return total


def _mine_disk_bytes(out: Path) -> int:
    """Bytes under mine's output folder and under its staging folders beside it
    (``.NAME.mine-*``, :func:`qrewrite.outputs.staged_output`): DuckDB spills into the stage
    while mine runs, and the finished outputs are staged there before they move."""
    roots = [out, *out.parent.glob(f".{out.name}.mine-*")]
    return sum(_tree_bytes(root) for root in roots if root.exists())


def _run_child(args: list[str], watch: Path | None = None) -> tuple[float, int, str, int]:
    """Run a child that prints its own peak RSS (bytes) as its last stdout line.

    Returns (wall seconds, peak RSS bytes, the rest of stdout, the most bytes mine's output
    ``watch`` and its staging folders held while the child ran, polled every 0.2 s). Each step
    runs in a fresh child so its peak memory is its own, not the benchmark driver's.
    """
    t0 = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak_disk = [0]

    def poll() -> None:
        while proc.poll() is None:
            if watch is not None:
                peak_disk[0] = max(peak_disk[0], _mine_disk_bytes(watch))
            time.sleep(0.2)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    watcher.join()
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(args)}\n{stderr}")
    lines = stdout.strip().splitlines()
    peak = int(lines[-1]) if lines and lines[-1].isdigit() else 0
    return seconds, peak, "\n".join(lines[:-1]), peak_disk[0]


_WRAPPER = """
import resource, runpy, sys
sys.argv = sys.argv[1:]
try:
    runpy.run_module(sys.argv[0], run_name="__main__")
except SystemExit as e:
    if e.code not in (0, None):
        raise
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""

_SCAN = """
import sys, duckdb
con = duckdb.connect()
con.execute("SET threads = {threads}")
print(con.execute(sys.argv[1]).fetchone())
"""


def _mine_command(data: Path, out: Path, *settings: str) -> list[str]:
    """``qrewrite mine`` in a child that prints its peak RSS, with ``--set`` ``settings``."""
    sets = [arg for setting in settings for arg in ("--set", setting)]
    command = [sys.executable, "-c", _WRAPPER, "qrewrite.cli", "mine"]
    return [*command, "--data", str(data), "--out", str(out), *sets]


def ensure_market(scale: str, work: Path, seed: int) -> dict:
    out = work / scale
    manifest_path = out / "manifest.json"
    wanted = asdict(SynthConfig(scale=scale, seed=seed).resolved())
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        # Reuse only data made with identical settings (delete --work to force a rebuild).
        if json.loads(json.dumps(wanted)) == manifest["config"]:
            return manifest
    print(f"synthesizing {scale} into {out} (once; reused by later runs)", flush=True)
    t0 = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "qrewrite.cli",
            "synth",
            "--scale",
            scale,
            "--seed",
            str(seed),
            "--out",
            str(out),
        ],
        check=True,
    )
    manifest = json.loads(manifest_path.read_text())
    manifest["synth_seconds"] = round(time.perf_counter() - t0, 1)
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def bench_scale(scale: str, work: Path, seed: int, threads: int) -> dict:
    manifest = ensure_market(scale, work, seed)
    data = work / scale
    log_path = data / "search_log.parquet"
    scan_code = _SCAN.format(threads=threads)
    scan_s, scan_rss, _, _ = _run_child(
        [
            sys.executable,
            "-c",
            scan_code + "\nimport resource\n"
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)",
            SCAN_SQL.format(path=str(log_path).replace("'", "''")),
        ]
    )
    mine_s, mine_rss, _, _ = _run_child(
        _mine_command(data, work / f"{scale}_mined", f"duckdb_threads={threads}")
    )
    report = json.loads((work / f"{scale}_mined" / "mining_report.json").read_text())
    rows = report["input"]["rows_read"]
    return {
        "scale": scale,
        "impressions": rows,
        "searches": report["input"]["searches"],
        "file_mb": round(log_path.stat().st_size / 2**20, 1),
        "synth_s": manifest.get("synth_seconds"),
        "scan_s": round(scan_s, 2),
        "scan_peak_rss_gib": round(scan_rss / 2**30, 2),
        "mine_s": round(mine_s, 2),
        "mine_in_process_s": report["seconds"],
        "mine_peak_rss_gib": round(mine_rss / 2**30, 2),
        "impressions_per_s": round(rows / mine_s),
        "mine_over_scan": round(mine_s / scan_s, 1),
        "candidates": sum(report["candidates"].values()),
    }


def mine_sized(scale: str, work: Path, seed: int, threads: int, memory_limit: str) -> dict:
    """``qrewrite mine`` at ``scale`` on ``threads`` DuckDB threads under ``memory_limit``."""
    ensure_market(scale, work, seed)
    out = work / f"{scale}_mined_sizing"
    seconds, rss, _, spilled = _run_child(
        _mine_command(
            work / scale, out, f"duckdb_threads={threads}", f"duckdb_memory_limit={memory_limit}"
        ),
        watch=out,
    )
    report = json.loads((out / "mining_report.json").read_text())
    return {
        "threads": threads,
        "memory_limit": memory_limit,
        "mine_s": round(seconds, 1),
        "peak_rss_gib": round(rss / 2**30, 2),
        # the output and staging folders while mine ran: DuckDB's spill files, staged outputs
        "peak_disk_mib": round(spilled / 2**20),
        "impressions_per_s": round(report["input"]["rows_read"] / seconds),
        "candidates": sum(report["candidates"].values()),
    }


def sizing_markdown(scale: str, work: Path, results: list[dict]) -> str:
    begin, end = markers("mining-sizing")
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    log = work / scale / "search_log.parquet"
    log_mib = log.stat().st_size / 2**20 if log.exists() else None
    lines = [
        begin,
        f"`make bench-mining-sizing` on {datetime.now(UTC):%b %d %Y}, commit {current_commit()}, "
        f"{cpu} ({os.cpu_count()} CPUs), Python {platform.python_version()}: `qrewrite mine` at "
        f"`{scale}`"
        + (f" ({log_mib:.1f} MiB of search log)" if log_mib else "")
        + ", each run in a fresh process; peak disk is what mine's output and staging folders "
        "held while it ran (DuckDB's spill files and the staged outputs, polled every 0.2 s).",
        "",
        "| DuckDB threads | memory limit | mining | impressions/s | peak RSS | peak disk "
        "| candidates |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['threads']} | {r['memory_limit']} | {r['mine_s']:.1f} s | "
            f"{r['impressions_per_s']:,} | {r['peak_rss_gib']} GiB | {r['peak_disk_mib']:,} MiB "
            f"| {r['candidates']:,} |"
        )
    lines.append(end)
    return "\n".join(lines)


def to_markdown(results: list[dict], threads: int) -> str:
    machine = f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    lines = [
        BEGIN,
        f"Measured {datetime.now(UTC):%Y-%m-%d} on this project's CPU machine ({machine}), "
        f"DuckDB threads={threads}, by `make bench` (benchmarks/bench_mining.py). Mining time is "
        "the wall time of the `qrewrite mine` process (start-up, imports, all three miners, "
        "query stats, writing outputs); the scan is one DuckDB query touching every column of "
        "the same parquet file.",
        "",
        "| scale | impressions | searches | log size | synth | full scan | mining | "
        "impressions/s | mining / scan | peak RSS (mining) | candidates |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        synth = f"{r['synth_s']:.0f} s" if r["synth_s"] else "(cached)"
        lines.append(
            f"| {r['scale']} | {r['impressions']:,} | {r['searches']:,} | {r['file_mb']} MiB | "
            f"{synth} | {r['scan_s']:.1f} s | {r['mine_s']:.1f} s | {r['impressions_per_s']:,} | "
            f"{r['mine_over_scan']}x | {r['mine_peak_rss_gib']} GiB | {r['candidates']:,} |"
        )
    lines += [
        "",
        "Targets: >= 1M impressions/s, peak RSS < 4 GiB at huge, mining within 10x of a full scan.",
        END,
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--scales", nargs="+", default=["large", "huge"], choices=["tiny", "demo", "large", "huge"]
    )
    parser.add_argument("--work", type=Path, default=Path(".bench"))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--write", type=Path, help="update this Markdown file's mining section")
    parser.add_argument(
        "--sizing",
        action="store_true",
        help="mine the last scale with 1 and 2 threads and under smaller memory limits",
    )
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.sizing:
        scale = args.scales[-1]
        ensure_market(scale, args.work, args.seed)
        runs = []
        for threads, limit in SIZING_RUNS:
            runs.append(mine_sized(scale, args.work, args.seed, threads, limit))
            print(json.dumps(runs[-1]), flush=True)
        section = sizing_markdown(scale, args.work, runs)
        print(section)
        if args.write:
            write_section(args.write, "mining-sizing", section, "Mining: threads and memory")
            print(f"wrote {args.write}")
        return
    results = []
    for scale in args.scales:
        r = bench_scale(scale, args.work, args.seed, args.threads)
        print(json.dumps(r), flush=True)
        results.append(r)
    section = to_markdown(results, args.threads)
    print(section)
    if args.write:
        write_section(args.write, "mining", section, "Log mining")
        print(f"wrote {args.write}")


if __name__ == "__main__":
    main()
