"""The model in tagging mode: P(grade | query, rewrite) from the likelihood of each grade word.

Scoring the three answers instead of sampling one gives a calibrated-enough probability for the
GRPO relevance reward (the paper's self-relevance) and a deterministic prediction for the tagging
accuracy, with one forward pass per batch and no generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qrewrite.training.prompts import (
    GRADE_WORDS,
    answer,
    is_grade_answer,
    parse_tagging_prompt,
    tagging_prompt,
)


def answer_logprobs(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[list[dict[str, str]]],
    answers: Sequence[str],
    batch_size: int = 96,
) -> tuple[np.ndarray, np.ndarray]:
    """Sum of the log-probabilities of each answer turn (its words and the end of turn) after its
    prompt, and the number of tokens scored, one forward pass per batch."""
    import torch

    seqs = [_answer_sequence(tokenizer, p, a) for p, a in zip(prompts, answers, strict=True)]
    scores = np.zeros(len(seqs), dtype=np.float64)
    lengths = np.array([len(ids) - head for ids, head in seqs], dtype=np.int64)
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for start in range(0, len(seqs), batch_size):
        batch = seqs[start : start + batch_size]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (seq, _) in enumerate(batch):
            ids[i, : len(seq)] = torch.tensor(seq)
            mask[i, : len(seq)] = 1
        with torch.no_grad():
            logits = model(input_ids=ids.to(device), attention_mask=mask.to(device)).logits.float()
        logp = torch.log_softmax(logits[:, :-1], dim=-1)
        token_logp = logp.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
        for i, (seq, head) in enumerate(batch):
            # token t is predicted at position t-1
            scores[start + i] = float(token_logp[i, head - 1 : len(seq) - 1].sum())
    return scores, lengths


def _answer_sequence(
    tokenizer: Any, prompt: list[dict[str, str]], text: str
) -> tuple[list[int], int]:
    """(token ids, answer start) of the prompt followed by the answer turn ``text``."""
    head = tokenizer.apply_chat_template(
        prompt, add_generation_prompt=True, tokenize=True, return_dict=False
    )
    full = tokenizer.apply_chat_template(prompt + answer(text), tokenize=True, return_dict=False)
    # score the words and the end of turn, not the template's trailing newline
    eos = tokenizer.eos_token_id
    end = len(full) - full[::-1].index(eos) if eos in full else len(full)
    return list(full[:end]), len(head)


class RelevanceJudge:
    """Grades (query, rewrite) pairs with a causal LM trained on the tagging task (frozen)."""

    def __init__(
        self, model: Any, tokenizer: Any, batch_size: int = 96, *, form: str = "conversation"
    ) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        # the form of task B's prompt the model learnt (prompts.TAGGING_FORMS)
        self.form = form
        for p in self.model.parameters():
            p.requires_grad_(False)

    def probabilities(self, queries: Sequence[str], rewrites: Sequence[str]) -> np.ndarray:
        """``(n, 3)`` probabilities of grades 0, 1, 2."""
        prompts = [
            tagging_prompt(q, r, form=self.form)
            for q, r in zip(queries, rewrites, strict=True)
            for _ in GRADE_WORDS
        ]
        words = [w for _ in queries for w in GRADE_WORDS]
        scores, _ = answer_logprobs(self.model, self.tokenizer, prompts, words, self.batch_size)
        scores = scores.reshape(-1, len(GRADE_WORDS))
        scores -= scores.max(axis=1, keepdims=True)
        p = np.exp(scores)
        return p / p.sum(axis=1, keepdims=True)


def tagging_metrics(
    true: Sequence[int], predicted: Sequence[int], majority: int
) -> dict[str, float]:
    """Accuracy and macro-F1 of the model, and of always answering the train majority grade."""
    from sklearn.metrics import accuracy_score, f1_score

    labels = [0, 1, 2]
    base = [majority] * len(true)
    return {
        "tagging_accuracy": float(accuracy_score(true, predicted)),
        "tagging_macro_f1": float(
            f1_score(true, predicted, labels=labels, average="macro", zero_division=0)
        ),
        "majority_accuracy": float(accuracy_score(true, base)),
        "majority_macro_f1": float(
            f1_score(true, base, labels=labels, average="macro", zero_division=0)
        ),
        "pairs": float(len(true)),
    }


def evaluate_tagging(
    model: Any,
    tokenizer: Any,
    train: Any,
    held_out: Any,
    max_pairs: int,
    seed: int,
    *,
    form: str = "conversation",
) -> dict[str, float]:
    """Tagging accuracy and macro-F1 on held-out pairs, asked in the prompt ``form`` the model
    learnt, and the majority-class baseline."""
    rows = held_out.filter(lambda r: r["task"] == "tag" and is_grade_answer(r["target"]))
    if len(rows) == 0:
        return {}
    if max_pairs and len(rows) > max_pairs:
        rows = rows.shuffle(seed=seed).select(range(max_pairs))
    train_grades = [
        g
        for g, t, target in zip(train["grade"], train["task"], train["target"], strict=True)
        if t == "tag" and is_grade_answer(target)
    ]
    majority = int(np.bincount(train_grades, minlength=3).argmax()) if train_grades else 2
    pairs = [parse_tagging_prompt(prompt) for prompt in rows["prompt"]]
    queries, rewrites = [q for q, _ in pairs], [r for _, r in pairs]
    judge = RelevanceJudge(model, tokenizer, form=form)
    predicted = judge.probabilities(queries, rewrites).argmax(axis=1)
    return tagging_metrics(list(rows["grade"]), predicted.tolist(), majority)
