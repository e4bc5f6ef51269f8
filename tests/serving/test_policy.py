"""The serving policy that evaluation assumes and the export applies."""

from __future__ import annotations

import pytest

from qrewrite.errors import ConfigError
from qrewrite.serving.policy import ServingPolicy

# (the model's P(relevant), the teacher's grade or None when it did not grade)
CASES = ((0.9, 2), (0.9, 1), (0.2, 2), (0.2, None), (0.5, 0))


@pytest.mark.parametrize(
    ("vet", "expected"),
    [
        ("model", [True, True, False, False, True]),
        ("teacher", [True, False, True, False, False]),
        ("both", [True, False, False, False, False]),
    ],
)
def test_each_vetter_decides_as_documented(vet: str, expected: list[bool]) -> None:
    policy = ServingPolicy(vet=vet, min_p_relevant=0.5)
    assert [policy.serves(p, g) for p, g in CASES] == expected


def test_a_policy_that_cannot_be_applied_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match=r"rewrite.vet='judge': expected one of model"):
        ServingPolicy(vet="judge").check("rewrite")
    with pytest.raises(ConfigError, match=r"rewrite.min_p_relevant=1.5: expected 0..1"):
        ServingPolicy(min_p_relevant=1.5).check("rewrite")
