"""The data steps: synthesize or import a shop, mine its search log, check its contracts.

Each command's ``add_*`` (its parser) sits beside its ``run_*`` (what it does)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from qrewrite.cli.common import Subparsers, add_config_flags, add_progress_flag, with_flags
from qrewrite.config import load_config
from qrewrite.errors import ContractViolation, QrewriteError


def add_parsers(sub: Subparsers) -> None:
    """This group's commands, in the order ``qrewrite --help`` lists them."""
    add_synth(sub)
    add_import_judged(sub)
    add_mine(sub)
    add_validate(sub)


def add_synth(sub: Subparsers) -> None:
    p = sub.add_parser(
        "synth",
        help="generate a seeded synthetic marketplace (catalog, search log, truth)",
        description="Generate a seeded synthetic shop: catalog, search_log and truth/ as parquet "
        "(schemas in docs/data.md). The same seed and scale give the same bytes.",
    )
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--seed", type=int, help="random seed (default 7)")
    p.add_argument(
        "--scale",
        choices=["tiny", "demo", "large", "huge"],
        help="tiny: tests, seconds; demo (default): ~0.6M impressions; large: ~10M; huge: ~100M "
        "written in chunks with bounded memory",
    )
    add_progress_flag(p)
    add_config_flags(p, "synth")
    p.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    from qrewrite.market.simulate import SynthConfig, synthesize

    cfg = with_flags(
        load_config(SynthConfig, args.config, "synth", args.overrides),
        seed=args.seed,
        scale=args.scale,
    )
    manifest = synthesize(cfg, out_dir=args.out, progress=not args.no_progress)
    print("\n".join(manifest.summary_lines(args.out)))
    return 0


def add_import_judged(sub: Subparsers) -> None:
    p = sub.add_parser(
        "import-judged",
        help="convert an ESCI/WANDS/Kaggle-shaped judged file into catalog + search_log + truth",
        description="Convert a relevance-judgment file (TSV/CSV/parquet with query, product id, "
        "product title, grade) into the catalog + search_log + truth schema, replaying each "
        "query with grade-driven engagement (docs/data.md#judged-import).",
    )
    p.add_argument("--input", required=True, help="the judged file (.tsv, .csv or .parquet)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--grade-scale",
        help="esci (E/S/C/I), wands (Exact/Partial/Irrelevant), numeric:MIN:MAX, or auto "
        "(default; detects label scales, numeric grades need their declared range)",
    )
    p.add_argument("--query-column", help="column holding the query (default: detected)")
    p.add_argument("--product-id-column", help="column holding the product id (default: detected)")
    p.add_argument("--title-column", help="column holding the product title (default: detected)")
    p.add_argument("--grade-column", help="column holding the judgment (default: detected)")
    p.add_argument("--seed", type=int, help="seed of the replayed engagement (default 7)")
    add_config_flags(p, "import_judged")
    p.set_defaults(func=run_import_judged)


def run_import_judged(args: argparse.Namespace) -> int:
    from qrewrite.importing.judged import JudgedImportConfig, import_judged

    cfg = with_flags(
        load_config(JudgedImportConfig, args.config, "import_judged", args.overrides),
        seed=args.seed,
        grade_scale=args.grade_scale,
        query_column=args.query_column,
        product_id_column=args.product_id_column,
        title_column=args.title_column,
        grade_column=args.grade_column,
    )
    manifest = import_judged(cfg, input_path=args.input, out_dir=args.out)
    print("\n".join(manifest.summary_lines(args.out)))
    return 0


def add_mine(sub: Subparsers) -> None:
    p = sub.add_parser(
        "mine",
        help="mine rewrite candidates and query stats from a search log (DuckDB)",
        description="Mine DIR/search_log.parquet and DIR/catalog.parquet with DuckDB: session "
        "reformulations, co-engagement and engaged titles -> rewrite_candidates.parquet; "
        "per-query statistics -> query_stats.parquet; mining_report.json with every count, "
        "mining_report.md to read.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="directory with catalog.parquet and "
        "search_log.parquet (output of synth or import-judged)",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--start", help="first day of the time window, inclusive (YYYY-MM-DD)")
    p.add_argument("--end", help="end of the time window, exclusive (YYYY-MM-DD)")
    add_config_flags(p, "mine")
    p.set_defaults(func=run_mine)


def run_mine(args: argparse.Namespace) -> int:
    from qrewrite.mining.config import MiningConfig
    from qrewrite.mining.mine import mine

    cfg = with_flags(
        load_config(MiningConfig, args.config, "mine", args.overrides),
        start=args.start,
        end=args.end,
    )
    report = mine(cfg, data_dir=args.data, out_dir=args.out)
    print("\n".join(report.summary_lines(args.out)))
    return 0


def add_validate(sub: Subparsers) -> None:
    p = sub.add_parser(
        "validate",
        help="check a table against its data contract (Great Expectations)",
        description="Validate a parquet table against data_contracts/NAME.json. Exits 4 and "
        "names each failed expectation when the contract is broken.",
    )
    p.add_argument("--contract", help="contract name (see --list)")
    p.add_argument("--data", help="the parquet file to check")
    p.add_argument("--report", help="directory for NAME.md, NAME.json and a Data Docs site")
    p.add_argument(
        "--max-rows",
        type=int,
        default=5_000_000,
        help="validate an evenly spread sample of row groups above this many rows "
        "(default 5,000,000; the report says when it sampled)",
    )
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--list", action="store_true", help="list the known contracts and exit")
    p.set_defaults(func=run_validate)


def run_validate(args: argparse.Namespace) -> int:
    from qrewrite.contracts import available_contracts, validate_path

    if args.list:
        print("\n".join(available_contracts()))
        return 0
    if not args.contract or not args.data:
        raise QrewriteError("validate: --contract and --data are required (or --list)")
    result = validate_path(args.contract, args.data, args.report, max_rows=args.max_rows)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    if not result.success:
        raise ContractViolation(result.summary_line())
    if not args.json:
        print(result.summary_line())
        if args.report:
            print(
                f"validate: report {Path(args.report) / (args.contract + '.md')}, "
                f"Data Docs {result.data_docs}"
            )
    return 0
