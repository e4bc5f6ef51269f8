"""Where relevance is lost: top rewrites that drop or add a value the query names, by variant.

Reads the runs ``make bench-quality`` leaves (``--runs .bench/quality/market-seed*``): each
run's evaluation (``rewrites.parquet``, the truth grade of every top rewrite) and its catalog.
A value is a number (a size, a count, a price bound) or a one-word colour, material or gender of
the catalog, as GRPO's ``keeps_values`` reward reads them (``qrewrite.training.rewards``).
Prints a Markdown table and, with ``--write``, replaces its section of ``docs/benchmarks.md``.
An analysis of measured runs, never a test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from docs_section import publish_table, runs_parser

from qrewrite.training.rewards import attribute_values, named_values


def _pct(part: float, whole: float) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "-"


def run_rows(run: Path) -> list[dict]:
    """One row per variant of ``run``: top rewrites that drop a value, that add one, the rest,
    with the share relevant (truth grade 2) of each."""
    rewrites_file = next(run.glob("latest/**/evaluation/rewrites.parquet"))
    catalog_file = next(run.glob("latest/**/market/catalog.parquet"))
    vocabulary = attribute_values(pd.read_parquet(catalog_file))
    top = pd.read_parquet(rewrites_file)
    top = top[top["rank"] == 1]
    rows = []
    for variant, group in top.groupby("variant", sort=False):
        wanted = [named_values(q, vocabulary) for q in group["query"]]
        named = [named_values(r, vocabulary) for r in group["rewrite"]]
        drops = pd.Series([bool(w - n) for w, n in zip(wanted, named, strict=True)], group.index)
        adds = pd.Series([bool(n - w) for w, n in zip(wanted, named, strict=True)], group.index)
        relevant = group["truth_grade"] == 2
        rest = ~drops & ~adds
        rows.append(
            {
                "run": run.name,
                "variant": variant,
                "top rewrites": len(group),
                "drop a value": _pct(drops.sum(), len(group)),
                "relevant when dropping": _pct((relevant & drops).sum(), drops.sum()),
                "add a value": _pct(adds.sum(), len(group)),
                "relevant when adding": _pct((relevant & adds).sum(), adds.sum()),
                "relevant otherwise": _pct((relevant & rest).sum(), rest.sum()),
            }
        )
    return rows


def main() -> None:
    args = runs_parser(__doc__).parse_args()
    publish_table(
        "rewrite-errors",
        "Where relevance is lost",
        f"`benchmarks/rewrite_errors.py` on {datetime.now(UTC):%b %d %Y} over the runs of "
        f"`make bench-quality`{f' at {args.commit}' if args.commit else ''}: each variant's top "
        "rewrite of every held-out query, relevance by the simulator's truth (grade 2).",
        pd.DataFrame([row for run in args.runs for row in run_rows(run)]),
        args.write,
    )


if __name__ == "__main__":
    main()
