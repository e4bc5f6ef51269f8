"""The model in tagging mode: P(grade | query, rewrite) from the likelihood of each grade word.

Scoring the three answers instead of sampling one gives a calibrated-enough probability for the
GRPO relevance reward (the paper's self-relevance) and a deterministic prediction for the tagging
accuracy, with one forward pass per batch and no generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from qrewrite.training.prompts import GRADE_WORDS, answer, tagging_prompt


class RelevanceJudge:
    """Grades (query, rewrite) pairs with a causal LM trained on the tagging task (frozen)."""

    def __init__(self, model: Any, tokenizer: Any, batch_size: int = 96) -> None:
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        for p in self.model.parameters():
            p.requires_grad_(False)

    def _sequences(self, query: str, rewrite: str) -> list[tuple[list[int], int]]:
        """(token ids, answer start) of the prompt followed by each grade word's answer turn."""
        prompt = tagging_prompt(query, rewrite)
        head = self.tokenizer.apply_chat_template(
            prompt, add_generation_prompt=True, tokenize=True, return_dict=False
        )
        out = []
        for word in GRADE_WORDS:
            full = self.tokenizer.apply_chat_template(
                prompt + answer(word), tokenize=True, return_dict=False
            )
            # score the word and the end of turn, not the template's trailing newline
            eos = self.tokenizer.eos_token_id
            end = len(full) - full[::-1].index(eos) if eos in full else len(full)
            out.append((list(full[:end]), len(head)))
        return out

    def probabilities(self, queries: Sequence[str], rewrites: Sequence[str]) -> np.ndarray:
        """``(n, 3)`` probabilities of grades 0, 1, 2."""
        import torch

        seqs = [s for q, r in zip(queries, rewrites, strict=True) for s in self._sequences(q, r)]
        scores = np.zeros(len(seqs), dtype=np.float64)
        device = next(self.model.parameters()).device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        for start in range(0, len(seqs), self.batch_size):
            batch = seqs[start : start + self.batch_size]
            width = max(len(ids) for ids, _ in batch)
            ids = torch.full((len(batch), width), pad, dtype=torch.long)
            mask = torch.zeros((len(batch), width), dtype=torch.long)
            for i, (seq, _) in enumerate(batch):
                ids[i, : len(seq)] = torch.tensor(seq)
                mask[i, : len(seq)] = 1
            with torch.no_grad():
                logits = self.model(
                    input_ids=ids.to(device), attention_mask=mask.to(device)
                ).logits.float()
            logp = torch.log_softmax(logits[:, :-1], dim=-1)
            token_logp = logp.gather(-1, ids[:, 1:].to(device).unsqueeze(-1)).squeeze(-1)
            for i, (seq, head) in enumerate(batch):
                # token t is predicted at position t-1
                scores[start + i] = float(token_logp[i, head - 1 : len(seq) - 1].sum())
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
