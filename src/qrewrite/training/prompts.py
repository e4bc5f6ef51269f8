"""The tasks' prompt formats, shared by dataset building, training, judging and serving.

Every place that talks to the model builds its messages here, so a rewrite prompt at serving time
is byte-for-byte the one the model was trained on.
"""

from __future__ import annotations

import re
from typing import Any

# Task B grades in one of three words (and writes rewrites to one); order is the grade (0, 1, 2)
# of docs/labeling.md.
GRADE_WORDS: tuple[str, str, str] = ("irrelevant", "partial", "relevant")

REWRITE_INSTRUCTION = "Rewrite the shopper's search query so that the shop's search finds it."
TAGGING_INSTRUCTION = "Grade how well the rewrite keeps the intent of the query."
# Task C: a noisy query -> its clean form; it keeps the reading pretraining taught while SFT
# teaches rewriting (under the rewrite instruction it pulled the rewrites towards copies)
NORMALIZE_INSTRUCTION = "Correct the spelling and wording of the shopper's search query."

# How task B asks: "conversation", task A's conversation then the grading turn (since 742df3d);
# "message", query and rewrite as fields of one grading message (models saved before it)
TAGGING_FORMS: tuple[str, ...] = ("conversation", "message")

# The SFT tasks, by the name a dataset row carries in its ``task`` column
TASKS: tuple[str, ...] = ("rewrite", "tag", "normalize")

# The constant pieces of the prompts, each one token in a tokenizer trained for the shop
PROMPT_TOKENS: tuple[str, ...] = (
    REWRITE_INSTRUCTION,
    TAGGING_INSTRUCTION,
    # as several tokens it padded every SFT batch it was in: the demo took 10.5 min, not 9
    NORMALIZE_INSTRUCTION,
    "query:",
    "rewrite:",
    "product:",
    # "rewrite:" and "grade:": task B's message form, for models saved before its conversation
    "grade:",
)

# ChatML, as Qwen2 uses: generation ends with <|im_end|>, which is the tokenizer's EOS, so
# sampling stops at the end of the answer instead of running to max_completion_length.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def rewrite_prompt(
    query: str, title: str | None = None, *, grade: int | None = None
) -> list[dict[str, str]]:
    """Task A prompt: the query, optionally with the title of the product most engaged under it
    (as BEQUE conditions on it).

    ``grade`` asks for a rewrite of that grade (:data:`GRADE_WORDS`): task B's other direction,
    which training only asks. Served and evaluated, the prompt names no grade and the model
    writes as task A taught it: relevant rewrites that convert.

    >>> rewrite_prompt("red shoes", grade=1)[0]["content"].splitlines()[1:]
    ['query: red shoes', 'grade: partial']
    """
    content = f"{REWRITE_INSTRUCTION}\nquery: {query}"
    if title:
        content += f"\nproduct: {title}"
    if grade is not None:
        content += f"\ngrade: {GRADE_WORDS[grade]}"
    return [{"role": "user", "content": content}]


def normalize_prompt(query: str) -> list[dict[str, str]]:
    """Task C prompt: a query as typed, to answer in the catalog's words."""
    return [{"role": "user", "content": f"{NORMALIZE_INSTRUCTION}\nquery: {query}"}]


def tagging_prompt(query: str, rewrite: str, *, form: str = "conversation") -> list[dict[str, str]]:
    """Task B prompt: the rewrite conversation of task A, then the question of its grade.

    The rewrite sits where the model writes its own, after the query's rewrite prompt, so that
    learning to grade it trains the states the model writes rewrites from (a separate grading
    prompt shared only weights with writing, and the ablation could not tell the tasks apart).
    ``form="message"`` is that separate prompt, which models saved before graded in
    (:data:`TAGGING_FORMS`).
    """
    if form == "message":
        content = f"{TAGGING_INSTRUCTION}\nquery: {query}\nrewrite: {rewrite}\ngrade:"
        return [{"role": "user", "content": content}]
    if form != "conversation":
        raise ValueError(
            f"tagging prompt form {form!r}: expected one of {', '.join(TAGGING_FORMS)}"
        )
    return [
        *rewrite_prompt(query),
        *answer(rewrite),
        {"role": "user", "content": TAGGING_INSTRUCTION},
    ]


def tagging_form(prompt: list[dict[str, str]]) -> str:
    """The form (:data:`TAGGING_FORMS`) of a :func:`tagging_prompt`.

    >>> tagging_form(tagging_prompt("red shoes", "red sneakers", form="message"))
    'message'
    """
    return "message" if len(prompt) == 1 else "conversation"


def learnt_tagging_form(rows: Any) -> str:
    """The form (:data:`TAGGING_FORMS`) task B grades in among SFT ``rows`` (columns ``task``,
    ``target``, ``prompt``): that of the first example answering a grade, the current form
    where none does. A rewrite written to a grade is one message too, and says nothing of it.

    >>> learnt_tagging_form({"task": ["tag"], "target": ["partial"],
    ...                      "prompt": [tagging_prompt("red shoes", "red sneakers")]})
    'conversation'
    """
    for task, target, prompt in zip(rows["task"], rows["target"], rows["prompt"], strict=True):
        if task == "tag" and is_grade_answer(target):
            return tagging_form(list(prompt))
    return TAGGING_FORMS[0]


def answer(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def is_grade_answer(target: str) -> bool:
    """Whether a task B example's answer is a grade (it grades a rewrite) rather than a rewrite
    (it writes one to a grade): a grade word is never a well-formed rewrite.

    >>> is_grade_answer("partial"), is_grade_answer("red sneakers")
    (True, False)
    """
    return target in GRADE_WORDS


def parse_rewrite(completion: str | list[dict[str, str]]) -> str:
    """The rewrite text of a generated completion (conversational or plain)."""
    if isinstance(completion, list):
        completion = completion[-1]["content"] if completion else ""
    return completion.replace("<|im_end|>", "").strip()


def parse_tagging_prompt(prompt: list[dict[str, str]]) -> tuple[str, str]:
    """The (query, rewrite) a :func:`tagging_prompt` of either form holds: its inverse.

    >>> parse_tagging_prompt(tagging_prompt("red shoes", "red sneakers"))
    ('red shoes', 'red sneakers')
    """
    if tagging_form(prompt) == "message":
        text = prompt[-1]["content"]
        query, _, rest = text.partition("\nquery: ")[2].partition("\nrewrite: ")
        return query, rest.removesuffix("\ngrade:")
    return prompt[0]["content"].partition("\nquery: ")[2], prompt[1]["content"]


# A rewrite is one line of shopper words: not the prompt's field names, not a grade word.
_ECHO = re.compile(r"\b(query|rewrite|grade|product)\s*:", re.IGNORECASE)


def is_well_formed(rewrite: str) -> bool:
    text = rewrite.strip()
    return (
        bool(text)
        and "\n" not in text
        and "<|" not in text
        and not _ECHO.search(text)
        and text.lower() not in GRADE_WORDS
    )
