"""``qrewrite build-datasets``: the SFT mixture (rewrite + relevance tagging) and the GRPO prompts.

Task A keeps a mined rewrite only when the labeler graded it relevant *and* the logs show it
converts: a higher conversion rate than the original query, or BEQUE's *increment* (products
bought for the query that the rewrite retrieves and the query does not). Task B is (query,
rewrite) -> grade, with classes capped so the majority class is not the answer. Both are split by
query: a query, and every example built from it, is either train or eval, never both.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qrewrite import __version__
from qrewrite.errors import ContractViolation, DataError
from qrewrite.labeling.teacher import GRADE_COLUMNS
from qrewrite.mining.judged import JUDGED_SOURCES
from qrewrite.mining.titles import ENGAGED_TITLE_REWRITE
from qrewrite.outputs import check_output_folder, staged_output
from qrewrite.search_engine import ProductRetriever
from qrewrite.tables import read_parquet_table, table_fingerprint
from qrewrite.text import catalog_word_counts, normalize_query
from qrewrite.training.denoise import shop_denoising_pairs
from qrewrite.training.models import CATALOG_WORDS_FILE, write_catalog_words
from qrewrite.training.prompts import (
    GRADE_WORDS,
    answer,
    is_grade_answer,
    normalize_prompt,
    rewrite_prompt,
    tagging_prompt,
)

log = logging.getLogger(__name__)

SPLITS = ("train", "eval")
SFT_DIR, GRPO_DIR = "sft", "grpo"


@dataclass
class DatasetConfig:
    """Filters, mixture and split of ``qrewrite build-datasets`` (section ``build_datasets:``)."""

    seed: int = 7
    eval_fraction: float = 0.15
    # Task A: a rewrite must be relevant ...
    min_rewrite_relevance: float = 0.6  # p_relevant from the labeler
    # ... and convert: a conversion-rate lift over the query (on enough searches) or an increment
    min_cvr_lift: float = 0.05
    min_rewrite_searches: int = 2
    min_increment: int = 1  # bought-for-the-query products retrieved by the rewrite only
    # False: relevant rewrites without conversion evidence are kept too, ranked after those with
    # it (more supervision for a small model; GRPO's rewards then weigh conversion)
    require_conversion_evidence: bool = True
    retrieve_k: int = 20  # depth of the lexical engine's result list for increment and rewards
    max_rewrites_per_query: int = 3
    with_engaged_title: bool = False  # condition task A on the most engaged title (BEQUE)
    # Task B
    # tagging examples per rewrite example in the mixture; above what the balanced pool holds,
    # pairs are repeated (a task weight: a grade is one token against a rewrite's several)
    tagging_ratio: float = 1.0
    tagging_include_titles: bool = False  # also (query, title) pairs
    min_tag_confidence: float = 0.5  # the labeler's probability of the grade it gave
    max_class_ratio: float = 1.5  # largest class at most this times the smallest
    # Task B's other direction: (query, grade) -> a mined rewrite the labeler gave that grade,
    # the grades in equal shares, train split only; examples per train rewrite example (0:
    # none). Writing to each grade teaches what separates the grades where the model writes;
    # served, the prompt names no grade (docs/training.md)
    graded_rewrite_ratio: float = 0.0
    # Task C: query normalisation, a noisy query -> its clean form, made from the shop's own
    # text as pretraining's pairs are (training/denoise.py); examples per train rewrite
    # example (0: none). It keeps the reading pretraining taught: on the seed-7 demo, 0.7 lifted
    # held-out relevance (truth) from 48.8% to 60.6% (docs/benchmarks.md)
    normalize_ratio: float = 0.0
    # GRPO prompts: queries with at least this many relevant products known from the logs
    min_grpo_relevant: int = 1


def split_of(query: str, seed: int, eval_fraction: float) -> str:
    """``train`` or ``eval`` from a hash of the normalised query: stable across runs and
    machines, and the same for every example built from one query."""
    digest = hashlib.blake2b(f"{seed}:{normalize_query(query)}".encode(), digest_size=8).digest()
    return "eval" if int.from_bytes(digest, "big") / 2**64 < eval_fraction else "train"


def _read_inputs(
    data_dir: Path, mined_dir: Path, labels_path: Path
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    hint = "run `qrewrite label` first" if labels_path.name.startswith("labeled") else ""
    labels = read_parquet_table(labels_path, "labeled pairs", hint).to_pandas()
    missing = {"query", "rewrite", "pair_kind", "grade", *GRADE_COLUMNS} - set(labels.columns)
    if missing:
        raise DataError(
            f"{labels_path}: missing column(s) {', '.join(sorted(missing))}; "
            "expected the output of `qrewrite label`"
        )
    if labels.empty:
        raise DataError(f"{labels_path}: no labeled pairs; nothing to build training sets from")
    candidates = read_parquet_table(
        mined_dir / "rewrite_candidates.parquet", "rewrite candidates", "run `qrewrite mine` first"
    ).to_pandas()
    stats = read_parquet_table(
        mined_dir / "query_stats.parquet", "query stats", "run `qrewrite mine` first"
    ).to_pandas()
    catalog = read_parquet_table(
        data_dir / "catalog.parquet", "catalog", "--data must be a synth or import-judged output"
    ).to_pandas()
    return labels, candidates, stats, catalog


def _balanced(df: pd.DataFrame, max_ratio: float, seed: int) -> pd.DataFrame:
    counts = df["grade"].value_counts()
    if counts.empty:
        return df
    cap = max(1, math.ceil(counts.min() * max_ratio)) if len(counts) == 3 else int(counts.min())
    parts = [g.sample(n=min(len(g), cap), random_state=seed) for _, g in df.groupby("grade")]
    return pd.concat(parts).sample(frac=1.0, random_state=seed)


def _graded_rewrites(pairs: pd.DataFrame, n: int, seed: int) -> pd.DataFrame:
    """``n`` (query, rewrite, grade) pairs for task B's other direction, the grades in equal
    shares (a grade with fewer pairs gives all it has), seeded; rewrites that read as a grade
    word are left out (their answer would read as a grade)."""
    pairs = pairs[~pairs["rewrite"].map(is_grade_answer)]
    if n <= 0 or pairs.empty:
        return pairs.iloc[:0]
    share = math.ceil(n / len(GRADE_WORDS))
    parts = [
        g.sample(n=min(len(g), share), random_state=seed)
        for _, g in pairs.groupby("grade", sort=True)
    ]
    return pd.concat(parts).sample(frac=1.0, random_state=seed).head(n)


# what build-datasets writes into its output folder, and replaces as a whole on every run (its
# contract reports, written before the datasets, stay: they explain a refused build)
DATASET_OUTPUTS = (
    SFT_DIR,
    GRPO_DIR,
    "dataset_report.json",
    "dataset_report.md",
    CATALOG_WORDS_FILE,
)


@dataclass
class DatasetReport:
    """What ``build-datasets`` built; :meth:`to_dict` is ``dataset_report.json``."""

    qrewrite_version: str
    config: dict[str, Any]  # ``asdict`` of :class:`DatasetConfig`
    task_a: dict[str, Any]  # the rewrite task's filters: pairs, graded relevant, evidence, kept
    task_b: dict[str, Any]  # the tagging task: pairs, below confidence, kept, grades per split
    task_c: dict[str, Any]  # query normalisation: pairs requested, set aside, kept
    sft_examples: dict[str, dict[str, int]]  # split -> task -> examples
    grpo_prompts: dict[str, int]  # split -> prompts
    distinct_queries: dict[str, int]  # split -> queries
    contracts: dict[str, str]  # contract -> its summary line
    fingerprints: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        """The report as a mapping, keys in the order of ``dataset_report.json``."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def summary_lines(self, out_dir: str | Path) -> list[str]:
        """What ``build-datasets`` says when it is done: each task's examples and the split."""
        a, e = self.task_a, self.sft_examples
        return [
            f"build-datasets: rewrite task {a['kept_after_per_query_cap']:,} examples "
            f"({a['graded_relevant']:,} graded relevant, {a['without_conversion_evidence']:,} "
            "without conversion evidence, "
            + ("kept" if a["kept_without_conversion_evidence"] else "set aside")
            + "); tagging task "
            f"{self.task_b['kept']:,} examples; normalisation task "
            f"{self.task_c['kept']:,} examples; GRPO prompts "
            f"{self.grpo_prompts['train']:,} train / {self.grpo_prompts['eval']:,} eval",
            f"build-datasets: split by query: train {e['train'].get('rewrite', 0):,} + "
            f"{e['train'].get('tag', 0):,}, eval {e['eval'].get('rewrite', 0):,} + "
            f"{e['eval'].get('tag', 0):,} (rewrite + tag) -> {out_dir}/sft, {out_dir}/grpo; "
            f"read {out_dir}/dataset_report.md",
        ]


def build_datasets(
    config: DatasetConfig,
    *,
    data_dir: str | Path,
    mined_dir: str | Path,
    labels_path: str | Path,
    out_dir: str | Path,
    report_dir: str | Path | None = None,
) -> DatasetReport:
    """Write ``<out>/sft`` and ``<out>/grpo`` (HF ``DatasetDict`` with train/eval) and a report.

    Both are checked against their data contracts before they are saved; a failing contract raises
    :class:`ContractViolation` and saves nothing.
    """
    from datasets import Dataset, DatasetDict

    from qrewrite.training.common import quiet_libraries

    quiet_libraries()
    data_dir, mined_dir, out = Path(data_dir), Path(mined_dir), Path(out_dir)
    if report_dir is not None:
        check_output_folder("build-datasets", report_dir)
    labels, candidates, stats, catalog = _read_inputs(data_dir, mined_dir, Path(labels_path))
    retrieval = ProductRetriever(catalog, config.retrieve_k)
    titles = dict(zip(catalog["product_id"], catalog["title"], strict=True))
    purchased = {
        q: frozenset(p) for q, p in zip(stats["query"], stats["purchased_products"], strict=True)
    }
    clicked = {
        q: frozenset(p) for q, p in zip(stats["query"], stats["clicked_products"], strict=True)
    }
    split = {
        q: split_of(q, config.seed, config.eval_fraction)
        for q in set(labels["query"]) | set(stats["query"])
    }

    # ---- Task A: relevant rewrites with conversion evidence --------------------------------
    qr = labels[labels["pair_kind"] == "query_rewrite"]
    cand_cols = ["query", "rewrite", "query_cvr", "rewrite_cvr", "rewrite_searches"]
    cand = candidates[cand_cols].drop_duplicates(["query", "rewrite"])
    qr = qr.merge(cand, on=["query", "rewrite"], how="left")
    relevant = qr[(qr["grade"] == 2) & (qr["p_relevant"] >= config.min_rewrite_relevance)].copy()
    orig = retrieval.retrieve(relevant["query"].tolist())
    rew = retrieval.retrieve(relevant["rewrite"].tolist())
    empty: frozenset[str] = frozenset()
    increments = [
        len((purchased.get(q, empty) | purchased.get(r, empty)) & (b - a))
        for q, r, a, b in zip(relevant["query"], relevant["rewrite"], orig, rew, strict=True)
    ]
    relevant["increment"] = increments
    lift = (relevant["rewrite_cvr"] - relevant["query_cvr"]).fillna(-1.0)
    enough = relevant["rewrite_searches"].fillna(0) >= config.min_rewrite_searches
    relevant["cvr_lift"] = lift
    by_lift = enough & (lift >= config.min_cvr_lift)
    by_increment = relevant["increment"] >= config.min_increment
    # a rewrite made from what people graded relevant has their grades as evidence
    by_judgment = (
        relevant["source"].isin(JUDGED_SOURCES)
        if "source" in relevant
        else pd.Series(False, index=relevant.index)
    )
    # ... and one reduced from the titles of products bought or carted after the query has
    # those purchases as evidence
    by_engaged_title = (
        relevant["source"] == ENGAGED_TITLE_REWRITE
        if "source" in relevant
        else pd.Series(False, index=relevant.index)
    )
    converting = by_lift | by_increment | by_judgment | by_engaged_title
    kept = (relevant[converting] if config.require_conversion_evidence else relevant).copy()
    kept["score"] = kept["p_relevant"] * (1 + kept["increment"] + kept["cvr_lift"].clip(lower=0))
    kept = (
        kept.sort_values(["query", "score", "rewrite"], ascending=[True, False, True])
        # a pair two miners found (a reformulation that is also co-engaged) is one example, its
        # best-scored row: twice, it took two of the query's slots and weighed double
        .drop_duplicates(["query", "rewrite"])
        .groupby("query", sort=False)
        .head(config.max_rewrites_per_query)
    )
    engaged_title: dict[str, str] = {}
    if config.with_engaged_title:
        qt = labels[(labels["pair_kind"] == "query_title") & (labels["grade"] == 2)]
        for q, pid, rewrite in zip(qt["query"], qt.get("product_id"), qt["rewrite"], strict=True):
            engaged_title.setdefault(q, titles.get(pid, rewrite))

    rewrite_rows = [
        {
            "prompt": rewrite_prompt(q, engaged_title.get(q)),
            "completion": answer(r),
            "task": "rewrite",
            "query": q,
            "target": r,
            "grade": -1,
            "split": split[q],
        }
        for q, r in zip(kept["query"], kept["rewrite"], strict=True)
    ]

    # ---- Task B: relevance tagging, balanced ------------------------------------------------
    kinds = ["query_rewrite", "query_title"] if config.tagging_include_titles else ["query_rewrite"]
    tag = labels[labels["pair_kind"].isin(kinds)].copy()
    confidence = tag[list(GRADE_COLUMNS)].max(axis=1)
    tag = tag.assign(confidence=confidence)[confidence >= config.min_tag_confidence]
    # one example per pair: two miners can find the same pair
    tag = tag.sort_values("confidence", ascending=False, kind="stable").drop_duplicates(
        ["query", "rewrite"]
    )
    tag["split"] = tag["query"].map(split)
    tag_parts = []
    for name in SPLITS:
        pool = _balanced(tag[tag["split"] == name], config.max_class_ratio, config.seed)
        n_rewrite = sum(1 for r in rewrite_rows if r["split"] == name)
        n_tag = round(config.tagging_ratio * n_rewrite)
        if name == "train" and n_tag > len(pool) and len(pool):
            # the ratio asks for more than there is: repeat train pairs (seeded) to weight the
            # task; held-out pairs are never repeated
            extra = pool.sample(n=n_tag - len(pool), replace=True, random_state=config.seed)
            pool = pd.concat([pool, extra])
        tag_parts.append(pool.head(n_tag))
    tag_kept = pd.concat(tag_parts)
    n_graded = round(config.graded_rewrite_ratio * sum(r["split"] == "train" for r in rewrite_rows))
    graded = _graded_rewrites(
        tag[(tag["split"] == "train") & (tag["pair_kind"] == "query_rewrite")],
        n_graded,
        config.seed,
    )
    tagging_rows = [
        {
            "prompt": tagging_prompt(q, r),
            "completion": answer(GRADE_WORDS[int(g)]),
            "task": "tag",
            "query": q,
            "target": GRADE_WORDS[int(g)],
            "grade": int(g),
            "split": s,
        }
        for q, r, g, s in tag_kept[["query", "rewrite", "grade", "split"]].itertuples(index=False)
    ] + [
        {
            "prompt": rewrite_prompt(q, grade=int(g)),
            "completion": answer(r),
            "task": "tag",
            "query": q,
            "target": r,
            "grade": int(g),
            "split": "train",
        }
        for q, r, g in graded[["query", "rewrite", "grade"]].itertuples(index=False)
    ]

    # ---- Task C: query normalisation from the shop's own text (train split only) ---------------
    n_normalize = round(config.normalize_ratio * sum(r["split"] == "train" for r in rewrite_rows))
    held_out = {normalize_query(q) for q, s in split.items() if s == "eval"}
    normalize_pairs = (
        shop_denoising_pairs(
            catalog,
            stats,
            candidates,
            exclude_queries=held_out,
            n_pairs=n_normalize,
            # not pretraining's seed: other corruptions of other texts
            seed=config.seed + 1,
        )
        if n_normalize
        else []
    )
    normalize_rows = [
        {
            "prompt": normalize_prompt(noisy),
            "completion": answer(clean),
            "task": "normalize",
            "query": noisy,
            "target": clean,
            "grade": -1,
            "split": "train",
        }
        for noisy, clean in normalize_pairs
    ]

    # ---- GRPO prompts: what the rewards need -------------------------------------------------
    good_rewrites = qr[qr["grade"] == 2].groupby("query")["rewrite"].apply(list).to_dict()
    good_titles = (
        labels[(labels["pair_kind"] == "query_title") & (labels["grade"] == 2)]
        .groupby("query")["product_id"]
        .apply(lambda s: [p for p in s if isinstance(p, str)])
        .to_dict()
    )
    grpo_queries = sorted(set(stats["query"]))
    orig_all = retrieval.retrieve(grpo_queries)
    grpo_rows = []
    for q, retrieved in zip(grpo_queries, orig_all, strict=True):
        rel = set(purchased.get(q, empty)) | set(good_titles.get(q, []))
        for r in good_rewrites.get(q, []):
            rel |= purchased.get(r, empty)
        if len(rel) < config.min_grpo_relevant:
            continue
        grpo_rows.append(
            {
                "prompt": rewrite_prompt(q, engaged_title.get(q)),
                "query": q,
                "purchased": sorted(purchased.get(q, empty)),
                "clicked": sorted(clicked.get(q, empty)),
                "relevant": sorted(rel),
                "original_retrieved": sorted(retrieved),
                "split": split[q],
            }
        )

    sft_df = pd.DataFrame(rewrite_rows + tagging_rows + normalize_rows)
    grpo_df = pd.DataFrame(grpo_rows)
    if sft_df.empty or not (sft_df["task"] == "rewrite").any():
        raise DataError(
            f"{labels_path}: no rewrite passed the filters (relevant with p >= "
            f"{config.min_rewrite_relevance} and conversion evidence); loosen "
            "min_rewrite_relevance / min_cvr_lift / min_increment or mine a longer window"
        )
    if grpo_df.empty:
        raise DataError(
            f"{mined_dir / 'query_stats.parquet'}: no query has {config.min_grpo_relevant}+ "
            "relevant products known from the logs; GRPO has nothing to reward"
        )
    check_no_query_leakage(sft_df, grpo_df)

    from qrewrite.contracts import validate_frame

    contract_dir = Path(report_dir) if report_dir else out / "contracts"
    results = {
        "sft_examples": validate_frame(
            sft_frame(sft_df), "sft_examples", str(out / SFT_DIR), contract_dir
        ),
        "grpo_prompts": validate_frame(
            grpo_frame(grpo_df), "grpo_prompts", str(out / GRPO_DIR), contract_dir
        ),
    }
    for result in results.values():
        if not result.success:
            raise ContractViolation(result.summary_line())

    grading = sft_df["target"].map(is_grade_answer)

    def counts(df: pd.DataFrame, by: str) -> dict:
        return {
            s: {str(k): int(v) for k, v in df[df["split"] == s][by].value_counts().items()}
            for s in SPLITS
        }

    report = DatasetReport(
        qrewrite_version=__version__,
        config=asdict(config),
        task_a={
            "query_rewrite_pairs": len(qr),
            "graded_relevant": len(relevant),
            "with_cvr_lift": int(by_lift.sum()),
            "with_increment": int(by_increment.sum()),
            "from_judgments": int(by_judgment.sum()),
            "from_engaged_titles": int(by_engaged_title.sum()),
            "by_source": {
                str(k): {
                    "pairs": int((qr["source"] == k).sum()),
                    "graded_relevant": int((relevant["source"] == k).sum()),
                    "kept": int((kept["source"] == k).sum()),
                }
                for k in sorted(qr["source"].dropna().unique())
            }
            if "source" in qr
            else {},
            "without_conversion_evidence": int((~converting).sum()),
            "kept_without_conversion_evidence": int(
                0 if config.require_conversion_evidence else (~converting).sum()
            ),
            "kept_after_per_query_cap": len(kept),
        },
        task_b={
            "pairs": int(labels["pair_kind"].isin(kinds).sum()),
            "below_confidence": int((confidence < config.min_tag_confidence).sum()),
            "kept": len(tag_kept),
            "grades": counts(sft_df[(sft_df["task"] == "tag") & grading], "target"),
            # the other direction: rewrites written to each grade (train only)
            "graded_rewrites_requested": n_graded,
            "graded_rewrites": {
                GRADE_WORDS[int(g)]: int(n)
                for g, n in sorted(graded["grade"].value_counts().items())
            },
        },
        task_c={
            "requested": n_normalize,
            # pairs whose input or answer reads like a held-out query are set aside
            "set_aside_held_out": n_normalize - len(normalize_rows),
            "kept": len(normalize_rows),
        },
        sft_examples=counts(sft_df, "task"),
        grpo_prompts={s: int((grpo_df["split"] == s).sum()) for s in SPLITS},
        # the shop's queries: Task C's inputs are corruptions made here
        distinct_queries={
            s: int(
                sft_df[(sft_df["split"] == s) & (sft_df["task"] != "normalize")]["query"].nunique()
            )
            for s in SPLITS
        },
        contracts={k: v.summary_line() for k, v in results.items()},
        fingerprints={
            "sft_examples": table_fingerprint(sft_frame(sft_df)),
            "grpo_prompts": table_fingerprint(grpo_frame(grpo_df)),
        },
    )
    # the datasets and their report together, when all are written: a failure keeps the
    # previous build whole
    inputs = [data_dir, mined_dir, labels_path]
    with staged_output(out, DATASET_OUTPUTS, step="build-datasets", inputs=inputs) as stage:
        for name, df in ((SFT_DIR, sft_df), (GRPO_DIR, grpo_df)):
            DatasetDict(
                {
                    s: Dataset.from_pandas(
                        df[df["split"] == s].drop(columns="split").reset_index(drop=True),
                        preserve_index=False,
                    )
                    for s in SPLITS
                }
            ).save_to_disk(str(stage / name))
        write_catalog_words(stage, catalog_word_counts(catalog["title"].astype(str)))
        report_json = json.dumps(report.to_dict(), indent=2) + "\n"
        (stage / "dataset_report.json").write_text(report_json, encoding="utf-8")
        (stage / "dataset_report.md").write_text(
            report_markdown(report.to_dict()), encoding="utf-8"
        )
    return report


def check_no_query_leakage(sft: pd.DataFrame, grpo: pd.DataFrame) -> None:
    """Refuse a split where one normalised query has examples in both train and eval."""
    both = pd.concat([sft[["query", "split"]], grpo[["query", "split"]]])
    norm = both["query"].map(normalize_query)
    splits_per_query = both.groupby(norm)["split"].nunique()
    leaked = splits_per_query[splits_per_query > 1]
    if len(leaked):
        raise DataError(
            f"split leaks {len(leaked)} queries into both train and eval (e.g. "
            f"{leaked.index[0]!r}); the split must be a function of the query"
        )


def _text(messages: Any) -> str:
    return "\n".join(str(m["content"]) for m in messages)


def sft_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Flat view of SFT examples for the ``sft_examples`` contract."""
    return pd.DataFrame(
        {
            "query": df["query"].to_numpy(),
            "task": df["task"].to_numpy(),
            "prompt_text": [_text(m) for m in df["prompt"]],
            "completion_text": [_text(m) for m in df["completion"]],
            "grade": df["grade"].astype("int64").to_numpy(),
            "split": df["split"].to_numpy(),
        }
    )


def grpo_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Flat view of GRPO prompts for the ``grpo_prompts`` contract."""
    return pd.DataFrame(
        {
            "query": df["query"].to_numpy(),
            "prompt_text": [_text(m) for m in df["prompt"]],
            "n_relevant": np.array([len(x) for x in df["relevant"]], dtype=np.int64),
            "n_purchased": np.array([len(x) for x in df["purchased"]], dtype=np.int64),
            "split": df["split"].to_numpy(),
        }
    )


def load_training_split(path: str | Path, kind: str) -> Any:
    """Load ``<datasets>/sft`` or ``<datasets>/grpo`` and check it against its contract.

    Raises a one-line :class:`DataError` or :class:`ContractViolation` before any training starts.
    """
    from datasets import DatasetDict, load_from_disk

    from qrewrite.contracts import validate_frame

    path = Path(path)
    if not (path / "dataset_dict.json").exists():
        raise DataError(
            f"{path}: not a saved training set (no dataset_dict.json); run "
            "`qrewrite build-datasets` and pass its --out directory"
        )
    dd = load_from_disk(str(path))
    if not isinstance(dd, DatasetDict) or set(dd) != set(SPLITS):
        raise DataError(f"{path}: expected splits {SPLITS}, found {sorted(dd)}")
    if len(dd["train"]) == 0:
        raise DataError(f"{path}: the train split is empty")
    frames = []
    for s in SPLITS:
        df = dd[s].to_pandas()
        df["split"] = s
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    contract = "sft_examples" if kind == SFT_DIR else "grpo_prompts"
    try:
        flat = sft_frame(df) if kind == SFT_DIR else grpo_frame(df)
    except KeyError as e:
        raise DataError(f"{path}: missing column {e}; expected a {contract} training set") from e
    result = validate_frame(flat, contract, str(path))
    if not result.success:
        raise ContractViolation(result.summary_line())
    return dd


def report_markdown(report: dict[str, Any]) -> str:
    a, b = report["task_a"], report["task_b"]
    lines = [
        "# Training sets",
        "",
        "## Task A: rewrite generation",
        "",
        f"- mined (query, rewrite) pairs: {a['query_rewrite_pairs']:,}",
        f"- graded relevant: {a['graded_relevant']:,}",
        f"- with a conversion-rate lift: {a['with_cvr_lift']:,}; with an increment: "
        f"{a['with_increment']:,}; without conversion evidence: "
        f"{a['without_conversion_evidence']:,} ("
        + (
            f"kept, ranked after the converting ones: {a['kept_without_conversion_evidence']:,})"
            if a.get("kept_without_conversion_evidence")
            else "set aside)"
        ),
        "- from people's judgments (their grades are the evidence): "
        f"{a.get('from_judgments', 0):,}; from the titles of products bought or carted after "
        f"the query (those purchases are the evidence): {a.get('from_engaged_titles', 0):,}",
        f"- kept (at most {report['config']['max_rewrites_per_query']} per query): "
        f"{a['kept_after_per_query_cap']:,}",
        "",
        "| source | pairs | graded relevant | kept |",
        "|---|---:|---:|---:|",
        *[
            f"| {k} | {v['pairs']:,} | {v['graded_relevant']:,} | {v['kept']:,} |"
            for k, v in (a.get("by_source") or {}).items()
        ],
        "",
        "## Task B: relevance tagging",
        "",
        f"- pairs: {b['pairs']:,}; below confidence: {b['below_confidence']:,}; "
        f"kept: {b['kept']:,}",
        "",
        "| split | " + " | ".join(GRADE_WORDS) + " |",
        "|---|" + "---:|" * len(GRADE_WORDS),
    ]
    for s in SPLITS:
        g = b["grades"][s]
        lines.append(f"| {s} | " + " | ".join(str(g.get(w, 0)) for w in GRADE_WORDS) + " |")
    written = b.get("graded_rewrites") or {}
    lines += [
        "",
        "- the other direction, a rewrite written to a grade (train only): asked for "
        f"{b.get('graded_rewrites_requested', 0):,} "
        f"({report['config'].get('graded_rewrite_ratio', 0)} per train rewrite example, a "
        "third per grade); written: "
        + (", ".join(f"{w} {written.get(w, 0):,}" for w in GRADE_WORDS) if written else "none"),
    ]
    c = report.get("task_c") or {}
    lines += [
        "",
        "## Task C: query normalisation (the shop's own text)",
        "",
        f"- noisy query -> clean form pairs asked for: {c.get('requested', 0):,} "
        f"({report['config'].get('normalize_ratio', 0)} per train rewrite example); reading "
        f"like a held-out query, set aside: {c.get('set_aside_held_out', 0):,}; kept: "
        f"{c.get('kept', 0):,} (train only)",
        "",
        "## Splits (by query)",
        "",
        "| split | rewrite examples | tagging examples | normalisation examples | "
        "distinct queries | GRPO prompts |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for s in SPLITS:
        e = report["sft_examples"][s]
        lines.append(
            f"| {s} | {e.get('rewrite', 0):,} | {e.get('tag', 0):,} | {e.get('normalize', 0):,} | "
            f"{report['distinct_queries'][s]:,} | {report['grpo_prompts'][s]:,} |"
        )
    lines += ["", "## Contracts", ""] + [f"- {v}" for v in report["contracts"].values()]
    return "\n".join(lines) + "\n"
