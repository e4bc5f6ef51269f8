"""The serving policy: which top rewrite is vetted for serving, and by whom.

Offline evaluation measures under it, the registered model carries it (with the teacher it needs)
and applies it in ``predict``, and the batch export applies it, so what is promoted is what is
served. A rewrite is served when its vetter finds it relevant:

- ``model``: the model's own P(relevant) (its relevance-tagging task) is at least
  ``min_p_relevant``;
- ``teacher``: the relevance labeler that labelled the training pairs grades it 2, as an offline
  relevance filter over the serving table;
- ``both``: both must agree;
- ``page``: the teacher grades the first page the shopper would see with the rewrite (the
  original's results and the rewrite's, fused as ``merge`` fuses them) above the original's own
  first page, by more than ``min_page_gain`` (:meth:`ServingPolicy.page_gains`). A relevant
  rewrite can still push the original's better results down; this vetter asks what the page
  gains, not whether the rewrite is relevant.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from qrewrite.errors import ConfigError

if TYPE_CHECKING:
    from qrewrite.search_engine import ProductRetriever

VETTERS = ("model", "teacher", "both", "page")


@dataclass(frozen=True)
class ServingPolicy:
    """Who vets a top rewrite before it is served, e.g.
    ``ServingPolicy(vet="teacher").serves(p_relevant=0.2, teacher_grade=2)`` is True."""

    vet: str = "model"
    min_p_relevant: float = 0.5
    # vet "page": the least gain, in the teacher's expected DCG@page_size, that serves a rewrite
    min_page_gain: float = 0.0
    # the page a shopper sees with a rewrite: the first page_size products of the original's and
    # the rewrite's top recall_depth results merged (rrf with rrf_k, or interleave), as
    # evaluation's pages are
    page_size: int = 10
    merge: str = "rrf"
    rrf_k: int = 60
    # rrf: the rewrite's list weighs this much against the original's 1 (below 1: the rewrite
    # adds below the original's best results rather than among them)
    rewrite_weight: float = 1.0
    recall_depth: int = 100

    @classmethod
    def of(cls, source: Any) -> ServingPolicy:
        """The policy held by a step config (``evaluate:``, ``rewrite:``) or by a mapping of its
        fields (evaluation's recorded config); a field the source lacks keeps its default."""
        values = source if isinstance(source, dict) else vars(source)
        return cls(
            vet=str(values.get("vet", cls.vet)),
            min_p_relevant=float(values.get("min_p_relevant", cls.min_p_relevant)),
            min_page_gain=float(values.get("min_page_gain", cls.min_page_gain)),
            page_size=int(values.get("page_size", cls.page_size)),
            merge=str(values.get("merge", cls.merge)),
            rrf_k=int(values.get("rrf_k", cls.rrf_k)),
            rewrite_weight=float(values.get("rewrite_weight", cls.rewrite_weight)),
            recall_depth=int(values.get("recall_depth", cls.recall_depth)),
        )

    def check(self, section: str) -> None:
        """A clear error for a policy that cannot be applied."""
        from qrewrite.search_engine import MERGES

        if not 0 <= self.min_p_relevant <= 1:
            raise ConfigError(f"{section}.min_p_relevant={self.min_p_relevant}: expected 0..1")
        if self.vet not in VETTERS:
            raise ConfigError(f"{section}.vet={self.vet!r}: expected one of {', '.join(VETTERS)}")
        if self.merge not in MERGES:
            raise ConfigError(
                f"{section}.merge={self.merge!r}: expected one of {', '.join(MERGES)}"
            )
        if not 0 < self.rewrite_weight <= 1:
            raise ConfigError(
                f"{section}.rewrite_weight={self.rewrite_weight}: expected above 0 and at most 1 "
                "(the original's list weighs 1)"
            )
        if self.rewrite_weight != 1 and self.merge != "rrf":
            raise ConfigError(
                f"{section}.rewrite_weight={self.rewrite_weight}: weighs the lists of merge: rrf "
                f"only, not {self.merge}"
            )
        if self.page_size < 1 or self.recall_depth < self.page_size:
            raise ConfigError(
                f"{section}: page_size={self.page_size}, recall_depth={self.recall_depth}: "
                "expected 1 <= page_size <= recall_depth"
            )

    @property
    def needs_teacher(self) -> bool:
        return self.vet != "model"

    def serves(
        self, p_relevant: float, teacher_grade: int | None, page_gain: float | None = None
    ) -> bool:
        """Is a top rewrite vetted for serving? ``teacher_grade`` is the labeler's grade and
        ``page_gain`` what the teacher finds the page gains (:meth:`page_gains`); None when not
        asked."""
        if self.vet == "page":
            return page_gain is not None and page_gain > self.min_page_gain
        by_model = p_relevant >= self.min_p_relevant
        by_teacher = teacher_grade == 2
        if self.vet == "model":
            return by_model
        if self.vet == "teacher":
            return by_teacher
        return by_model and by_teacher

    def served_mask(
        self,
        ranked: Sequence[Sequence[Any]],
        teacher_grades: Sequence[Any],
        page_gains: Sequence[float | None] | None = None,
    ) -> list[bool]:
        """For each query's ranked rewrites (best first; each with ``p_relevant``), is its top
        one served? ``teacher_grades`` holds the teacher's grade of each top rewrite and
        ``page_gains`` (vet ``page``) what its page gains."""
        gains = page_gains if page_gains is not None else [None] * len(ranked)
        return [
            bool(row) and self.serves(row[0].p_relevant, grade, gain)
            for row, grade, gain in zip(ranked, teacher_grades, gains, strict=True)
        ]

    def fuse(self, original: Sequence[int], rewrite: Sequence[int]) -> list[int]:
        """The products a shopper sees with a rewrite, best first: the two result lists' top
        ``recall_depth`` merged."""
        from qrewrite.search_engine import fuse_rrf, merge_recall

        original, rewrite = original[: self.recall_depth], rewrite[: self.recall_depth]
        if self.merge == "rrf":
            return fuse_rrf(
                original, rewrite, self.recall_depth, self.rrf_k, rewrite_weight=self.rewrite_weight
            )
        return merge_recall(original, rewrite, self.recall_depth)

    def page_gains(
        self,
        teacher: Any,
        retrieval: ProductRetriever,
        queries: Sequence[str],
        rewrites: Sequence[str],
    ) -> list[float | None]:
        """For each (query, rewrite): the teacher's expected DCG@page_size of the page served with
        the rewrite minus that of the original's own page, each product graded under the query
        (expected grade 0-2, discounted by log2(rank + 1) as nDCG discounts); None where a
        query has no rewrite. E.g. a rewrite that only pushes the original's relevant products
        down gains less than 0; one that adds relevant products where the original found
        irrelevant ones gains more."""
        out: list[float | None] = [None] * len(queries)
        todo = [i for i, r in enumerate(rewrites) if r]
        if not todo:
            return out
        originals = retrieval.ranked([queries[i] for i in todo])
        found = retrieval.ranked([rewrites[i] for i in todo])
        pages = [
            (o[: self.page_size], self.fuse(o, r)[: self.page_size])
            for o, r in zip(originals, found, strict=True)
        ]
        pairs = list(
            dict.fromkeys(
                (queries[i], d)
                for i, both in zip(todo, pages, strict=True)
                for page in both
                for d in page
            )
        )
        expected: dict[tuple[str, int], float] = {}
        if pairs:
            import pandas as pd

            rows = np.array([d for _, d in pairs], dtype=np.int64)
            graded = teacher.grade(
                pd.DataFrame(
                    {
                        "query": [q for q, _ in pairs],
                        "rewrite": retrieval.titles[rows],
                        "product_id": retrieval.ids[rows],
                    }
                ),
                learn=False,
            )
            grade = graded["p_partial"].to_numpy() + 2 * graded["p_relevant"].to_numpy()
            expected = dict(zip(pairs, grade.tolist(), strict=True))
        discount = 1.0 / np.log2(np.arange(2, self.page_size + 2))

        def dcg(query: str, page: Sequence[int]) -> float:
            # a page holds at most page_size products
            return float(
                sum(expected[(query, d)] * w for d, w in zip(page, discount, strict=False))
            )

        for i, (original_page, served_page) in zip(todo, pages, strict=True):
            out[i] = dcg(queries[i], served_page) - dcg(queries[i], original_page)
        return out

    @property
    def fusion(self) -> str:
        """How the two lists share the page, in a few words: ``rrf``, ``rrf, the rewrite's list
        weighing 0.5``, ``interleave``."""
        if self.merge == "rrf" and self.rewrite_weight != 1:
            return f"rrf, the rewrite's list weighing {self.rewrite_weight:g}"
        return self.merge

    def describe(self) -> str:
        """The policy in words, for reports and the model card."""
        by_model = f"the model's own P(relevant) >= {self.min_p_relevant}"
        by_teacher = "the teacher grades the rewrite relevant (2)"
        by_page = (
            f"the teacher grades the first {self.page_size} products served with the rewrite "
            f"(the original's and the rewrite's results, {self.fusion}) above the original's own "
            f"by more than {self.min_page_gain} (expected DCG@{self.page_size})"
        )
        when = {
            "model": by_model,
            "teacher": by_teacher,
            "both": f"{by_model} and {by_teacher}",
            "page": by_page,
        }
        return f"serve a top rewrite when {when.get(self.vet, self.vet)} (`vet: {self.vet}`)"
