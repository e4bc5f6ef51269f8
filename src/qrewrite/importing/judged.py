"""``qrewrite import-judged``: a public relevance dataset -> catalog + search_log + truth.

Files shaped like Amazon ESCI, Wayfair WANDS or the Kaggle/Home Depot sets (query, product id,
product title, graded judgment) are what a shop has before it has logs. Judged products become
impressions of replayed searches, and grades drive engagement with the simulator's behaviour
model (position bias, then grade-dependent click, cart and purchase), seeded, so every later step
runs unchanged on imported data. The judgments themselves become ``truth/judgments.parquet``.
"""

from __future__ import annotations

import csv
import html
import io
import json
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from qrewrite import __version__, schemas
from qrewrite.errors import DataError
from qrewrite.market import behaviour
from qrewrite.market.behaviour import simulate_engagement
from qrewrite.outputs import staged_output
from qrewrite.schemas import epoch_ms
from qrewrite.tables import not_found, read_parquet_table, table_fingerprint
from qrewrite.text import INVISIBLE, normalize_query

COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "query": ("query", "search_term", "query_text", "keyword", "search_query"),
    "product_id": ("product_id", "asin", "item_id", "sku", "product_uid", "pid"),
    "title": ("product_title", "title", "product_name", "name"),
    "grade": ("esci_label", "label", "grade", "relevance", "judgment", "median_relevance"),
    "brand": ("product_brand", "brand"),
    "colour": ("product_color", "color", "colour"),
    "category": ("product_class", "category", "product_category"),
}

LABEL_SCALES: dict[str, dict[str, int]] = {
    # ESCI: Exact 2; Substitute and Complement are partially relevant; Irrelevant 0.
    "esci": {
        "e": 2,
        "exact": 2,
        "s": 1,
        "substitute": 1,
        "c": 1,
        "complement": 1,
        "i": 0,
        "irrelevant": 0,
    },
    "wands": {"exact": 2, "partial": 1, "irrelevant": 0},
}


@dataclass
class JudgedImportConfig:
    """Settings of ``qrewrite import-judged``. Column names left empty are detected."""

    seed: int = 7
    grade_scale: str = "auto"  # esci | wands | numeric:MIN:MAX | auto (labels only)
    query_column: str = ""
    product_id_column: str = ""
    title_column: str = ""
    grade_column: str = ""
    sessions_per_query: int = 3
    max_page_size: int = 40
    start_date: str = "2026-01-05"
    days: int = 28
    position_bias_exponent: float = behaviour.POSITION_BIAS_EXPONENT
    click_given_seen: tuple[float, float, float] = behaviour.CLICK_GIVEN_SEEN
    cart_given_click: tuple[float, float, float] = behaviour.CART_GIVEN_CLICK
    purchase_given_cart: tuple[float, float, float] = behaviour.PURCHASE_GIVEN_CART


def read_judged_file(path: Path) -> pd.DataFrame:
    """Read TSV/CSV (strict UTF-8) or parquet, with one-line errors for what goes wrong."""
    if not path.exists():
        raise DataError(f"{path}: {not_found(path) if path.is_symlink() else 'file not found'}")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes:
        return read_parquet_table(path, "judged").to_pandas()
    if not any(s in (".csv", ".tsv", ".txt") for s in suffixes):
        raise DataError(f"{path}: unknown file type; expected .tsv, .csv or .parquet")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path}: line {line}: byte 0x{raw[e.start]:02x} is not valid UTF-8; "
            "re-encode the file as UTF-8 (e.g. iconv -f latin1 -t utf-8)"
        ) from e
    sep = "\t" if ".tsv" in suffixes or (".txt" in suffixes and "\t" in text[:4096]) else ","
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0]), delimiter=sep), [])
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise DataError(f"{path}: column {repeated[0]!r} appears twice in the header; keep one")
    # NUL bytes would end a field early in the parser ("blue\0\0 shoes" read as "blue"):
    # removed, and the lines that held them counted in the manifest
    nul_lines = sum(1 for line in text.splitlines() if "\x00" in line)
    text = text.replace("\x00", "")
    try:
        df = pd.read_csv(
            io.StringIO(text), sep=sep, dtype=str, keep_default_na=False, na_values=[""]
        )
    except pd.errors.ParserError as e:
        raise DataError(f"{path}: cannot parse as {'TSV' if sep == chr(9) else 'CSV'} ({e})") from e
    except pd.errors.EmptyDataError as e:
        raise DataError(f"{path}: no header and no rows") from e
    if df.empty:
        raise DataError(f"{path}: has a header but no rows")
    df.attrs["lines_with_nul_bytes"] = nul_lines
    # the file line each record starts on (a quoted field may span lines), for the quarantine
    starts, end = [], 0
    reader = csv.reader(io.StringIO(text), delimiter=sep)
    for record in reader:
        if record:  # the parser skips blank lines too
            starts.append(end + 1)
        end = reader.line_num
    if len(starts) == len(df) + 1:
        df.attrs["file_lines"] = starts[1:]
    return df


def _resolve_column(df: pd.DataFrame, role: str, explicit: str, path: Path) -> str | None:
    lower = {c.lower(): c for c in df.columns}
    if explicit:
        if explicit not in df.columns:
            raise DataError(
                f"{path}: column {explicit!r} (given for {role}) not found; "
                f"columns are {', '.join(map(str, df.columns))}"
            )
        return explicit
    for alias in COLUMN_ALIASES[role]:
        if alias in lower:
            return lower[alias]
    return None


def map_grades(values: pd.Series, scale: str, path: Path) -> tuple[pd.Series, str]:
    """Grades 0/1/2 (nullable where a value is not on the scale) and the scale used."""
    text = values.astype("string").str.strip()
    if scale == "auto":
        lowered = text.dropna().str.lower()
        labels = set(lowered.unique())
        # The label scale covering most values wins; stray labels are quarantined, not guessed.
        coverage = {n: lowered.isin(list(m)).mean() for n, m in LABEL_SCALES.items()}
        best = max(coverage, key=lambda n: coverage[n]) if len(lowered) else None
        if best is not None and coverage[best] >= 0.8:
            scale = best
        else:
            numeric = pd.to_numeric(text, errors="coerce")
            if numeric.notna().all():
                raise DataError(
                    f"{path}: grades are numeric ({numeric.min():g}..{numeric.max():g}); declare "
                    "their range with --grade-scale numeric:MIN:MAX"
                )
            sample = ", ".join(sorted(labels)[:6])
            raise DataError(
                f"{path}: cannot tell the grade scale from labels ({sample}); pass --grade-scale "
                "esci, wands or numeric:MIN:MAX"
            )
    if scale in LABEL_SCALES:
        return text.str.lower().map(LABEL_SCALES[scale]).astype("Int8"), scale
    if scale.startswith("numeric:"):
        try:
            _, lo_s, hi_s = scale.split(":")
            lo, hi = float(lo_s), float(hi_s)
        except ValueError as e:
            raise DataError(f"--grade-scale {scale!r}: expected numeric:MIN:MAX") from e
        if hi <= lo:
            raise DataError(f"--grade-scale {scale!r}: MAX must be greater than MIN")
        # blank, "n/a" and NaN grades become NaN (quarantined below), not nullable NA, which
        # no comparison can decide
        v = pd.Series(
            pd.to_numeric(text, errors="coerce").to_numpy(dtype="float64", na_value=np.nan),
            index=text.index,
        )
        frac = (v - lo) / (hi - lo)
        # Thirds of the declared range: top third relevant, middle partial, bottom irrelevant.
        grade = pd.Series(
            np.where(frac >= 2 / 3, 2, np.where(frac >= 1 / 3, 1, 0)), index=v.index
        ).astype("Int8")
        grade[(v < lo) | (v > hi) | v.isna()] = pd.NA
        return grade, scale
    raise DataError(f"--grade-scale {scale!r}: expected esci, wands, numeric:MIN:MAX or auto")


# the bounds of the catalog and search_log contracts (data_contracts/), enforced row by row here
MIN_TITLE_CHARS, MAX_TITLE_CHARS = 3, 400
MAX_QUERY_CHARS = 300
MIN_UNIQUE_TITLES = 0.5

# what import-judged writes into its output folder, and replaces as a whole on every run
IMPORTED_OUTPUTS = (
    "catalog.parquet",
    "search_log.parquet",
    "judgments.parquet",
    "truth",
    "quarantine",
    "manifest.json",
)


@dataclass
class ImportManifest:
    """What ``import-judged`` wrote; :meth:`to_dict` is ``manifest.json`` (written with sorted
    keys)."""

    kind: str  # "judged"
    qrewrite_version: str
    source: str  # the judged file
    config: dict[str, Any]  # ``asdict`` of :class:`JudgedImportConfig`
    grade_scale: str  # the scale the grades were read on
    columns: dict[str, str]  # role -> the file's column
    window: dict[str, str]  # start, end (ISO)
    counts: dict[str, Any]  # rows read, set aside by reason, judgments, queries, products, ...
    tables: dict[str, Any]  # table name -> its path(s) in the output folder
    # what this machine made of the file (the replayed log is seeded): compare across machines
    fingerprints: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a mapping, keys in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary_lines(self, out_dir: str | Path) -> list[str]:
        """What ``import-judged`` says when it is done: what it kept, and what it set aside."""
        c = self.counts
        lines = [
            f"import-judged: {c['judgments']:,} judgments of {c['queries']:,} queries over "
            f"{c['products']:,} products (scale {self.grade_scale}) -> {out_dir}"
        ]
        rejected = sum(c["rows_rejected"].values())
        if rejected:
            reasons = ", ".join(f"{k}: {v}" for k, v in c["rows_rejected"].items())
            lines.append(
                f"import-judged: set aside {rejected:,} of {c['rows_read']:,} rows ({reasons}); "
                f"see {Path(out_dir) / 'quarantine' / 'judged_rejected.parquet'}"
            )
        return lines


def import_judged(
    config: JudgedImportConfig, *, input_path: str | Path, out_dir: str | Path
) -> ImportManifest:
    """Convert a judged file into ``out_dir`` (catalog, search_log, truth, manifest)."""
    path, out = Path(input_path), Path(out_dir)
    df = read_judged_file(path)
    cols = {
        role: _resolve_column(df, role, getattr(config, f"{role}_column", ""), path)
        for role in ("query", "product_id", "title", "grade")
    }
    missing = [r for r, c in cols.items() if c is None]
    if missing:
        wanted = "; ".join(f"{r}: one of {', '.join(COLUMN_ALIASES[r])}" for r in missing)
        raise DataError(
            f"{path}: cannot find column(s) for {wanted} (columns are "
            f"{', '.join(map(str, df.columns))}); name them with --{missing[0].replace('_', '-')}"
            "-column"
        )
    extras = {r: _resolve_column(df, r, "", path) for r in ("brand", "colour", "category")}

    rows = pd.DataFrame(
        {
            # the file line of a text file's record; a parquet file's row number from 0
            "row": df.attrs["file_lines"]
            if "file_lines" in df.attrs
            else np.arange(len(df)) + (0 if ".parquet" in path.suffixes else 2),
            "raw_query": df[cols["query"]].astype("string"),
            "product_id": df[cols["product_id"]].astype("string").str.strip(),
            "title": df[cols["title"]].astype("string").str.strip(),
            "label": df[cols["grade"]].astype("string"),
        }
    )
    for role, col in extras.items():
        rows[role] = df[col].astype("string") if col else pd.NA
    rows["grade"], scale = map_grades(df[cols["grade"]], config.grade_scale, path)
    rows["query"] = (
        rows["raw_query"]
        .map(lambda q: normalize_query(q) if isinstance(q, str) else "", na_action="ignore")
        .fillna("")
    )

    # characters nobody can see (controls, zero-width, bidi marks): removed from titles (queries
    # lose them in normalisation), and the rows that held them counted
    invisible = rows["raw_query"].str.contains(INVISIBLE, na=False) | rows["title"].str.contains(
        INVISIBLE, na=False
    )
    rows["title"] = rows["title"].str.replace(INVISIBLE, "", regex=True).str.strip()

    # titles scraped from HTML keep their entities ("Tom &amp; Jerry"): read them as text
    escaped = rows["title"].str.contains(r"&(?:#\d+|#x[0-9a-fA-F]+|[A-Za-z]+);", na=False)
    rows.loc[escaped, "title"] = rows.loc[escaped, "title"].map(html.unescape)

    reason = pd.Series(pd.NA, index=rows.index, dtype="string")
    reason[rows["grade"].isna()] = "grade_not_on_scale"
    reason[rows["title"].isna() | (rows["title"] == "")] = "empty_title"
    # the catalog contract's bounds: a title of one or two characters names no product; a
    # longer one than a line is cut to it (and counted)
    reason[rows["title"].str.len().lt(MIN_TITLE_CHARS).fillna(False) & rows["title"].ne("")] = (
        "title_too_short"
    )
    long_titles = rows["title"].str.len().gt(MAX_TITLE_CHARS).fillna(False)
    rows.loc[long_titles, "title"] = rows.loc[long_titles, "title"].str.slice(0, MAX_TITLE_CHARS)
    reason[rows["query"].str.len() > MAX_QUERY_CHARS] = "query_too_long"
    reason[rows["product_id"].isna() | (rows["product_id"] == "")] = "empty_product_id"
    reason[rows["query"] == ""] = "null_or_empty_query"
    # A pair judged more than once: one row stays, with the (lower) median of its grades when
    # people disagreed; the others are set aside and counted.
    usable = reason.isna()
    key = ["query", "product_id"]
    grades = rows[usable].groupby(key)["grade"]
    median = grades.transform(lambda g: int(np.floor(np.median(g.astype(int)))))
    conflicting = int((grades.nunique() > 1).sum())
    rows.loc[usable, "grade"] = median.astype("Int8")
    dup = rows.duplicated(key, keep="first") & usable
    reason[dup] = "duplicate_judgment"
    rejected = rows[reason.notna()].assign(reject_reason=reason[reason.notna()])
    kept = rows[reason.isna()].reset_index(drop=True)
    if kept.empty:
        raise DataError(f"{path}: no usable judgments ({len(rejected)} rows rejected)")
    catalog = kept.drop_duplicates("product_id", keep="first")
    if catalog["title"].nunique() / len(catalog) < MIN_UNIQUE_TITLES:
        raise DataError(
            f"{path}: {catalog['title'].nunique()} distinct titles for {len(catalog)} products; "
            f"a catalog needs at least {MIN_UNIQUE_TITLES:.0%} distinct titles to search in"
        )
    # everything at once when the import succeeds: a failure (a full disk) leaves a previous
    # import in out_dir whole, and a previous quarantine goes when this run has none
    with staged_output(out, IMPORTED_OUTPUTS, step="import-judged", inputs=[path]) as stage:
        (stage / "truth").mkdir()
        if len(rejected):
            (stage / "quarantine").mkdir()
            rejected.astype({"grade": "Int8"}).to_parquet(
                stage / "quarantine" / "judged_rejected.parquet", index=False
            )

        title_conflicts = int(kept.groupby("product_id")["title"].nunique().gt(1).sum())
        cat = pd.DataFrame(
            {
                "product_id": catalog["product_id"].astype(object),
                "title": catalog["title"].astype(object),
                "category": catalog["category"].astype(object),
                "product_type": None,
                "brand": catalog["brand"].astype(object),
                "colour": catalog["colour"].astype(object),
                "material": None,
                "size": None,
                "gender": None,
                "price": np.nan,
                "feature": None,
                "has_feature": None,
            }
        ).replace({pd.NA: None})
        pq.write_table(
            pa.Table.from_pandas(cat, schema=schemas.CATALOG, preserve_index=False),
            stage / "catalog.parquet",
            compression="zstd",
        )
        judgments = kept[["query", "raw_query", "product_id", "grade", "label"]].astype(
            {"query": object, "raw_query": object, "product_id": object, "label": object}
        )
        judgments.to_parquet(stage / "truth" / "judgments.parquet", index=False)
        # The same judgments as an input a shop has (what the teacher calibrates on); truth/ stays
        # evaluation's, so that the rule "only evaluation reads truth" holds on imported data too.
        judgments[["query", "product_id", "grade"]].to_parquet(
            stage / "judgments.parquet", index=False
        )

        log_table = _replay(config, kept)
        pq.write_table(log_table, stage / "search_log.parquet", compression="zstd")

        start = datetime.fromisoformat(config.start_date)
        manifest = ImportManifest(
            kind="judged",
            qrewrite_version=__version__,
            source=str(path),
            config=asdict(config),
            grade_scale=scale,
            columns={**cols, **{k: v for k, v in extras.items() if v}},
            window={
                "start": start.isoformat(),
                "end": (start + timedelta(days=config.days)).isoformat(),
            },
            counts={
                "rows_read": len(rows),
                "rows_rejected": {
                    k: int(v)
                    for k, v in rejected["reject_reason"].value_counts().sort_index().items()
                },
                "judgments": len(kept),
                "queries": int(kept["query"].nunique()),
                "products": len(cat),
                "products_with_conflicting_titles": title_conflicts,
                "duplicates_with_conflicting_grades": conflicting,
                "rows_with_invisible_characters_removed": int(invisible.sum()),
                "lines_with_nul_bytes_removed": int(df.attrs.get("lines_with_nul_bytes", 0)),
                "titles_truncated": int((long_titles & reason.isna()).sum()),
                "titles_with_html_entities": int(
                    rows.loc[escaped & reason.isna(), "product_id"].nunique()
                ),
                "grades": {
                    int(k): int(v) for k, v in kept["grade"].value_counts().sort_index().items()
                },
                "impressions": log_table.num_rows,
            },
            tables={
                "catalog": "catalog.parquet",
                "search_log": "search_log.parquet",
                "judgments": "judgments.parquet",
                "truth": ["truth/judgments.parquet"],
            },
            fingerprints={
                name: table_fingerprint(pq.read_table(stage / f"{name}.parquet"))
                for name in ("catalog", "search_log", "judgments")
            },
        )
        (stage / "manifest.json").write_text(
            json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"
        )
    return manifest


def _replay(config: JudgedImportConfig, kept: pd.DataFrame) -> pa.Table:
    """Each judged query is searched ``sessions_per_query`` times; its judged products, in a
    seeded random order, form the page; grades drive engagement."""
    rng = np.random.default_rng(config.seed)
    judged = kept.assign(_order=rng.random(len(kept))).sort_values(["query", "_order"])
    judged["position"] = judged.groupby("query").cumcount() + 1
    judged = judged[judged["position"] <= config.max_page_size]
    queries = judged["query"].drop_duplicates().tolist()
    q_index = {q: i for i, q in enumerate(queries)}
    judged_q = judged["query"].map(q_index).to_numpy()

    reps = config.sessions_per_query
    rep = np.repeat(np.arange(reps), len(judged))
    base = np.tile(np.arange(len(judged)), reps)
    search = rep * len(queries) + judged_q[base]  # one search per (query, replay)
    n_searches = reps * len(queries)
    window_ms = config.days * 86_400_000
    search_ts = epoch_ms(config.start_date) + rng.integers(0, window_ms, size=n_searches)

    grades = judged["grade"].to_numpy(dtype=np.int64)[base]
    pos = judged["position"].to_numpy()[base]
    clicked, carted, bought = simulate_engagement(
        grades,
        pos,
        rng,
        config.position_bias_exponent,
        config.click_given_seen,
        config.cart_given_click,
        config.purchase_given_cart,
    )

    order = np.lexsort((pos, search))
    raw_query = judged["raw_query"].astype(object).to_numpy()[base]
    return pa.table(
        {
            "session_id": pa.array(search[order], pa.int64()),
            "user_id": pa.array(search[order], pa.int64()),
            "search_id": pa.array(search[order], pa.int64()),
            "timestamp": pa.array(search_ts[search[order]], pa.int64()).cast(pa.timestamp("ms")),
            "query": pa.array(raw_query[order], pa.string()),
            "position": pa.array(pos[order], pa.int32()),
            "product_id": pa.array(
                judged["product_id"].astype(object).to_numpy()[base][order], pa.string()
            ),
            "clicked": pa.array(clicked[order]),
            "carted": pa.array(carted[order]),
            "purchased": pa.array(bought[order]),
        },
        schema=schemas.SEARCH_LOG,
    )
