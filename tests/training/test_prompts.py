"""The tasks' prompts: task B's two forms and their inverse."""

from __future__ import annotations

import pytest

from qrewrite.training.prompts import (
    TAGGING_FORMS,
    TAGGING_INSTRUCTION,
    answer,
    parse_tagging_prompt,
    rewrite_prompt,
    tagging_form,
    tagging_prompt,
)


def test_task_b_asks_in_the_conversation_that_wrote_the_rewrite() -> None:
    prompt = tagging_prompt("red shoes", "red sneakers")
    assert prompt[:2] == [*rewrite_prompt("red shoes"), *answer("red sneakers")]
    assert prompt[2] == {"role": "user", "content": TAGGING_INSTRUCTION}


@pytest.mark.parametrize("form", TAGGING_FORMS)
@pytest.mark.parametrize(
    ("query", "rewrite"),
    [("red shoes", "red sneakers"), ("mug 12 oz", "query: mug"), ("tv", "")],
)
def test_either_form_reads_back(form: str, query: str, rewrite: str) -> None:
    prompt = tagging_prompt(query, rewrite, form=form)
    assert tagging_form(prompt) == form
    assert parse_tagging_prompt(prompt) == (query, rewrite)


def test_the_message_form_is_the_one_models_saved_before_learnt() -> None:
    (message,) = tagging_prompt("red shoes", "red sneakers", form="message")
    assert message["content"] == (
        f"{TAGGING_INSTRUCTION}\nquery: red shoes\nrewrite: red sneakers\ngrade:"
    )


def test_an_unknown_form_is_refused() -> None:
    with pytest.raises(ValueError, match="'sentence': expected one of conversation, message"):
        tagging_prompt("red shoes", "red sneakers", form="sentence")
