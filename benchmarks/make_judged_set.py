"""A judged file of the size of the public product-search sets (9,400 queries and about 64,000
judged pairs over some 34,000 products of a 45,700-product catalog, grades 1-3), made from the
simulator, for measuring the judged path at that size where no such set can be fetched
(``make bench-judged-scale``).

Each query is one of the simulator's phrasings of an intent; its judged products are what a
judging campaign pools: the engine's top 3 for the query, one product of the same type and 3
products no other query was judged with, graded by the simulator's truth (1 irrelevant,
2 partial, 3 relevant). The titles are the simulator's, shorter and more regular than real ones,
and two thirds of the pairs are irrelevant: the figures measure the pipeline at that size, not
its quality on real text.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from qrewrite.market.simulate import SynthConfig, synthesize
from qrewrite.market.truth import grade_pairs
from qrewrite.search_engine import NO_RESULT, LexicalSearchEngine


def query_intents(market: Path) -> pd.DataFrame:
    """One phrasing per query text, ``query`` and ``intent_id``: the intent that says it most."""
    phrasings = pd.read_parquet(market / "truth" / "queries.parquet")
    phrasings = phrasings.sort_values("weight", ascending=False, kind="stable")
    return phrasings.drop_duplicates("query").reset_index(drop=True)


def judged_pairs(
    market: Path, *, queries: int, top: int, same_type: int, random: int, seed: int
) -> pd.DataFrame:
    """Up to ``top + same_type + random`` graded products for each of ``queries`` query texts."""
    rng = np.random.default_rng(seed)
    catalog = pd.read_parquet(market / "catalog.parquet")
    intents = pd.read_parquet(market / "truth" / "intents.parquet")
    phrasings = query_intents(market)
    chosen = phrasings.iloc[
        np.sort(rng.choice(len(phrasings), size=min(queries, len(phrasings)), replace=False))
    ]
    engine = LexicalSearchEngine(catalog["title"].tolist())
    found, _ = engine.search(chosen["query"].tolist(), top)
    by_type = catalog.groupby("product_type").indices
    # random products without replacement across queries, as most titles of a public set are
    # judged once: the set then holds as many distinct titles as those do
    unseen = iter(rng.permutation(len(catalog)).tolist() * (1 + queries * random // len(catalog)))
    rows_q, rows_i, rows_p = [], [], []
    for (query, intent), hits in zip(
        chosen[["query", "intent_id"]].itertuples(index=False), found, strict=True
    ):
        products = [int(p) for p in hits if p != NO_RESULT]
        kind = intents.iloc[int(intent)]["product_type"]
        pool = by_type.get(kind, np.arange(len(catalog)))
        products += rng.choice(pool, size=min(same_type, len(pool)), replace=False).tolist()
        products += [next(unseen) for _ in range(random)]
        for p in dict.fromkeys(products):
            rows_q.append(query)
            rows_i.append(int(intent))
            rows_p.append(p)
    grades = grade_pairs(intents, catalog, np.array(rows_i), np.array(rows_p))
    return pd.DataFrame(
        {
            "query": rows_q,
            "product_id": catalog["product_id"].to_numpy()[rows_p],
            "product_title": catalog["title"].to_numpy()[rows_p],
            "grade": np.asarray(grades, dtype=np.int64) + 1,
        }
    )


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="the judged TSV to write")
    parser.add_argument("--work", type=Path, help="where the marketplace goes (default: beside)")
    parser.add_argument("--queries", type=int, default=9_400)
    parser.add_argument("--products", type=int, default=45_700)
    parser.add_argument("--intents", type=int, default=12_000)
    parser.add_argument("--top", type=int, default=3, help="the engine's top results per query")
    parser.add_argument("--same-type", type=int, default=1)
    parser.add_argument("--random", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = make_parser().parse_args(argv)
    market = args.work or args.out.parent / "market"
    if not (market / "truth" / "queries.parquet").exists():
        synthesize(
            SynthConfig(
                seed=args.seed,
                scale="large",
                n_products=args.products,
                n_intents=args.intents,
                n_sessions=20_000,  # only the catalog and the intents' phrasings are used
            ),
            out_dir=market,
        )
    judged = judged_pairs(
        market,
        queries=args.queries,
        top=args.top,
        same_type=args.same_type,
        random=args.random,
        seed=args.seed,
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    judged.to_csv(args.out, sep="\t", index=False)
    counts = judged["grade"].value_counts().sort_index().to_dict()
    print(
        f"make_judged_set: {len(judged):,} judged pairs, {judged['query'].nunique():,} queries, "
        f"{judged['product_id'].nunique():,} products, grades 1-3 {counts} -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
