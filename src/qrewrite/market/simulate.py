"""The synthetic marketplace: shoppers search, look, click, cart, buy or reformulate.

Everything is vectorised per chunk of sessions and seeded per chunk, so the same seed gives the
same bytes at every scale and ``huge`` runs in bounded memory. Every scale caches the engine's
result page per distinct phrasing (shoppers who type the same query see the same page), which is
what keeps ``large`` and ``huge`` within minutes: the engine runs once per phrasing, not per search.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from tqdm.auto import tqdm

from qrewrite import __version__, schemas
from qrewrite.errors import ConfigError
from qrewrite.market import behaviour
from qrewrite.market.behaviour import deterministic_power, simulate_engagement
from qrewrite.market.catalog import generate_catalog
from qrewrite.market.intents import generate_intents, phrase_intents
from qrewrite.market.truth import grade_pairs
from qrewrite.outputs import staged_output
from qrewrite.schemas import epoch_ms
from qrewrite.search_engine import NO_RESULT, LexicalSearchEngine
from qrewrite.tables import table_fingerprint
from qrewrite.text import normalize_query

log = logging.getLogger(__name__)

# products, intents, sessions per scale; sessions average ~1.3 searches of ~9 impressions.
SCALES: dict[str, tuple[int, int, int]] = {
    "tiny": (600, 250, 3_000),
    "demo": (5_000, 2_000, 40_000),
    "large": (20_000, 8_000, 700_000),
    "huge": (20_000, 8_000, 7_000_000),
}


@dataclass
class SynthConfig:
    """Settings of ``qrewrite synth``. Sizes left at 0 take the scale's defaults."""

    seed: int = 7
    scale: str = "demo"
    n_products: int = 0
    n_intents: int = 0
    n_sessions: int = 0
    sessions_per_user: float = 3.0
    start_date: str = "2026-01-05"
    days: int = 28
    page_size: int = 10
    mean_variants: float = 2.5
    max_searches_per_session: int = 3
    # A shopper who bought nothing searches again with this probability...
    reformulate_if_no_click: float = 0.65
    reformulate_if_clicked: float = 0.3
    # ...and the behaviour model: examination by position, then grade-driven actions.
    position_bias_exponent: float = behaviour.POSITION_BIAS_EXPONENT
    click_given_seen: tuple[float, float, float] = behaviour.CLICK_GIVEN_SEEN
    cart_given_click: tuple[float, float, float] = behaviour.CART_GIVEN_CLICK
    purchase_given_cart: tuple[float, float, float] = behaviour.PURCHASE_GIVEN_CART
    intent_zipf_exponent: float = 1.05
    title_case_rate: float = 0.04
    stray_space_rate: float = 0.02
    chunk_sessions: int = 250_000

    def resolved(self) -> SynthConfig:
        if self.scale not in SCALES:
            raise ConfigError(
                f"synth: unknown scale {self.scale!r}; expected one of {', '.join(SCALES)}"
            )
        n_p, n_i, n_s = SCALES[self.scale]
        out = SynthConfig(**asdict(self))
        out.n_products = self.n_products or n_p
        out.n_intents = self.n_intents or n_i
        out.n_sessions = self.n_sessions or n_s
        try:
            datetime.fromisoformat(self.start_date)
        except ValueError as e:
            raise ConfigError(f"synth: start_date {self.start_date!r} is not YYYY-MM-DD") from e
        return out


@dataclass
class _World:
    """What every chunk of sessions shares: the universe of phrasings and their result pages."""

    catalog: pd.DataFrame
    intents: pd.DataFrame
    universe: pd.DataFrame  # one row per phrasing, sorted by intent
    intent_popularity: np.ndarray
    block_start: np.ndarray  # first universe row of each intent
    block_len: np.ndarray
    weight_cum: np.ndarray  # global cumulative in-intent weights (each block sums to 1)
    clarity_cum: np.ndarray
    pages: np.ndarray  # (phrasings, page_size) product index or NO_RESULT
    page_grades: np.ndarray  # (phrasings, page_size) truth grade of each shown product


def _build_world(cfg: SynthConfig, rng: np.random.Generator) -> _World:
    catalog = generate_catalog(cfg.n_products, rng)
    intents = generate_intents(catalog, cfg.n_intents, rng)
    ranks = rng.permutation(len(intents)) + 1
    pop = 1.0 / deterministic_power(ranks, cfg.intent_zipf_exponent)
    intents["popularity"] = pop / pop.sum()
    universe = phrase_intents(intents, rng, cfg.mean_variants)
    universe = universe.sort_values(["intent_id"], kind="stable").reset_index(drop=True)
    universe["normalized"] = universe["query"].map(normalize_query)

    counts = universe.groupby("intent_id").size().reindex(intents["intent_id"], fill_value=0)
    block_len = counts.to_numpy()
    block_start = np.concatenate([[0], np.cumsum(block_len)[:-1]])

    engine = LexicalSearchEngine(catalog["title"].tolist())
    distinct = universe["normalized"].drop_duplicates().tolist()
    idx, _ = engine.search(distinct, cfg.page_size)
    row_of = {q: i for i, q in enumerate(distinct)}
    pages = idx[universe["normalized"].map(row_of).to_numpy()]

    intent_of_slot = np.repeat(universe["intent_id"].to_numpy(), cfg.page_size)
    flat = pages.ravel()
    valid = flat != NO_RESULT
    grades = np.zeros(flat.shape, dtype=np.int8)
    grades[valid] = grade_pairs(intents, catalog, intent_of_slot[valid], flat[valid])
    return _World(
        catalog=catalog,
        intents=intents,
        universe=universe,
        intent_popularity=intents["popularity"].to_numpy(),
        block_start=block_start,
        block_len=block_len,
        weight_cum=np.cumsum(universe["weight"].to_numpy()),
        clarity_cum=np.cumsum(universe["clarity"].to_numpy()),
        pages=pages,
        page_grades=grades.reshape(pages.shape),
    )


def _sample_in_block(
    cum: np.ndarray, start: np.ndarray, length: np.ndarray, u: np.ndarray
) -> np.ndarray:
    """Sample a universe row inside each intent's block with the block's cumulative weights."""
    lo = np.where(start > 0, cum[np.maximum(start - 1, 0)], 0.0)
    hi = cum[start + length - 1]
    pick = np.searchsorted(cum, lo + u * (hi - lo), side="right")
    return np.clip(pick, start, start + length - 1)


def _simulate_chunk(
    cfg: SynthConfig,
    world: _World,
    rng: np.random.Generator,
    first_session: int,
    first_search: int,
    n_sessions: int,
    n_users: int,
) -> tuple[pa.Table, pa.Table]:
    """Sessions ``first_session..+n_sessions``: returns (search_log rows, truth search rows)."""
    intent = rng.choice(len(world.intents), size=n_sessions, p=world.intent_popularity)
    # Heavy users search more: user index drawn with a Zipf-like law over the user base.
    user = np.minimum((rng.pareto(1.2, n_sessions) * n_users / 8).astype(np.int64), n_users - 1)
    window = cfg.days * 86_400
    start = rng.integers(0, window, size=n_sessions)
    order = np.argsort(start, kind="stable")
    intent, user, start = intent[order], user[order], start[order]
    session = first_session + np.arange(n_sessions, dtype=np.int64)

    b_start, b_len = world.block_start[intent], world.block_len[intent]
    phrasing = _sample_in_block(world.weight_cum, b_start, b_len, rng.random(n_sessions))
    active = np.arange(n_sessions)
    ts = start.astype(np.int64) * 1000
    searches: list[tuple[np.ndarray, ...]] = []
    for step in range(cfg.max_searches_per_session):
        s_ph = phrasing[active]
        page = world.pages[s_ph]
        grades = world.page_grades[s_ph]
        shown = page != NO_RESULT
        clicked, carted, bought = simulate_engagement(
            grades,
            np.arange(1, page.shape[1] + 1)[None, :],
            rng,
            cfg.position_bias_exponent,
            cfg.click_given_seen,
            cfg.cart_given_click,
            cfg.purchase_given_cart,
        )
        clicked, carted, bought = clicked & shown, carted & shown, bought & shown
        searches.append((active, s_ph, ts[active].copy(), page, clicked, carted, bought, step))
        any_click, any_buy = clicked.any(axis=1), bought.any(axis=1)
        p_again = np.where(any_click, cfg.reformulate_if_clicked, cfg.reformulate_if_no_click)
        again = ~any_buy & (rng.random(len(active)) < p_again) & (b_len[active] > 1)
        nxt = active[again]
        if nxt.size == 0:
            break
        # Reformulate towards a clearer phrasing of the same intent (never the same one).
        cand = _sample_in_block(world.clarity_cum, b_start[nxt], b_len[nxt], rng.random(nxt.size))
        same = cand == phrasing[nxt]
        cand[same] = b_start[nxt][same] + (cand[same] - b_start[nxt][same] + 1) % b_len[nxt][same]
        phrasing[nxt] = cand
        ts[nxt] += rng.integers(8, 150, size=nxt.size) * 1000
        active = nxt

    # Number searches by (session, step) so ids follow time within a session.
    sess_idx = np.concatenate([s[0] for s in searches])
    step_idx = np.concatenate([np.full(s[0].size, s[7]) for s in searches])
    order = np.lexsort((step_idx, sess_idx))
    cat = {
        name: np.concatenate([s[i] for s in searches])[order]
        for i, name in enumerate(["sess", "ph", "ts", "page", "clicked", "carted", "bought"])
    }
    n_search = order.size
    search_id = first_search + np.arange(n_search, dtype=np.int64)

    shown = cat["page"] != NO_RESULT
    empty = ~shown.any(axis=1)
    # Zero-result searches keep one row (null position/product) so reformulations stay visible.
    keep = shown.copy()
    keep[empty, 0] = True
    rows_s, rows_k = np.nonzero(keep)
    prod = cat["page"][rows_s, rows_k]
    has_prod = prod != NO_RESULT

    product_ids = pa.array(world.catalog["product_id"].to_numpy(), pa.string())
    # Surface noise real logs carry, per search: some shoppers type Capitals, some leave stray
    # spaces. Mining's normalisation must fold these back into one query.
    texts = world.universe["query"]
    queries = pa.array(
        np.concatenate([texts.to_numpy(), texts.str.title().to_numpy(), (texts + "  ").to_numpy()]),
        pa.string(),
    )
    noise = rng.random(n_search)
    surface = np.where(
        noise < cfg.title_case_rate,
        1,
        np.where(noise < cfg.title_case_rate + cfg.stray_space_rate, 2, 0),
    )
    query_index = cat["ph"] + surface * len(texts)
    table = pa.table(
        {
            "session_id": pa.array(session[cat["sess"]][rows_s], pa.int64()),
            "user_id": pa.array(user[cat["sess"]][rows_s], pa.int64()),
            "search_id": pa.array(search_id[rows_s], pa.int64()),
            "timestamp": pa.array(epoch_ms(cfg.start_date) + cat["ts"][rows_s], pa.int64()).cast(
                pa.timestamp("ms")
            ),
            "query": queries.take(pa.array(query_index[rows_s])),
            "position": pa.array(rows_k + 1, pa.int32(), mask=~has_prod),
            "product_id": product_ids.take(pa.array(np.where(has_prod, prod, 0), mask=~has_prod)),
            "clicked": pa.array(cat["clicked"][rows_s, rows_k]),
            "carted": pa.array(cat["carted"][rows_s, rows_k]),
            "purchased": pa.array(cat["bought"][rows_s, rows_k]),
        },
        schema=schemas.SEARCH_LOG,
    )
    truth = pa.table(
        {
            "search_id": pa.array(search_id, pa.int64()),
            "intent_id": pa.array(intent[cat["sess"]], pa.int64()),
        }
    )
    return table, truth


def _write_table(df: pd.DataFrame, path: Path, schema: pa.Schema | None = None) -> None:
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    pq.write_table(table, path, compression="zstd")


# what synth writes into its output folder, and replaces as a whole on every run
SYNTH_OUTPUTS = ("catalog.parquet", "search_log.parquet", "truth", "manifest.json")


@dataclass
class SynthManifest:
    """What ``synth`` wrote; :meth:`to_dict` is ``manifest.json`` (written with sorted keys)."""

    kind: str  # "synthetic"
    qrewrite_version: str
    config: dict[str, Any]  # the resolved settings (``asdict`` of :class:`SynthConfig`)
    window: dict[str, str]  # start, end (ISO)
    counts: dict[str, int]  # products, intents, phrasings, sessions, searches, impressions
    tables: dict[str, Any]  # table name -> its path(s) in the output folder
    fingerprints: dict[str, str]  # catalog, search_log

    def to_dict(self) -> dict[str, Any]:
        """The manifest as a mapping, keys in field order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary_lines(self, out_dir: str | Path) -> list[str]:
        """What ``synth`` says when it is done (the CLI and the pipeline step print the same)."""
        c = self.counts
        return [
            f"synth: {c['products']:,} products, {c['intents']:,} intents, "
            f"{c['sessions']:,} sessions, {c['searches']:,} searches, "
            f"{c['impressions']:,} impressions -> {out_dir}"
        ]


def synthesize(config: SynthConfig, *, out_dir: str | Path, progress: bool = True) -> SynthManifest:
    """Write ``catalog``, ``search_log``, ``truth/`` and ``manifest.json`` under ``out_dir``.

    Returns the manifest (counts, time window, settings).
    """
    cfg = config.resolved()
    out = Path(out_dir)
    # every table at once when the whole marketplace is written: a failure keeps a previous one
    with staged_output(out, SYNTH_OUTPUTS, step="synth") as stage:
        manifest, n_rows, n_searches = _synthesize(cfg, stage, progress)
    log.info("synth: wrote %d impressions of %d searches to %s", n_rows, n_searches, out)
    return manifest


def _synthesize(cfg: SynthConfig, stage: Path, progress: bool) -> tuple[SynthManifest, int, int]:
    """:func:`synthesize` into ``stage``; returns the manifest and the rows and searches written."""
    (stage / "truth").mkdir()
    seeds = np.random.SeedSequence(cfg.seed)
    world_seed, sessions_seed = seeds.spawn(2)
    world = _build_world(cfg, np.random.default_rng(world_seed))

    _write_table(world.catalog, stage / "catalog.parquet", schemas.CATALOG)
    _write_table(world.intents, stage / "truth" / "intents.parquet")
    queries = world.universe.rename(columns={"query": "raw_query", "normalized": "query"})
    queries = queries[["query", "raw_query", "intent_id", "tags", "canonical", "weight"]]
    _write_table(queries, stage / "truth" / "queries.parquet")

    n_users = max(1, int(cfg.n_sessions / cfg.sessions_per_user))
    n_chunks = -(-cfg.n_sessions // cfg.chunk_sessions)
    chunk_seeds = sessions_seed.spawn(n_chunks)
    n_searches = n_rows = 0
    log_path, truth_path = stage / "search_log.parquet", stage / "truth" / "searches.parquet"
    truth_schema = pa.schema([("search_id", pa.int64()), ("intent_id", pa.int64())])
    with (
        pq.ParquetWriter(log_path, schemas.SEARCH_LOG, compression="zstd") as log_writer,
        pq.ParquetWriter(truth_path, truth_schema, compression="zstd") as truth_writer,
    ):
        bar = tqdm(total=cfg.n_sessions, unit="session", desc="synth", disable=not progress)
        for c in range(n_chunks):
            first = c * cfg.chunk_sessions
            n = min(cfg.chunk_sessions, cfg.n_sessions - first)
            table, truth = _simulate_chunk(
                cfg, world, np.random.default_rng(chunk_seeds[c]), first, n_searches, n, n_users
            )
            log_writer.write_table(table, row_group_size=1_048_576)
            truth_writer.write_table(truth)
            n_searches += truth.num_rows
            n_rows += table.num_rows
            bar.update(n)
        bar.close()

    start = datetime.fromisoformat(cfg.start_date)
    manifest = SynthManifest(
        kind="synthetic",
        qrewrite_version=__version__,
        config=asdict(cfg),
        window={
            "start": start.isoformat(),
            "end": (start + timedelta(days=cfg.days)).isoformat(),
        },
        counts={
            "products": len(world.catalog),
            "intents": len(world.intents),
            "phrasings": len(world.universe),
            "sessions": cfg.n_sessions,
            "searches": n_searches,
            "impressions": n_rows,
        },
        tables={
            "catalog": "catalog.parquet",
            "search_log": "search_log.parquet",
            "truth": ["truth/intents.parquet", "truth/queries.parquet", "truth/searches.parquet"],
        },
        # what this machine made of the seed: compare across machines to find where they part
        fingerprints={
            name: table_fingerprint(pq.read_table(stage / f"{name}.parquet"))
            for name in ("catalog", "search_log")
        },
    )
    (stage / "manifest.json").write_text(
        json.dumps(manifest.to_dict(), indent=2, sort_keys=True) + "\n"
    )
    return manifest, n_rows, n_searches
