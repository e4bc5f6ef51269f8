"""``mining_report.md`` and ``query_frequency.png``: what a person checks after a mining run."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def plot_query_frequency(query_stats: pd.DataFrame, candidates: dict[str, int], path: Path) -> None:
    """Rank-frequency of queries (log-log: a straight-ish line is Zipf-like traffic) beside the
    number of candidates per miner."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never a display
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    counts = np.sort(query_stats["searches"].to_numpy())[::-1]
    # ~400 log-spaced ranks draw the same curve as every query, at a fraction of the cost.
    ranks = np.unique(np.geomspace(1, len(counts), num=min(len(counts), 400)).astype(int))
    ax1.loglog(ranks, counts[ranks - 1], marker=".", linestyle="none", markersize=3)
    ax1.set_xlabel("query rank")
    ax1.set_ylabel("searches")
    ax1.set_title(f"Query frequency ({len(counts):,} queries)")
    ax1.grid(True, which="major", alpha=0.3)
    names = list(candidates)
    ax2.barh(names, [candidates[n] for n in names], color="#4c72b0")
    for i, n in enumerate(names):
        ax2.text(candidates[n], i, f" {candidates[n]:,}", va="center")
    ax2.set_xlabel("candidate pairs")
    ax2.set_title("Rewrite candidates per miner")
    ax2.margins(x=0.25)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_mining_report(report: dict, query_stats: pd.DataFrame, out: Path) -> Path:
    """Write the Markdown report (and its plot) next to the mined tables; returns its path."""
    plot = out / "query_frequency.png"
    plot_query_frequency(query_stats, report["candidates"], plot)
    inp = report["input"]
    searches = query_stats["searches"]
    head = searches.sort_values(ascending=False)
    top_share = head.head(max(1, len(head) // 100)).sum() / max(1, head.sum())
    lines = [
        "# Mining report",
        "",
        f"Data: `{report['data_dir']}` ({inp['data_start']} .. {inp['data_end']}); window: "
        f"{report['config']['start'] or 'start'} .. {report['config']['end'] or 'end'}.",
        "",
        "## Input",
        "",
        "| | count |",
        "|---|---:|",
        f"| impressions read | {inp['rows_read']:,} |",
        *[f"| rejected: {k} (see quarantine/) | {v:,} |" for k, v in inp["rows_rejected"].items()],
        f"| outside the time window | {inp['rows_outside_window']:,} |",
        f"| duplicated impressions (counted once) | {inp['duplicate_impressions']:,} |",
        f"| duplicated engagement events (counted once) | {inp['duplicate_engaged_events']:,} |",
        f"| searches | {inp['searches']:,} |",
        f"| distinct raw queries / normalised | {inp['distinct_raw_queries']:,} / "
        f"{inp['distinct_queries']:,} |",
        f"| engagements on products missing from the catalog | "
        f"{report['engaged_pairs_with_unknown_product']:,} |",
        "",
        "## Queries",
        "",
        f"- {len(query_stats):,} queries; the top 1% carry {top_share:.0%} of searches; "
        f"{(searches == 1).mean():.0%} were searched once.",
        f"- mean search conversion (cvr) {query_stats['cvr'].mean():.3f}, click-through "
        f"{query_stats['ctr'].mean():.3f}; {int((query_stats['zero_result_searches'] > 0).sum()):,}"
        " queries had a zero-result search.",
        "",
        "## Candidates",
        "",
        "| miner | pairs |",
        "|---|---:|",
        *[f"| {k} | {v:,} |" for k, v in report["candidates"].items()],
        "",
        f"![query frequency and candidates]({plot.name})",
        "",
        f"Mined in {report['seconds']:.1f} s. Settings and every count: `mining_report.json`.",
    ]
    path = out / "mining_report.md"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
