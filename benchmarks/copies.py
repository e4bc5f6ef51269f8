"""Why the model copies: its greedy copies, how much it wants them, and what decoding past them
would serve.

Reads the runs ``make bench-quality`` leaves (``--runs .bench/quality/market-seed*``): each
run's multi-task SFT model, training sets, catalog and truth. For every held-out query it asks
the model for its greedy rewrite; for the copies, the model's probability of ending the rewrite
right after the query's words (P(stop)), and the rewrite decoded past the copy
(``continue_copies``), graded by the simulator's truth like evaluation's top rewrites. Prints a
Markdown table and, with ``--write``, replaces its section of ``docs/benchmarks.md``. An
analysis of measured runs, never a test.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
from docs_section import publish_table, runs_parser

from qrewrite.evaluation.evaluate import load_held_out
from qrewrite.evaluation.truth import GradedTruth
from qrewrite.search_engine import ProductRetriever
from qrewrite.serving.rewriter import GenerationSettings, Rewriter, prompt_texts
from qrewrite.text import normalize_query
from qrewrite.training.datasets import load_training_split

PAGE = 10


def stop_probability(rewriter: Rewriter, queries: list[str]) -> np.ndarray:
    """P(end of rewrite) right after the model has written each query's words as its rewrite."""
    import torch

    tok = rewriter.tokenizer
    texts = [p + q for p, q in zip(prompt_texts(tok, queries), queries, strict=True)]
    out: list[float] = []
    with torch.no_grad():
        for start in range(0, len(texts), 64):
            enc = tok(
                texts[start : start + 64],
                return_tensors="pt",
                padding=True,
                add_special_tokens=False,
            )
            logits = rewriter.model(**enc).logits[:, -1, :]  # left padding: the last is the end
            out += torch.softmax(logits, -1)[:, tok.eos_token_id].tolist()
    return np.asarray(out)


def run_row(run: Path) -> dict:
    root = next(run.glob("latest/build-training-datasets")).parent
    data = root / "stage-marketplace" / "market"
    datasets = root / "build-training-datasets" / "datasets"
    catalog = pd.read_parquet(data / "catalog.parquet")
    held = load_held_out(datasets, load_training_split(datasets / "sft", "sft"), catalog, 0, 0)
    queries = held.queries
    settings = GenerationSettings(max_new_tokens=16, abstain_on_copy=False)
    rewriter = Rewriter.from_dir(root / "sft-multitask" / "model", settings)
    greedy = [g[0] for g in rewriter.generate(queries)]
    copied = [
        normalize_query(g) == normalize_query(q) for q, g in zip(queries, greedy, strict=True)
    ]
    copies = [q for q, c in zip(queries, copied, strict=True) if c]
    others = [(q, g) for q, g, c in zip(queries, greedy, copied, strict=True) if not c]
    p_stop = stop_probability(rewriter, copies)
    settings.continue_copies = True
    past = [r[0] for r in rewriter._past_copies(copies, [[q] for q in copies])]
    truth = GradedTruth.load(data)
    retrieval = ProductRetriever(catalog, PAGE)

    def relevant(qs: list[str], rewrites: list[str]) -> float:
        pages = [r[:PAGE] for r in retrieval.ranked(rewrites)]
        grades = truth.rewrite_grades(qs, rewrites, pages)
        known = ~np.isnan(grades)
        return float(np.mean(grades[known] == 2)) if known.any() else float("nan")

    return {
        "run": run.name,
        "held-out queries": len(queries),
        "greedy copies": f"{100 * len(copies) / len(queries):.1f}%",
        "copies with P(stop) >= 0.5": f"{100 * float(np.mean(p_stop >= 0.5)):.1f}%",
        "median P(stop)": f"{float(np.median(p_stop)):.2f}",
        "relevant, decoded past the copy": f"{100 * relevant(copies, past):.1f}%",
        "relevant, the other greedy rewrites": (
            f"{100 * relevant([q for q, _ in others], [g for _, g in others]):.1f}%"
        ),
    }


def main() -> None:
    args = runs_parser(__doc__).parse_args()
    publish_table(
        "copies",
        "Copies",
        f"`benchmarks/copies.py` on {datetime.now(UTC):%b %d %Y} over the runs of "
        f"`make bench-quality`{f' at {args.commit}' if args.commit else ''}: the multi-task SFT "
        "model's greedy rewrite of every held-out query; for the copies, P(stop) right after the "
        "query's words and the rewrite decoded past the copy, relevance by the simulator's truth "
        "(grade 2).",
        pd.DataFrame([run_row(run) for run in args.runs]),
        args.write,
    )


if __name__ == "__main__":
    main()
