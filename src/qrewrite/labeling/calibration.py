"""The teacher calibrated on human judgments: where a shop has judged (query, product) pairs, a
small model over cheap text signals learns how people grade, instead of the rules' thresholds.

Why a model over signals and not the rules: on real titles the lexicon reads few words, so the
rule cascade falls to the sentence encoder for nearly every pair, which is slow on CPU (about 180
titles/s on 2 cores) and agrees with people less than a plain token overlap does
(docs/benchmarks.md#the-teacher-against-human-judgments). The signals here are lexical (typo
tolerant), BM25 against the whole catalog, how close the title is to what the query's results
are mostly about (pseudo-relevance feedback), how the query meets the title's name (the words
before its first separator, which name the product), the two texts' closeness in the catalog's
latent topics, and optionally the encoder's cosine; a multinomial
logistic regression maps them to calibrated P(grade 0, 1, 2) (:class:`GradeModel`).

**Cross-fitting.** Every judged query falls in one of ``folds`` folds by a hash of the query;
its pairs are graded by the model fitted on the other folds, so the teacher never grades a query
it learned from. Queries without judgments are graded by the model fitted on every fold. A
(query, rewrite) pair is graded by what the rewrite retrieves: the model grades the rewrite's top
BM25 titles under the query, as the simulator's truth grades a rewrite by the products it finds.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from qrewrite.errors import DataError
from qrewrite.search_engine import LexicalSearchEngine
from qrewrite.text import closeness, normalize_query, tokenize, trigrams

if TYPE_CHECKING:
    from scipy.sparse import csr_matrix
    from sklearn.decomposition import TruncatedSVD

LEXICAL_FEATURES = (
    "query_coverage",  # share of the query's words the title holds
    "fuzzy_coverage",  # ...counting near spellings (character trigram Jaccard of the best word)
    "fuzzy_coverage_idf",  # ...weighting rare words up
    "title_precision",  # share of the title's words close to a query word
    "head_word",  # the query's last word (usually its product type) is in the title
    "char_tfidf",  # cosine of character 3-4-gram TF-IDF vectors
    "word_tfidf",  # cosine of word TF-IDF vectors
    "bm25_log",  # log(1 + BM25 score of the title for the query)
    "bm25_share",  # ...over the best BM25 score in the catalog for the query
    "bm25_rank_log",  # log(1 + titles in the catalog scoring above it)
    "query_words",
    "title_words",
)
# How the query meets the title's name: the title's words before its first separator, which name
# the product ("Provence Wine Rack"), where what follows gives its attributes, parts or what it
# fits (" - Black", " with Remote", " for iPhone 6", "(Refurbished)"). In English product names
# the product type is the name's last word: "Gold Dress Watch" is a watch, not a gold dress.
NAME_FEATURES = (
    "name_coverage",  # share of the query's words in the title's name
    "head_word_ends_name",  # the query's last word is the name's last word
)
NAME_END = re.compile(r"\s[-\u2013|]\s|[(\[,:;]|\s(?:with|w/|for|by)\s", re.IGNORECASE)
# cosine of query and title in the catalog's latent topics (LSA: a truncated SVD of the titles'
# word TF-IDF), which relates words that share titles ("hdtv" and "tv", "coffeemaker" and
# "coffee maker")
TOPIC_FEATURE = "topic_cosine"
TOPICS = 50
# char TF-IDF cosine of the title to the centroid of the query's top ``feedback_depth`` BM25
# titles (pseudo-relevance feedback: what the query's results are mostly about)
FEEDBACK_FEATURE = "feedback_char_cosine"
ENCODER_FEATURE = "encoder_cosine"
# how many of the query's BM25 results make its feedback centroid by default: on Crowdflower
# the cross-fitted Spearman rose 0.445 -> 0.456 with 50 (0.453 with 20, 0.449 with 10); on the
# simulator's public-size set it stayed 0.727 (docs/benchmarks.md, "The teacher against
# human judgments")
FEEDBACK_DEPTH = 50
# pairs per block when reading the feedback signal (bounds its memory, not its result)
FEEDBACK_BLOCK = 2048
# The same grades on every machine: the encoder's float32 cosine differs by up to ~5e-7 between
# CPUs' kernels (torch AVX2 against AVX-512), and any signal by a last bit; read to these
# decimals, a difference moves a signal only where it straddles a rounding edge (for the
# encoder's, about once per 200,000 pairs on Crowdflower under torch's AVX2 kernels).
# Cross-fitted Spearman on Crowdflower 0.456 either way (docs/benchmarks.md, "The same data on
# every machine")
ENCODER_DECIMALS = 2
SIGNAL_DECIMALS = 6
# P(grade) is kept to these decimals: what a model fitted to its optimum on the same signals
# gives on any machine (its last bits do not reach the sixth decimal)
PROBABILITY_DECIMALS = 6


def query_fold(query: str, folds: int) -> int:
    """The cross-fitting fold of a query: a stable hash of its normalised text."""
    digest = hashlib.blake2b(normalize_query(query).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % folds


class PairFeatures:
    """Signals of (query, catalog product) pairs, computed against one catalog's titles."""

    def __init__(
        self,
        titles: Sequence[str],
        *,
        encoder: object | None = None,
        feedback_depth: int = FEEDBACK_DEPTH,
        feedback_block: int = FEEDBACK_BLOCK,
        title_names: bool = True,
        topics: int = TOPICS,
    ) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        self.titles = [str(t) for t in titles]
        self.engine = LexicalSearchEngine(self.titles)
        self.encoder = encoder
        self.feedback_depth = feedback_depth
        self.feedback_block = feedback_block
        self.names = (
            LEXICAL_FEATURES
            + (NAME_FEATURES if title_names else ())
            + ((TOPIC_FEATURE,) if topics > 0 else ())
            + ((FEEDBACK_FEATURE,) if feedback_depth > 0 else ())
            + ((ENCODER_FEATURE,) if encoder is not None else ())
        )
        self._column = {name: i for i, name in enumerate(self.names)}
        self._title_words = [tokenize(t) for t in self.titles]
        doc_freq = Counter(w for words in self._title_words for w in set(words))
        n = len(self.titles)
        self._idf = {w: math.log((n + 1) / (c + 1)) + 1.0 for w, c in doc_freq.items()}
        self._idf_unseen = math.log(n + 1) + 1.0
        self._chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 4), sublinear_tf=True)
        self._title_chars = self._chars.fit_transform(self.titles)
        self._words = TfidfVectorizer(analyzer=tokenize, sublinear_tf=True)
        self._title_wordvec = self._words.fit_transform(self.titles)
        self._title_names = (
            [
                tokenize(NAME_END.split(t, maxsplit=1)[0]) or w
                for t, w in zip(self.titles, self._title_words, strict=True)
            ]
            if title_names
            else None
        )
        self._topics, self._title_topics = self._fit_topics(topics)
        self._cache: dict[tuple[str, int], np.ndarray] = {}  # fitting and grading share pairs

    def __call__(self, queries: Sequence[str], products: np.ndarray) -> np.ndarray:
        """A (pairs, features) matrix for (queries[i], catalog title products[i])."""
        keys = list(
            zip(map(str, queries), np.asarray(products, dtype=np.int64).tolist(), strict=True)
        )
        todo = [k for k in dict.fromkeys(keys) if k not in self._cache]
        if todo:
            rows = self._compute([q for q, _ in todo], np.array([p for _, p in todo]))
            self._cache.update(zip(todo, rows, strict=True))
        if not keys:
            return np.zeros((0, len(self.names)))
        return np.stack([self._cache[k] for k in keys])

    def _compute(self, queries: Sequence[str], products: np.ndarray) -> np.ndarray:
        out = np.zeros((len(queries), len(self.names)), dtype=np.float64)
        # pairs read query by query: a query's catalog-long BM25 scores live only while its own
        # pairs are read (and its feedback members taken), so a call's memory does not grow with
        # its queries times the catalog
        pairs_of: dict[str, list[int]] = {}
        for i, q in enumerate(queries):
            pairs_of.setdefault(q, []).append(i)
        members: list[np.ndarray] = []
        for q, pairs in pairs_of.items():
            qw = list(dict.fromkeys(tokenize(q)))
            idf = [self._idf.get(w, self._idf_unseen) for w in qw]
            q_grams = [trigrams(w) for w in qw]
            scores = self.engine.scores(q)
            best = float(scores.max())
            for i in pairs:
                p = products[i]
                tw = self._title_words[p]
                tset = set(tw)
                t_grams = [trigrams(w) for w in tset]
                close = [closeness(w, t_grams) for w in qw]
                out[i, 0] = sum(w in tset for w in qw) / len(qw) if qw else 0.0
                out[i, 1] = float(np.mean(close)) if qw else 0.0
                out[i, 2] = float(np.dot(close, idf) / sum(idf)) if qw else 0.0
                t_unique = list(dict.fromkeys(tw))
                out[i, 3] = (
                    float(np.mean([closeness(w, q_grams) for w in t_unique])) if t_unique else 0.0
                )
                out[i, 4] = float(bool(qw) and qw[-1] in tset)
                s = float(scores[p])
                out[i, 7] = math.log1p(s)
                out[i, 8] = s / best if best > 0 else 0.0
                out[i, 9] = (
                    math.log1p(int((scores > s).sum())) if s > 0 else math.log1p(len(scores))
                )
                out[i, 10] = len(qw)
                out[i, 11] = len(tw)
                if self._title_names is not None:
                    name = self._title_names[p]
                    out[i, 12] = sum(w in name for w in qw) / len(qw) if qw else 0.0
                    out[i, 13] = float(bool(qw) and bool(name) and qw[-1] == name[-1])
            if self.feedback_depth > 0:
                members.append(self._feedback_members(scores))
            del scores  # before the next query's are made: one vector at a time
        q_chars = self._chars.transform(list(queries))
        out[:, 5] = np.asarray(q_chars.multiply(self._title_chars[products]).sum(axis=1)).ravel()
        q_words = self._words.transform(list(queries))
        out[:, 6] = np.asarray(q_words.multiply(self._title_wordvec[products]).sum(axis=1)).ravel()
        if self._topics is not None and self._title_topics is not None:
            from sklearn.preprocessing import normalize

            q_topics = normalize(self._topics.transform(q_words))
            out[:, self._column[TOPIC_FEATURE]] = np.einsum(
                "ij,ij->i", q_topics, self._title_topics[products]
            )
        if self.feedback_depth > 0:
            row_of = {q: i for i, q in enumerate(pairs_of)}
            centroids = self._feedback_centroids(members)
            rows = np.array([row_of[q] for q in queries], dtype=np.int64)
            # in blocks of pairs: a centroid holds the n-grams of up to ``feedback_depth``
            # titles, and one copied per pair of a judged set would take gigabytes
            for start in range(0, len(rows), self.feedback_block):
                block = slice(start, start + self.feedback_block)
                out[block, self._column[FEEDBACK_FEATURE]] = np.asarray(
                    centroids[rows[block]].multiply(self._title_chars[products[block]]).sum(axis=1)
                ).ravel()
        if self.encoder is not None:
            cosine = self.encoder.similarity(list(queries), [self.titles[p] for p in products])
            out[:, -1] = np.round(np.asarray(cosine, dtype=np.float64), ENCODER_DECIMALS)
        return np.round(out, SIGNAL_DECIMALS)

    def _fit_topics(self, topics: int) -> tuple[TruncatedSVD | None, np.ndarray | None]:
        """The catalog's latent topics (a truncated SVD of the titles' word TF-IDF, at most
        ``topics`` of them) and each title's unit-length topic vector; none when ``topics`` is
        0 or the catalog too small. ARPACK from a fixed start: the vectors differ between
        CPUs' kernels by ~1e-14, far below the signals' rounding."""
        from sklearn.decomposition import TruncatedSVD
        from sklearn.preprocessing import normalize

        k = min(topics, min(self._title_wordvec.shape) - 1)
        if k < 1:
            return None, None
        svd = TruncatedSVD(k, algorithm="arpack", random_state=0)
        return svd, normalize(svd.fit_transform(self._title_wordvec))

    def _feedback_members(self, scores: np.ndarray) -> np.ndarray:
        """The catalog rows of a query's top ``feedback_depth`` titles by its BM25 ``scores``,
        ties to the lower row as the engine's pages break them (none where it matches nothing)."""
        k = min(self.feedback_depth, len(scores))
        edge = np.partition(scores, len(scores) - k)[len(scores) - k]
        cand = np.flatnonzero((scores >= edge) & (scores > 0))
        return cand[np.lexsort((cand, -scores[cand]))[:k]]

    def _feedback_centroids(self, members: Sequence[np.ndarray]) -> csr_matrix:
        """Per query (its feedback ``members``' catalog rows), the unit-length mean char TF-IDF
        vector of those titles (a zero row where the query matches nothing)."""
        import scipy.sparse as sp

        row = np.repeat(np.arange(len(members)), [len(m) for m in members])
        col = np.concatenate(members) if members else np.zeros(0, dtype=np.int64)
        membership = sp.csr_matrix(
            (np.ones(len(row)), (row, col)), shape=(len(members), len(self.titles))
        )
        sums = (membership @ self._title_chars).tocsr()  # the mean's direction is the sum's
        norms = np.sqrt(np.asarray(sums.multiply(sums).sum(axis=1)).ravel())
        scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
        return (sp.diags(scale) @ sums).tocsr()


@dataclass
class CalibrationSummary:
    """What the calibration learned from and how it measures on held-out folds."""

    judged_pairs: int
    judged_queries: int
    folds: int
    features: list[str]
    grades: dict[int, int]
    seconds: float
    # out-of-fold (query held out) agreement with people: Spearman of the expected grade
    cross_validated_spearman: float = float("nan")
    weights: dict[str, list[float]] = field(default_factory=dict)  # per grade, standardised


def quadratic_kappa(confusion: np.ndarray) -> float:
    """Quadratic-weighted kappa of a (truth, predicted) confusion matrix of grades 0..2."""
    n = confusion.sum()
    weights = (np.subtract.outer(np.arange(3), np.arange(3)) ** 2) / 4.0
    expected = np.outer(confusion.sum(axis=1), confusion.sum(axis=0)) / n
    chance = (weights * expected).sum()
    return 1.0 - (weights * confusion).sum() / chance if chance > 0 else 0.0


def best_cuts(expected: np.ndarray, truth: np.ndarray, grid: int = 64) -> np.ndarray:
    """The two cuts on ``expected`` (grade = cuts passed) whose grades agree best with
    ``truth`` by quadratic-weighted kappa, searched over ``grid`` quantiles of ``expected``."""
    order = np.argsort(expected, kind="stable")
    e, t = expected[order], np.asarray(truth)[order]
    cum = np.vstack([np.zeros(3), np.cumsum(np.eye(3)[t], axis=0)])
    cands = np.unique(np.quantile(e, np.linspace(0, 1, grid)))
    below = np.searchsorted(e, cands, side="left")  # pairs under each cut
    best, cuts = -np.inf, np.array([0.5, 1.5])
    for a in range(len(cands)):
        for b in range(a, len(cands)):
            i, j = below[a], below[b]
            confusion = np.stack([cum[i], cum[j] - cum[i], cum[-1] - cum[j]], axis=1)
            kappa = quadratic_kappa(confusion)
            if kappa > best:
                best, cuts = kappa, np.array([cands[a], cands[b]])
    return cuts


class GradeModel:
    """A multinomial logistic regression over standardised signals, whose probabilities stay
    calibrated (no class weights: a judged set is mostly relevant, and P(relevant) must say so),
    and grades cut from the expected grade where the cuts agree best with the training grades
    (quadratic-weighted kappa). Cutting, rather than taking the most probable grade, keeps the
    minority grades: the most probable grade is "relevant" for almost every pair of a mostly
    relevant set.

    Fitted to its optimum by Newton steps (tolerance 1e-8), not stopped early by L-BFGS: where
    L-BFGS stops depends on the path its floats take, and moved P(grade) by up to 2e-3 between
    CPUs' kernels on the same signals; the optimum is one point, whatever the path."""

    def __init__(self, regularisation: float = 1.0) -> None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        self.pipeline = make_pipeline(
            StandardScaler(),
            LogisticRegression(C=regularisation, solver="newton-cholesky", tol=1e-8, max_iter=100),
        )
        self.cuts = np.array([0.5, 1.5])

    def fit(self, x: np.ndarray, y: np.ndarray) -> GradeModel:
        self.pipeline.fit(x, y)
        self.cuts = best_cuts(self.probabilities(x) @ np.arange(3), y)
        return self

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """P(grade 0, 1, 2) per row (a grade missing from the training data gets 0)."""
        out = np.zeros((len(x), 3))
        if len(x):
            out[:, self.pipeline.classes_.astype(np.int64)] = self.pipeline.predict_proba(x)
        return np.round(out, PROBABILITY_DECIMALS)

    def grades(self, probabilities: np.ndarray) -> np.ndarray:
        expected = np.asarray(probabilities) @ np.arange(3)
        return np.searchsorted(self.cuts, expected, side="right").astype(np.int8)

    def weights(self) -> dict[str, list[float]]:
        lr = self.pipeline[-1]
        return {
            str(int(c)): [round(float(w), 3) for w in row]
            for c, row in zip(lr.classes_, lr.coef_, strict=True)
        }


class CalibratedGrader:
    """P(grade) of (query, product) and (query, rewrite) pairs from a model fitted on judgments;
    build with :meth:`fit`."""

    def __init__(
        self,
        features: PairFeatures,
        models: list[GradeModel],
        full_model: GradeModel,
        judged_queries: set[str],
        folds: int,
        summary: CalibrationSummary,
        rewrite_depth: int,
    ) -> None:
        self.features = features
        self.models = models
        self.full_model = full_model
        self.judged_queries = judged_queries
        self.folds = folds
        self.summary = summary
        self.rewrite_depth = rewrite_depth
        self.row_of: dict[str, int] = {}  # product id -> catalog row, set by fit

    @classmethod
    def fit(
        cls,
        catalog: pd.DataFrame,
        judgments: pd.DataFrame,
        *,
        folds: int = 5,
        encoder: object | None = None,
        rewrite_depth: int = 10,
        regularisation: float = 1.0,
        feedback_depth: int = FEEDBACK_DEPTH,
        title_names: bool = True,
        topics: int = TOPICS,
    ) -> CalibratedGrader:
        """Fit on ``judgments`` (query, product_id, grade 0-2) over ``catalog``'s titles;
        judgments of products missing from the catalog are ignored."""
        t0 = time.perf_counter()
        features = PairFeatures(
            catalog["title"].astype(str).tolist(),
            encoder=encoder,
            feedback_depth=feedback_depth,
            title_names=title_names,
            topics=topics,
        )
        row_of = pd.Series(np.arange(len(catalog)), index=catalog["product_id"].astype(str))
        judged = judgments.assign(
            row=row_of.reindex(judgments["product_id"].astype(str)).to_numpy()
        ).dropna(subset=["row"])
        queries = judged["query"].astype(str).tolist()
        x = features(queries, judged["row"].to_numpy(dtype=np.int64))
        y = judged["grade"].to_numpy(dtype=np.int64)
        fold = np.array([query_fold(q, folds) for q in queries])

        if len(np.unique(y)) < 2:
            raise DataError("judgments need at least two different grades to calibrate on")
        fold_models: list[GradeModel] = []
        expected = np.full(len(y), np.nan)
        for f in range(folds):
            train, test = fold != f, fold == f
            if len(np.unique(y[train])) < 2:
                # a model fitted with the fold's own queries would grade what it learned from
                raise DataError(
                    f"judgments: outside calibration fold {f} of {folds} every pair has the "
                    "same grade; calibrate on more judged queries, or set "
                    "label.calibrate_on_judgments: false"
                )
            m = GradeModel(regularisation).fit(x[train], y[train])
            fold_models.append(m)
            if test.any():
                expected[test] = m.probabilities(x[test]) @ np.arange(3)
        full = GradeModel(regularisation).fit(x, y)
        from scipy.stats import spearmanr

        known = ~np.isnan(expected)
        rho = (
            float(spearmanr(expected[known], y[known]).statistic)
            if known.sum() > 2 and len(np.unique(y[known])) > 1
            else float("nan")
        )
        summary = CalibrationSummary(
            judged_pairs=len(judged),
            judged_queries=len(set(queries)),
            folds=folds,
            features=list(features.names),
            grades={int(g): int(n) for g, n in zip(*np.unique(y, return_counts=True), strict=True)},
            seconds=round(time.perf_counter() - t0, 2),
            cross_validated_spearman=round(rho, 4),
            weights=full.weights(),
        )
        judged_norm = {normalize_query(q) for q in queries}
        grader = cls(features, fold_models, full, judged_norm, folds, summary, rewrite_depth)
        grader.row_of = {str(p): i for i, p in enumerate(catalog["product_id"])}
        return grader

    def _model_for(self, query: str) -> GradeModel:
        q = normalize_query(query)
        if q in self.judged_queries:
            return self.models[query_fold(q, self.folds)]
        return self.full_model

    def held_out(self, query: str) -> bool:
        """Whether ``query`` has judgments (graded by a model fitted without them) or not."""
        return normalize_query(query) in self.judged_queries

    def grade_products(self, queries: Sequence[str], products: np.ndarray) -> np.ndarray:
        """P(grade 0, 1, 2) of each (query, catalog row) pair, by a model that never saw the
        query's judgments."""
        products = np.asarray(products, dtype=np.int64)
        out = np.zeros((len(queries), 3))
        if len(queries) == 0:
            return out
        x = self.features(queries, products)
        for m, rows in self._by_model(queries).items():
            out[rows] = m.probabilities(x[rows])
        return out

    def grades(self, queries: Sequence[str], probabilities: np.ndarray) -> np.ndarray:
        """The grade (0-2) of each pair from its probabilities, cut where the model of its query
        cuts (:class:`GradeModel`)."""
        out = np.zeros(len(queries), dtype=np.int8)
        for m, rows in self._by_model(queries).items():
            out[rows] = m.grades(probabilities[rows])
        return out

    def _by_model(self, queries: Sequence[str]) -> dict[GradeModel, list[int]]:
        groups: dict[GradeModel, list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault(self._model_for(q), []).append(i)
        return groups

    def grade_rewrites(self, queries: Sequence[str], rewrites: Sequence[str]) -> np.ndarray:
        """P(grade) of each (query, rewrite): the mean, over the rewrite's top BM25 titles, of
        those titles' grade probabilities under the query, weighted as nDCG weighs ranks (what a
        shopper sees first counts most); a rewrite that retrieves nothing is irrelevant."""
        out = np.tile([1.0, 0.0, 0.0], (len(queries), 1))
        pair_q: list[str] = []
        pair_p: list[int] = []
        owner: list[int] = []
        weight: list[float] = []
        idx, _ = self.features.engine.search(list(rewrites), self.rewrite_depth)
        for i, (q, row) in enumerate(zip(queries, idx, strict=True)):
            found = row[row >= 0]
            pair_q += [q] * len(found)
            pair_p += found.tolist()
            owner += [i] * len(found)
            weight += (1.0 / np.log2(np.arange(2, len(found) + 2))).tolist()
        if pair_q:
            probs = self.grade_products(pair_q, np.array(pair_p)) * np.array(weight)[:, None]
            owners = np.array(owner)
            for i in np.unique(owners):
                out[i] = probs[owners == i].sum(axis=0) / probs[owners == i].sum()
        return np.round(out, PROBABILITY_DECIMALS)
