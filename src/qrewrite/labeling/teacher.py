"""The default teacher: grades (query, rewrite) and (query, product title) pairs on a CPU, without
ground truth, by the guideline in docs/labeling.md (which explains every step and threshold).

A cascade, cheapest evidence first:

1. **Lexicon** mined from the catalog (and from the batch: synonyms, filler words): read each
   text's product type, brand, colour, material, size, gender, feature polarity ("decaf" = no
   caffeine) and price limit. Products use their catalog attributes, completed by their title.
2. **Rules by retrieval**: a hard conflict between read attributes (type, gender, a contradicted
   feature) is 0; otherwise take the catalog products that satisfy every constraint the rewrite
   states, grade them against the query's constraints, and take the median (catalog statistics
   estimate it when the rewrite's type is unknown). A narrower rewrite keeps every constraint: 2.
3. **Sentence encoder**, only where the lexicon could not read a word (or the catalog has no
   product types): infer the product type of leftover words, and measure how close the texts are.
4. **Behaviour** from mining as likelihood ratios: a converting reformulation q -> r, or shared
   purchases, raise the odds of "relevant", never over a hard conflict.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pandas as pd

from qrewrite.errors import DataError
from qrewrite.labeling.calibration import (
    FEEDBACK_DEPTH,
    TOPICS,
    CalibratedGrader,
    CalibrationSummary,
)
from qrewrite.labeling.lexicon import (
    GENDER_COMPATIBLE,
    SOFT_ATTRIBUTES,
    CatalogLexicon,
    Reading,
    mine_filler_words,
    mine_synonyms,
)
from qrewrite.tables import read_judgments

log = logging.getLogger(__name__)

GRADE_COLUMNS = ("p_irrelevant", "p_partial", "p_relevant")
# the files of a saved teacher (Teacher.save)
TEACHER_CATALOG = "catalog.parquet"
TEACHER_JUDGMENTS = "judgments.parquet"
TEACHER_STATE = "teacher.json"
TEACHER_EMBEDDINGS = "embeddings.parquet"


# settings a label report or saved teacher written before they existed graded without: a
# recorded teacher is rebuilt as it graded, not with what the defaults have become since
RECORDED_BEFORE: dict[str, object] = {
    "calibration_feedback_depth": 0,
    "calibration_title_names": False,
    "calibration_topics": 0,
}


def label_teacher_config(labels: str | Path) -> TeacherConfig:
    """The teacher settings ``qrewrite label`` graded ``labels`` with (its report beside them),
    so that every later step judges with the labeler's thresholds; the defaults when there is
    no report (labels written by hand or by an older version)."""
    report = Path(labels).with_suffix(".report.json")
    if not report.is_file():
        return TeacherConfig()
    try:
        settings = json.loads(report.read_text(encoding="utf-8"))["config"]
        names = {f.name for f in fields(TeacherConfig)}
        return TeacherConfig(
            **{**RECORDED_BEFORE, **{k: v for k, v in settings.items() if k in names}}
        )
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as e:
        raise DataError(f"{report}: not a label report with a 'config' ({e})") from e


def embeddings_beside(labels: str | Path) -> Path:
    """Where ``qrewrite label`` leaves the teacher's text embeddings: beside the labeled pairs
    (``labeled_pairs.parquet`` -> ``labeled_pairs.embeddings.parquet``)."""
    return Path(labels).with_suffix(".embeddings.parquet")


@dataclass
class TeacherConfig:
    """Thresholds of the default teacher (section ``label:`` of a preset)."""

    type_similarity: float = 0.45  # encoder: unknown words name a product type at or above this
    type_margin: float = 0.03  # ...and this far ahead of the next type
    relevant_similarity: float = 0.72  # encoder alone: 2 at or above
    partial_similarity: float = 0.5  # encoder alone: 1 at or above, else 0
    title_relevant_similarity: float = 0.6  # the same for (query, title) pairs
    title_partial_similarity: float = 0.45
    support_purchases: int = 2  # shared purchases that count as evidence of relevance
    reformulation_odds: float = 3.0  # likelihood ratio for "relevant" of a converting reformulation
    shared_purchase_odds: float = 1.5  # ...and of support_purchases shared purchases
    encoder_batch_size: int = 256
    # where the data holds human judgments (judgments.parquet): grade with a model fitted on
    # them, cross-fitted by query (qrewrite.labeling.calibration), instead of the rules
    calibrate_on_judgments: bool = True
    calibration_folds: int = 5
    # the encoder's cosine among the signals: +0.01-0.03 Spearman, ~10x slower (docs/labeling.md)
    calibration_encoder: bool = True
    # how many of the query's BM25 results make its pseudo-relevance-feedback signal (0: none;
    # qrewrite.labeling.calibration)
    calibration_feedback_depth: int = FEEDBACK_DEPTH
    # how the query meets the title's name (its words before the first separator), and the
    # dimensions of the catalog's latent topics (0: none; qrewrite.labeling.calibration)
    calibration_title_names: bool = True
    calibration_topics: int = TOPICS


@dataclass
class Judgement:
    grade: int
    probabilities: list[float]
    signals: dict


def _catalog_reading(row: dict, lexicon: CatalogLexicon) -> Reading:
    """A product: its catalog attributes, completed by what its title says (imported catalogs
    often have a brand and a colour but no product type)."""
    reading = lexicon.read(str(row["title"]))
    for a in ("product_type", *SOFT_ATTRIBUTES, "gender"):
        if a in row and pd.notna(row[a]):
            reading.attributes[a] = str(row[a])
            reading.guessed.discard(a)
    if "feature" in row and pd.notna(row["feature"]) and pd.notna(row.get("has_feature")):
        reading.features[str(row["feature"])] = bool(row["has_feature"])
    reading.unknown = []  # a title's extra words are marketing, not constraints
    return reading


class CatalogStats:
    """How often each attribute value and feature polarity occurs per product type: the odds that
    a product a rewrite retrieves breaks a constraint the rewrite dropped."""

    def __init__(self, catalog: pd.DataFrame) -> None:
        self.share: dict[tuple[str | None, str, str], float] = {}
        self.feature_share: dict[tuple[str | None, str, bool], float] = {}
        types = (
            catalog["product_type"]
            if "product_type" in catalog
            else pd.Series([None] * len(catalog))
        )
        for attr in (*SOFT_ATTRIBUTES, "gender"):
            if attr not in catalog:
                continue
            known = catalog[catalog[attr].notna()]
            for (t, v), n in known.groupby([types[known.index], attr]).size().items():
                self.share[(t, attr, v)] = n / int((types[known.index] == t).sum())
            for v, n in known[attr].value_counts().items():
                self.share[(None, attr, v)] = n / len(known)
        self.prices: dict[str | None, np.ndarray] = {}
        if "price" in catalog and catalog["price"].notna().any():
            priced = catalog[catalog["price"].notna()]
            self.prices[None] = np.sort(priced["price"].to_numpy(dtype=float))
            for t, g in priced.groupby(types[priced.index]):
                self.prices[t] = np.sort(g["price"].to_numpy(dtype=float))
        if "feature" in catalog and "has_feature" in catalog:
            f = catalog[catalog["feature"].notna() & catalog["has_feature"].notna()]
            for (t, feat), g in f.groupby([types[f.index], "feature"]):
                rate = float(g["has_feature"].astype(bool).mean())
                self.feature_share[(t, feat, True)] = rate
                self.feature_share[(t, feat, False)] = 1.0 - rate

    def match(self, ptype: str | None, attr: str, value: str) -> float:
        """Share of products (of ``ptype`` when known) whose ``attr`` is ``value``."""
        if attr == "gender":
            ok = [value, "Unisex"] if value in ("Men", "Women") else [value]
            return min(1.0, sum(self._share(ptype, attr, v) for v in ok))
        return self._share(ptype, attr, value)

    def _share(self, ptype: str | None, attr: str, value: str) -> float:
        got = self.share.get((ptype, attr, value))
        return got if got is not None else self.share.get((None, attr, value), 0.0)

    def share_above(self, ptype: str | None, price: float) -> float:
        """Share of products (of ``ptype`` when known) priced above ``price``."""
        prices = self.prices.get(ptype, self.prices.get(None))
        if prices is None or len(prices) == 0:
            return 0.0
        return 1.0 - np.searchsorted(prices, price, side="right") / len(prices)

    def feature_match(self, ptype: str | None, feature: str, wanted: bool) -> float:
        got = self.feature_share.get((ptype, feature, wanted))
        return got if got is not None else 0.5


class CatalogRetrieval:
    """Retrieve, by attributes, the catalog products a rewrite asks for, and grade them against
    the query: what the truth does with true intents, done here with what the lexicon read."""

    def __init__(self, catalog: pd.DataFrame) -> None:
        self.columns = {
            c: catalog[c].to_numpy(dtype=object)
            for c in ("product_type", *SOFT_ATTRIBUTES, "gender", "feature")
            if c in catalog
        }
        self.has_feature = (
            catalog["has_feature"].astype("boolean").to_numpy(dtype=object, na_value=None)
            if "has_feature" in catalog
            else None
        )
        self.price = catalog["price"].to_numpy(dtype=float) if "price" in catalog else None
        self._cache: dict[tuple, np.ndarray] = {}

    def matching(self, r: Reading) -> np.ndarray:
        """Indices of products satisfying every constraint ``r`` states (type required)."""
        key = (tuple(sorted(r.attributes.items())), tuple(sorted(r.features.items())), r.price_max)
        if key in self._cache:
            return self._cache[key]
        cols = self.columns
        mask = cols["product_type"] == r.attributes["product_type"]
        for attr in SOFT_ATTRIBUTES:
            if attr in r.attributes and attr in cols:
                mask &= cols[attr] == r.attributes[attr]
        if "gender" in r.attributes and "gender" in cols:
            g = r.attributes["gender"]
            ok = [g, "Unisex"] if g in ("Men", "Women") else [g]
            mask &= np.isin(cols["gender"], ok)
        if self.has_feature is not None:
            for feature, wanted in r.features.items():
                mask &= (cols["feature"] == feature) & (self.has_feature == wanted)
        if r.price_max is not None and self.price is not None:
            mask &= self.price <= r.price_max
        self._cache[key] = idx = np.flatnonzero(mask)
        return idx

    def grade_under(self, q: Reading, products: np.ndarray) -> np.ndarray:
        """Grades of ``products`` for the query's read constraints (the truth's rules)."""
        cols = self.columns
        mismatches = np.zeros(len(products), dtype=np.int64)
        hard = np.zeros(len(products), dtype=bool)
        if "product_type" in q.attributes:
            hard |= cols["product_type"][products] != q.attributes["product_type"]
        for attr in SOFT_ATTRIBUTES:
            if attr in q.attributes and attr in cols:
                mismatches += cols[attr][products] != q.attributes[attr]
        if "gender" in q.attributes and "gender" in cols:
            g = q.attributes["gender"]
            ok = [g, "Unisex"] if g in ("Men", "Women") else [g]
            pg = cols["gender"][products]
            hard |= pd.notna(pg) & ~np.isin(pg, ok)
        if self.has_feature is not None:
            for feature, wanted in q.features.items():
                same = cols["feature"][products] == feature
                hard |= same & (self.has_feature[products] == (not wanted))
        if q.price_max is not None and self.price is not None:
            mismatches += self.price[products] > q.price_max
        return np.where(hard, 0, np.clip(2 - mismatches, 0, 2))


def grade_distribution(certain_soft: int, soft_p: list[float], hard_p: list[float]) -> list[float]:
    """P(grade 0, 1, 2) of a product the rewrite retrieves: each dropped soft constraint breaks
    with probability ``soft_p[i]`` (a mismatch), each dropped hard one with ``hard_p[j]`` (grade
    0); ``certain_soft`` mismatches are sure. Mismatches: none 2, one 1, more 0."""
    dist = [0.0, 0.0, 0.0]  # P(0, 1, 2+ mismatches)
    dist[min(certain_soft, 2)] = 1.0
    for p in soft_p:
        dist = [dist[0] * (1 - p), dist[1] * (1 - p) + dist[0] * p, dist[2] + dist[1] * p]
    ok = float(np.prod([1 - h for h in hard_p])) if hard_p else 1.0
    return [dist[2] * ok + (1 - ok), dist[1] * ok, dist[0] * ok]


def lower_median(dist: list[float]) -> int:
    """The grade at which the cumulative probability first reaches one half (a tie rounds down,
    as the truth's median does)."""
    return int(np.searchsorted(np.cumsum(dist), 0.5 - 1e-9))


def compare(
    query: Reading,
    rewrite: Reading,
    rewrite_is_product: bool,
    stats: CatalogStats,
    product_price: float | None = None,
    retrieval: CatalogRetrieval | None = None,
) -> tuple[list[float], dict]:
    """Grade distribution of what the rewrite retrieves, judged by the query's constraints, and
    the signals it rests on (hard conflicts, soft differences, dropped constraints).

    Attributes read through mined synonyms or guessed by the encoder are hints: they never make a
    hard conflict (a differing one counts as a soft difference), and a dropped one counts half.
    """
    qa, ra = query.attributes, rewrite.attributes
    signals: dict = {"hard": [], "soft": [], "dropped": []}
    q_guess = set(query.guessed) | ({"product_type"} if query.inferred_type else set())
    r_guess = set(rewrite.guessed) | ({"product_type"} if rewrite.inferred_type else set())
    q_type, r_type = qa.get("product_type"), ra.get("product_type")
    ptype = r_type or q_type
    soft_p: list[float] = []
    hard_p: list[float] = []

    def differs(attr: str, conflict: bool) -> None:
        guessed = attr in q_guess or attr in r_guess
        (signals["soft"] if guessed else signals["hard"] if conflict else signals["soft"]).append(
            attr + ("?" if guessed else "")
        )

    if q_type and r_type and q_type != r_type:
        differs("product_type", conflict=True)
    if (
        "gender" in qa
        and "gender" in ra
        and qa["gender"] != ra["gender"]
        and ((ra["gender"], qa["gender"]) not in GENDER_COMPATIBLE)
    ):
        differs("gender", conflict=True)
    for feature, wanted in query.features.items():
        if feature in rewrite.features:
            if rewrite.features[feature] != wanted:
                signals["hard"].append(f"feature:{feature}")
        elif not rewrite_is_product:
            signals["dropped"].append(f"feature:{feature}")
            hard_p.append(1.0 - stats.feature_match(ptype, feature, wanted))
    for attr in SOFT_ATTRIBUTES:
        if attr in qa and attr in ra and qa[attr] != ra[attr]:
            differs(attr, conflict=False)
        elif attr in qa and attr not in ra and not rewrite_is_product:
            signals["dropped"].append(attr)
            weight = 0.5 if attr in q_guess else 1.0
            soft_p.append(weight * (1.0 - stats.match(ptype, attr, qa[attr])))
    if "gender" in qa and "gender" not in ra and not rewrite_is_product:
        signals["dropped"].append("gender")
        weight = 0.5 if "gender" in q_guess else 1.0
        hard_p.append(weight * (1.0 - stats.match(ptype, "gender", qa["gender"])))
    if query.price_max is not None:
        if rewrite_is_product:
            if product_price is not None and product_price > query.price_max:
                signals["soft"].append("price")
        elif rewrite.price_max is None or rewrite.price_max > query.price_max:
            signals["dropped"].append("price")
            soft_p.append(stats.share_above(ptype, query.price_max))
    if signals["hard"]:
        return [1.0, 0.0, 0.0], signals
    if retrieval is not None and not rewrite_is_product and "product_type" in ra:
        products = retrieval.matching(rewrite)
        if len(products):
            grades = retrieval.grade_under(query, products)
            signals["retrieved"] = len(products)
            return list(np.bincount(grades, minlength=3) / len(grades)), signals
    return grade_distribution(len(signals["soft"]), soft_p, hard_p), signals


class Teacher:
    """Grades pairs with the cascade above. Build once per catalog; call :meth:`grade`."""

    def __init__(
        self,
        catalog: pd.DataFrame,
        config: TeacherConfig | None = None,
        encoder: object | None = None,
    ) -> None:
        self.config = config or TeacherConfig()
        self.catalog = catalog.set_index("product_id", drop=False)
        # plain dicts: a pandas row lookup per pair costs more than grading the pair
        self._products: dict = self.catalog.to_dict("index")
        self._product_readings: dict[str, Reading] = {}
        self.lexicon = CatalogLexicon(catalog)
        self.stats = CatalogStats(catalog)
        self.retrieval = CatalogRetrieval(catalog)
        self._encoder = encoder
        self._stored_embeddings: Path | None = None  # preloaded when the encoder is first used
        self._readings: dict[str, Reading] = {}
        self.encoder_texts = 0
        self.learned: dict = {"synonyms": {}, "filler": []}
        self.calibration: CalibratedGrader | None = None
        self.judgments: pd.DataFrame | None = None  # what the calibration was fitted on

    def calibrate(self, judgments: pd.DataFrame) -> CalibrationSummary:
        """Grade from now on with a model fitted on ``judgments`` (query, product_id, grade)."""
        self.calibration = CalibratedGrader.fit(
            self.catalog.reset_index(drop=True),
            judgments,
            folds=self.config.calibration_folds,
            encoder=self.encoder if self.config.calibration_encoder else None,
            feedback_depth=self.config.calibration_feedback_depth,
            title_names=self.config.calibration_title_names,
            topics=self.config.calibration_topics,
        )
        self.judgments = judgments[["query", "product_id", "grade"]].reset_index(drop=True)
        return self.calibration.summary

    @classmethod
    def from_data(cls, data_dir: str | Path, labels: str | Path | None = None) -> Teacher:
        """The teacher over ``data_dir``'s catalog, with the shopper synonyms and filler words
        learned from ``labels`` (a labeled_pairs.parquet) when given, and the settings label
        graded them with: the judge that labelled the training pairs, for GRPO's reward and for
        vetting rewrites before serving."""
        from qrewrite.tables import read_parquet_table

        data = Path(data_dir)
        catalog = read_parquet_table(
            data / "catalog.parquet", "catalog", "--data must be a synth or import-judged output"
        ).to_pandas()
        teacher = cls(catalog, label_teacher_config(labels) if labels is not None else None)
        if labels is not None and embeddings_beside(labels).is_file():
            teacher.use_embeddings(embeddings_beside(labels))
        judgments = read_judgments(data)
        if judgments is not None and teacher.config.calibrate_on_judgments:
            teacher.calibrate(judgments)
        if labels is not None:
            teacher.learn_from(read_parquet_table(Path(labels), "labeled pairs").to_pandas())
        return teacher

    def save(self, directory: str | Path) -> Path:
        """Everything this teacher grades with, in ``directory``: its catalog, the synonyms and
        filler words it learned, the judgments it calibrated on and its thresholds. A few
        hundred KB for the demo's catalog; :meth:`load` rebuilds a teacher that grades alike
        (the registered model carries it to vet rewrites where it is served)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.catalog.reset_index(drop=True).to_parquet(out / TEACHER_CATALOG, index=False)
        if self.judgments is not None:
            self.judgments.to_parquet(out / TEACHER_JUDGMENTS, index=False)
        if not self.save_embeddings(out / TEACHER_EMBEDDINGS):
            (out / TEACHER_EMBEDDINGS).unlink(missing_ok=True)  # not another teacher's
        state = {"config": asdict(self.config), "learned": self.learned}
        (out / TEACHER_STATE).write_text(json.dumps(state, indent=1, sort_keys=True) + "\n")
        return out

    @classmethod
    def load(cls, directory: str | Path) -> Teacher:
        """The teacher :meth:`save` wrote (the calibration is fitted again: it is
        deterministic, and a pickle would tie the model to one scikit-learn release)."""
        from qrewrite.tables import read_parquet_table

        src = Path(directory)
        state_file = src / TEACHER_STATE
        if not state_file.is_file():
            raise DataError(f"{state_file}: not found; not a saved teacher")
        try:
            state = json.loads(state_file.read_text(encoding="utf-8"))
            config = TeacherConfig(**{**RECORDED_BEFORE, **state["config"]})
            learned = state["learned"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise DataError(f"{state_file}: not a saved teacher's state ({e})") from e
        catalog = read_parquet_table(src / TEACHER_CATALOG, "teacher catalog").to_pandas()
        teacher = cls(catalog, config)
        if (src / TEACHER_EMBEDDINGS).is_file():
            teacher.use_embeddings(src / TEACHER_EMBEDDINGS)
        judgments_file = src / TEACHER_JUDGMENTS
        if judgments_file.exists() and config.calibrate_on_judgments:
            teacher.calibrate(read_parquet_table(judgments_file, "judgments").to_pandas())
        synonyms = {w: tuple(v) for w, v in learned.get("synonyms", {}).items()}
        teacher.lexicon.add_synonyms(synonyms)
        teacher.lexicon.filler |= set(learned.get("filler", []))
        teacher.learned = {"synonyms": synonyms, "filler": sorted(teacher.lexicon.filler)}
        return teacher

    @property
    def encoder(self):  # a SentenceEncoder, imported lazily: torch takes seconds to import
        if self._encoder is None:
            from qrewrite.labeling.encoder import SentenceEncoder

            self._encoder = SentenceEncoder(batch_size=self.config.encoder_batch_size)
        if self._stored_embeddings is not None:
            from qrewrite.labeling.encoder import load_embeddings

            path, self._stored_embeddings = self._stored_embeddings, None
            n = load_embeddings(self._encoder, path)
            log.info("teacher: %d stored embeddings preloaded from %s", n, path)
        return self._encoder

    def use_embeddings(self, path: str | Path) -> None:
        """Preload the text embeddings at ``path`` (:meth:`save_embeddings`) when the encoder is
        first needed, so that texts embedded by an earlier step are not embedded again."""
        self._stored_embeddings = Path(path)

    def save_embeddings(self, path: str | Path) -> int:
        """Write every text embedding this teacher has (computed or preloaded) to ``path``;
        returns how many (0: none, no file)."""
        from qrewrite.labeling.encoder import save_embeddings, stored_count

        if self._encoder is None:
            if self._stored_embeddings is None:
                return 0
            # never needed here: pass the stored file on as it came, without loading torch
            shutil.copyfile(self._stored_embeddings, path)
            return stored_count(path)
        # (the property preloads a stored file first, so that it is written again in full)
        return save_embeddings(self.encoder, path)

    def read(self, text: str) -> Reading:
        if text not in self._readings:
            self._readings[text] = self.lexicon.read(text)
        return self._readings[text]

    def learn_from(self, pairs: pd.DataFrame) -> None:
        """Learn shopper synonyms from the (query, query) pairs and filler words from the
        queries of this batch, so that slang and noise stop counting as unread words."""
        is_query_pair = (
            pairs["product_id"].isna() if "product_id" in pairs else pd.Series(True, pairs.index)
        )
        qq = pairs[is_query_pair.to_numpy()]
        synonyms = mine_synonyms(self.lexicon, list(zip(qq["query"], qq["rewrite"], strict=True)))
        self.lexicon.add_synonyms(synonyms)
        texts = list(dict.fromkeys([*pairs["query"], *qq["rewrite"]]))
        self.lexicon.filler |= mine_filler_words(self.lexicon, texts)
        self._readings.clear()
        self._product_readings.clear()
        self.learned = {"synonyms": synonyms, "filler": sorted(self.lexicon.filler)}

    def _infer_types(self, readings: list[Reading]) -> None:
        """Give a product type to readings whose unknown words name one (slang, synonyms)."""
        todo = [r for r in readings if "product_type" not in r.attributes and r.unknown]
        types = self.lexicon.product_types
        if not todo or not types:
            return
        phrases = [" ".join(r.unknown) for r in todo]
        self.encoder_texts += len(set(phrases))
        sims = self.encoder.encode(phrases) @ self.encoder.encode(types).T
        order = np.argsort(-sims, axis=1, kind="stable")
        for r, row, best in zip(todo, sims, order, strict=True):
            second = row[best[1]] if len(best) > 1 else -1.0
            if row[best[0]] >= self.config.type_similarity and (
                row[best[0]] - second >= self.config.type_margin
            ):
                r.attributes["product_type"] = types[best[0]]
                r.inferred_type = True

    def grade(self, pairs: pd.DataFrame, learn: bool = True) -> pd.DataFrame:
        """Grade ``pairs`` (query, rewrite[, product_id, source, shared_purchases, ...]).

        Returns grade, p_irrelevant, p_partial, p_relevant, and signals (a JSON-able dict).
        """
        if self.calibration is not None:
            return self._grade_calibrated(pairs)
        if learn:
            self.learn_from(pairs)
        queries = [self.read(q) for q in pairs["query"]]
        pids = pairs["product_id"] if "product_id" in pairs else pd.Series(None, pairs.index)
        rewrites: list[Reading] = []
        is_product: list[bool] = []
        prices: list[float | None] = []
        for r, pid in zip(pairs["rewrite"], pids, strict=True):
            if pid is not None and pd.notna(pid) and pid in self._products:
                product = self._products[pid]
                if pid not in self._product_readings:
                    self._product_readings[pid] = _catalog_reading(product, self.lexicon)
                rewrites.append(self._product_readings[pid])
                is_product.append(True)
                price = product.get("price")
                prices.append(float(price) if price is not None and pd.notna(price) else None)
            else:
                rewrites.append(self.read(r))
                is_product.append(False)
                prices.append(None)
        self._infer_types(list({id(x): x for x in queries + rewrites}.values()))

        sim = np.full(len(pairs), np.nan)
        idx = [
            i
            for i in range(len(pairs))
            if queries[i].unknown
            or (not is_product[i] and rewrites[i].unknown)
            # a product whose catalog has no type (imported data): closeness must decide
            or (is_product[i] and "product_type" not in rewrites[i].attributes)
        ]
        if idx:
            a = [str(pairs["query"].iloc[i]) for i in idx]
            b = [str(pairs["rewrite"].iloc[i]) for i in idx]
            self.encoder_texts += len(set(a) | set(b))
            sim[idx] = self.encoder.similarity(a, b)

        shared = (
            pairs["shared_purchases"].fillna(0).to_numpy()
            if "shared_purchases" in pairs
            else np.zeros(len(pairs))
        )
        source = pairs["source"].to_numpy() if "source" in pairs else np.full(len(pairs), "")
        rows = [
            self._judge(
                queries[i],
                rewrites[i],
                is_product[i],
                prices[i],
                sim[i],
                int(shared[i]),
                str(source[i]),
            )
            for i in range(len(pairs))
        ]
        out = pd.DataFrame(
            [r.probabilities for r in rows], columns=list(GRADE_COLUMNS), index=pairs.index
        )
        out.insert(0, "grade", np.array([r.grade for r in rows], dtype=np.int8))
        out["signals"] = [r.signals for r in rows]
        return out

    def _grade_calibrated(self, pairs: pd.DataFrame) -> pd.DataFrame:
        """Grades from the model fitted on judgments: title pairs directly, rewrites by the
        titles they retrieve."""
        assert self.calibration is not None
        cal = self.calibration
        queries = pairs["query"].astype(str).tolist()
        pids = pairs["product_id"] if "product_id" in pairs else pd.Series(None, pairs.index)
        rows = np.array([cal.row_of.get(p, -1) if pd.notna(p) else -1 for p in pids])
        probs = np.zeros((len(pairs), 3))
        titles = np.flatnonzero(rows >= 0)
        rewrites = np.flatnonzero(rows < 0)
        probs[titles] = cal.grade_products([queries[i] for i in titles], rows[titles])
        probs[rewrites] = cal.grade_rewrites(
            [queries[i] for i in rewrites], pairs["rewrite"].astype(str).iloc[rewrites].tolist()
        )
        out = pd.DataFrame(probs, columns=list(GRADE_COLUMNS), index=pairs.index)
        out.insert(0, "grade", cal.grades(queries, probs))
        source = pairs["source"].to_numpy() if "source" in pairs else np.full(len(pairs), "")
        out["signals"] = [
            {
                "grader": "calibrated_cross_fitted" if cal.held_out(q) else "calibrated",
                "expected_grade": round(float(p @ np.arange(3)), 3),
                "by": "title" if r >= 0 else "retrieved_titles",
                "hard": [],
                "soft": [],
                "dropped": [],
                "behaviour": {"source": str(s)},
            }
            for q, p, r, s in zip(queries, probs, rows, source, strict=True)
        ]
        return out

    def _judge(
        self,
        q: Reading,
        r: Reading,
        product: bool,
        price: float | None,
        sim: float,
        shared: int,
        source: str,
    ) -> Judgement:
        cfg = self.config
        dist, sig = compare(q, r, product, self.stats, price, self.retrieval)
        unknown = q.unknown + ([] if product else r.unknown)
        sig["unknown_words"] = unknown
        sig["similarity"] = None if np.isnan(sim) else round(float(sim), 3)
        sig["behaviour"] = {"source": source, "shared_purchases": shared}
        comparable = (
            "product_type" in r.attributes
            if product
            else bool(set(q.attributes) & set(r.attributes))
        )
        if not comparable and not np.isnan(sim):
            # Nothing reliable to compare: the texts' closeness decides (titles are longer and
            # wordier than queries, so they get their own thresholds).
            hi, lo = (
                (cfg.title_relevant_similarity, cfg.title_partial_similarity)
                if product
                else (cfg.relevant_similarity, cfg.partial_similarity)
            )
            g = 2 if sim >= hi else 1 if sim >= lo else 0
            dist = [0.15, 0.15, 0.15]
            dist[g] = 0.7
        grade = 0 if sig["hard"] else lower_median(dist)
        confidence = 0.9 if not unknown else 0.6
        belief = np.full(3, (1 - confidence) / 3)
        belief[grade] += confidence
        belief = belief * 0.8 + np.asarray(dist) * 0.2
        if not sig["hard"]:
            # What shoppers did is evidence too: likelihood ratios for "relevant".
            if source == "session_reformulation":
                belief[2] *= cfg.reformulation_odds
            if shared >= cfg.support_purchases:
                belief[2] *= cfg.shared_purchase_odds
        belief = belief / belief.sum()
        return Judgement(int(np.argmax(belief)), [float(x) for x in belief], sig)
