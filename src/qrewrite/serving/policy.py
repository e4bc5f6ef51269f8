"""The serving policy: which top rewrite is vetted for serving, and by whom.

Offline evaluation measures under it, the registered model carries it (with the teacher it needs)
and applies it in ``predict``, and the batch export applies it, so what is promoted is what is
served. A rewrite is served when its vetter finds it relevant:

- ``model``: the model's own P(relevant) (its relevance-tagging task) is at least
  ``min_p_relevant``;
- ``teacher``: the relevance labeler that labelled the training pairs grades it 2, as an offline
  relevance filter over the serving table;
- ``both``: both must agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qrewrite.errors import ConfigError

VETTERS = ("model", "teacher", "both")


@dataclass(frozen=True)
class ServingPolicy:
    """Who vets a top rewrite before it is served, e.g.
    ``ServingPolicy(vet="teacher").serves(p_relevant=0.2, teacher_grade=2)`` is True."""

    vet: str = "model"
    min_p_relevant: float = 0.5

    @classmethod
    def of(cls, source: Any) -> ServingPolicy:
        """The policy held by a step config (``evaluate:``, ``rewrite:``) or by a mapping of its
        fields (evaluation's recorded config)."""
        values = source if isinstance(source, dict) else vars(source)
        return cls(
            vet=str(values.get("vet", cls.vet)),
            min_p_relevant=float(values.get("min_p_relevant", cls.min_p_relevant)),
        )

    def check(self, section: str) -> None:
        """A clear error for a policy that cannot be applied."""
        if not 0 <= self.min_p_relevant <= 1:
            raise ConfigError(f"{section}.min_p_relevant={self.min_p_relevant}: expected 0..1")
        if self.vet not in VETTERS:
            raise ConfigError(f"{section}.vet={self.vet!r}: expected one of {', '.join(VETTERS)}")

    @property
    def needs_teacher(self) -> bool:
        return self.vet != "model"

    def serves(self, p_relevant: float, teacher_grade: int | None) -> bool:
        """Is a top rewrite vetted for serving? ``teacher_grade`` is the labeler's grade (None
        when it did not grade)."""
        by_model = p_relevant >= self.min_p_relevant
        by_teacher = teacher_grade == 2
        if self.vet == "model":
            return by_model
        if self.vet == "teacher":
            return by_teacher
        return by_model and by_teacher

    def served_mask(
        self, ranked: Sequence[Sequence[Any]], teacher_grades: Sequence[Any]
    ) -> list[bool]:
        """For each query's ranked rewrites (best first; each with ``p_relevant``), is its top
        one served? ``teacher_grades`` holds the teacher's grade of each top rewrite."""
        return [
            bool(row) and self.serves(row[0].p_relevant, grade)
            for row, grade in zip(ranked, teacher_grades, strict=True)
        ]

    def describe(self) -> str:
        """The policy in words, for reports and the model card."""
        by_model = f"the model's own P(relevant) >= {self.min_p_relevant}"
        by_teacher = "the teacher grades the rewrite relevant (2)"
        when = {"model": by_model, "teacher": by_teacher, "both": f"{by_model} and {by_teacher}"}
        return f"serve a top rewrite when {when.get(self.vet, self.vet)} (`vet: {self.vet}`)"
