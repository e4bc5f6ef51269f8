"""The serving policy: which top rewrite is vetted for serving, and by whom.

Offline evaluation assumes it and the batch export applies it, so the simulated A/B test measures
the rewrites production would actually serve. A rewrite is served when its vetter finds it
relevant:

- ``model``: the model's own P(relevant) (its relevance-tagging task) is at least
  ``min_p_relevant``;
- ``teacher``: the relevance labeler that labelled the training pairs grades it 2, as an offline
  relevance filter over the serving table;
- ``both``: both must agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from qrewrite.errors import ConfigError

VETTERS = ("model", "teacher", "both")


def check_policy(section: str, vet: str, min_p_relevant: float) -> None:
    """A clear error for a policy that cannot be applied."""
    if not 0 <= min_p_relevant <= 1:
        raise ConfigError(f"{section}.min_p_relevant={min_p_relevant}: expected 0..1")
    if vet not in VETTERS:
        raise ConfigError(f"{section}.vet={vet!r}: expected one of {', '.join(VETTERS)}")


def needs_teacher(vet: str) -> bool:
    return vet != "model"


def serve(vet: str, min_p_relevant: float, p_relevant: float, teacher_grade: int | None) -> bool:
    """Is a top rewrite vetted for serving? ``teacher_grade`` is the labeler's grade (None when
    it did not grade)."""
    by_model = p_relevant >= min_p_relevant
    by_teacher = teacher_grade == 2
    if vet == "model":
        return by_model
    if vet == "teacher":
        return by_teacher
    return by_model and by_teacher


def served_mask(
    vet: str, min_p_relevant: float, ranked: Sequence[Sequence[Any]], teacher_grades: Sequence[Any]
) -> list[bool]:
    """For each query's ranked rewrites (best first; each with ``p_relevant``), is its top one
    served? ``teacher_grades`` holds the teacher's grade of each top rewrite (None: not graded)."""
    return [
        bool(row) and serve(vet, min_p_relevant, row[0].p_relevant, grade)
        for row, grade in zip(ranked, teacher_grades, strict=True)
    ]


def describe(vet: str, min_p_relevant: float) -> str:
    """The policy in words, for reports."""
    by_model = f"the model's own P(relevant) >= {min_p_relevant}"
    by_teacher = "the teacher grades the rewrite relevant (2)"
    when = {"model": by_model, "teacher": by_teacher, "both": f"{by_model} and {by_teacher}"}
    return f"serve a top rewrite when {when.get(vet, vet)} (`vet: {vet}`)"
