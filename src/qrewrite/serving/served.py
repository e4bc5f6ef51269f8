"""What is served: the model's ranked rewrites, vetted by the serving policy.

The batch export (``qrewrite rewrite``) and the registered MLflow model both serve through
:class:`ServedRewriter`, and evaluation measures under the same :class:`ServingPolicy`, so a
rewrite is served in production exactly when it was served in the evaluation that promoted the
model. A policy that vets with the teacher needs the teacher's catalog tables: :func:`save_policy`
writes them beside the policy, and the registry logs that folder with the model.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from qrewrite.errors import ConfigError, DataError
from qrewrite.serving.policy import ServingPolicy
from qrewrite.serving.rewriter import (
    GenerationSettings,
    Rewrite,
    Rewriter,
    generation_settings,
)

POLICY_FILE = "policy.json"
TEACHER_DIR = "teacher"


@dataclass
class ServedRewrites:
    """One query's ranked rewrites and what the policy serves of them."""

    query: str
    rewrites: list[Rewrite]
    teacher_grade: int | None  # the teacher's grade of the top rewrite (None: not asked)
    served: bool  # the top rewrite passed the policy
    # vet "page": what the teacher finds the top rewrite's page gains (None: not asked)
    page_gain: float | None = None

    @property
    def served_rewrite(self) -> str | None:
        return self.rewrites[0].text if self.served else None


def grade_top_rewrites(
    teacher: Any, queries: Sequence[str], ranked: Sequence[Sequence[Rewrite]]
) -> list[int | None]:
    """The teacher's grade of each query's top rewrite (None where a query has none)."""
    out: list[int | None] = [None] * len(queries)
    graded = [i for i, row in enumerate(ranked) if row]
    if teacher is None or not graded:
        return out
    pairs = pd.DataFrame(
        {"query": [queries[i] for i in graded], "rewrite": [ranked[i][0].text for i in graded]}
    )
    for i, g in zip(graded, teacher.grade(pairs, learn=False)["grade"], strict=True):
        out[i] = int(g)
    return out


class ServedRewriter:
    """A :class:`Rewriter` under a :class:`ServingPolicy` (with the teacher it vets with)."""

    def __init__(self, rewriter: Rewriter, policy: ServingPolicy, teacher: Any = None) -> None:
        policy.check("serving")
        if policy.needs_teacher and teacher is None:
            raise ConfigError(
                f"the serving policy vet={policy.vet!r} vets with the teacher, and none was given"
            )
        self.rewriter = rewriter
        self.policy = policy
        self.teacher = teacher if policy.needs_teacher else None
        self.retrieval = None  # vet "page": the engine over the teacher's catalog, as evaluated
        if policy.vet == "page":
            from qrewrite.search_engine import ProductRetriever

            self.retrieval = ProductRetriever(
                teacher.catalog.reset_index(drop=True), policy.recall_depth
            )

    def vet(self, queries: Sequence[str], ranked: Sequence[list[Rewrite]]) -> list[ServedRewrites]:
        """Apply the policy to ranked rewrites (best first)."""
        grades = grade_top_rewrites(self.teacher, queries, ranked)
        gains: list[float | None] = [None] * len(queries)
        if self.retrieval is not None:
            tops = [row[0].text if row else "" for row in ranked]
            gains = self.policy.page_gains(self.teacher, self.retrieval, queries, tops)
        mask = self.policy.served_mask(ranked, grades, gains)
        return [
            ServedRewrites(q, list(row), g, ok, gain)
            for q, row, g, ok, gain in zip(queries, ranked, grades, mask, gains, strict=True)
        ]

    def rewrite(
        self, queries: Sequence[str], *, k: int = 3, progress: bool = False
    ) -> list[ServedRewrites]:
        """Up to ``k`` ranked rewrites per query, and which one is served."""
        return self.vet(queries, self.rewriter.rewrite(queries, k=k, progress=progress))


@dataclass
class ServingSetup:
    """What a registered model serves with: the policy, its teacher (None when the policy needs
    none) and the generation settings evaluation measured with."""

    policy: ServingPolicy
    teacher: Any
    generation: GenerationSettings


def save_policy(
    directory: str | Path,
    policy: ServingPolicy,
    *,
    teacher: Any = None,
    generation: GenerationSettings | None = None,
) -> Path:
    """Write ``policy``, the ``generation`` settings and, when the policy vets with the
    teacher, the teacher's tables to ``directory``, the folder the registered model carries."""
    policy.check("serving")
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    if policy.needs_teacher:
        if teacher is None:
            raise ConfigError(
                f"the serving policy vet={policy.vet!r} vets with the teacher: give the data "
                "directory and the labels the teacher is built from (--data, --labels)"
            )
        teacher.save(out / TEACHER_DIR)
    record = {
        **asdict(policy),
        "description": policy.describe(),
        "generation": asdict(generation or GenerationSettings()),
    }
    (out / POLICY_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return out


def load_policy(directory: str | Path) -> ServingSetup:
    """What :func:`save_policy` wrote."""
    src = Path(directory)
    path = src / POLICY_FILE
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not {"vet", "min_p_relevant"} <= set(record):
            raise KeyError("vet and min_p_relevant")
        policy = ServingPolicy.of(record)  # a field saved before it existed keeps its default
        generation = generation_settings(record.get("generation") or {})
    except FileNotFoundError as e:
        raise DataError(f"{path}: not found; not a saved serving policy") from e
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{path}: not a saved serving policy ({e})") from e
    policy.check(str(path))
    teacher = None
    if policy.needs_teacher:
        from qrewrite.labeling.teacher import Teacher

        teacher = Teacher.load(src / TEACHER_DIR)
    return ServingSetup(policy, teacher, generation)
