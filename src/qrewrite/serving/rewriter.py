"""Batched rewrite generation: the one code path evaluation, batch export and the MLflow model use.

For each query the model proposes a greedy rewrite and, optionally, top-k sampled ones. Every
distinct candidate is then scored by the model itself with one forward pass (mean log-probability
per token of the rewrite, so sampled and greedy candidates are ranked on the same scale) and graded
by the model in tagging mode (the multi-task model grades its own rewrites, as in the paper).
Copies of the query and malformed outputs are dropped: they add nothing to a recall path. When the
greedy rewrite itself is a copy, the model has found nothing to rewrite and the query gets no
rewrite (``abstain_on_copy``), instead of its best sample.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from qrewrite.text import normalize_query
from qrewrite.training.judge import RelevanceJudge, answer_logprobs
from qrewrite.training.prompts import is_well_formed, parse_rewrite, rewrite_prompt


@dataclass
class GenerationSettings:
    """How candidates are generated (section ``rewrite:`` and ``evaluate:`` of the config)."""

    max_new_tokens: int = 16
    batch_size: int = 64  # queries per generate() call
    samples: int = 0  # top-k sampled candidates per query on top of the greedy one
    top_k: int = 20
    temperature: float = 1.0
    seed: int = 7
    # the model's own answer (its greedy rewrite) is the query itself: it finds nothing to
    # rewrite, so none is served, rather than the best of its samples (which then changes a
    # size, a gender or the product type as often as not)
    abstain_on_copy: bool = True


def generation_settings(source: Any) -> GenerationSettings:
    """The generation settings held by a step config (``evaluate:``, ``rewrite:``) or by a mapping
    of its fields (evaluation's recorded config): every field of :class:`GenerationSettings` it
    has, defaults for the rest."""
    values = source if isinstance(source, dict) else vars(source)
    return GenerationSettings(
        **{f.name: values[f.name] for f in fields(GenerationSettings) if f.name in values}
    )


@dataclass
class Rewrite:
    """One candidate rewrite of one query."""

    text: str
    score: float  # mean log-probability per token under the model
    grade: int = -1  # the model's own relevance grade (0, 1, 2); -1 when not graded
    p_relevant: float = float("nan")


@dataclass
class GenerationStats:
    queries: int = 0
    seconds: float = 0.0
    batches: list[float] = field(default_factory=list)  # seconds per generate() call

    @property
    def queries_per_second(self) -> float:
        return self.queries / self.seconds if self.seconds else 0.0


def rewrite_prompt_texts(tokenizer: Any, queries: Sequence[str]) -> list[str]:
    """The text the model is prompted with for each query: the rewrite prompt under the
    tokenizer's chat template, ready for the assistant's answer. Tokenised without special
    tokens, it is what every generation engine is given."""
    return [
        tokenizer.apply_chat_template(rewrite_prompt(q), add_generation_prompt=True, tokenize=False)
        for q in queries
    ]


class CandidateGenerator(Protocol):
    """Another engine's candidate generation (``serving/engines.py``): raw generations per
    query, the greedy one first, then the sampled ones."""

    def generate_candidates(
        self, queries: Sequence[str], progress: bool = False
    ) -> list[list[str]]: ...


class Rewriter:
    """A causal LM in rewrite mode (and tagging mode, to grade its rewrites).

    ``candidates`` generates the candidates with another engine (vLLM's); scoring, ranking and
    grading stay on ``model``."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        settings: GenerationSettings | None = None,
        *,
        candidates: CandidateGenerator | None = None,
    ):
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.settings = settings or GenerationSettings()
        self.candidates = candidates
        self._judge: RelevanceJudge | None = None
        self.stats = GenerationStats()

    @property
    def judge(self) -> RelevanceJudge:
        """The model in tagging mode, built on first use: it freezes the weights, which a
        rewriter that only generates (GRPO's probe, mid-training) must not do."""
        if self._judge is None:
            self._judge = RelevanceJudge(self.model, self.tokenizer)
        return self._judge

    @classmethod
    def from_dir(cls, path: str | Path, settings: GenerationSettings | None = None) -> Rewriter:
        from qrewrite.training.models import load_model, load_tokenizer

        return cls(load_model(path, "rewrite model"), load_tokenizer(path), settings)

    def _generate_batch(self, queries: Sequence[str], sample: bool) -> list[list[str]]:
        import torch

        s = self.settings
        texts = rewrite_prompt_texts(self.tokenizer, queries)
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        device = next(self.model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        n = s.samples if sample else 1
        kwargs: dict[str, Any] = {
            "max_new_tokens": s.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
            "eos_token_id": self.tokenizer.eos_token_id,
        }
        if sample:
            kwargs.update(do_sample=True, top_k=s.top_k, temperature=s.temperature)
            kwargs["num_return_sequences"] = n
        else:
            kwargs.update(do_sample=False, top_k=None, top_p=None, temperature=None)
        with torch.no_grad():
            out = self.model.generate(**enc, **kwargs)
        decoded = self.tokenizer.batch_decode(
            out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True
        )
        texts_out = [parse_rewrite(d) for d in decoded]
        return [texts_out[i * n : (i + 1) * n] for i in range(len(queries))]

    def generate(
        self, queries: Sequence[str], sample: bool = False, progress: bool = False
    ) -> list[list[str]]:
        """Raw generations per query: one greedy, or ``settings.samples`` sampled."""
        import torch

        if sample and self.settings.samples < 1:
            return [[] for _ in queries]
        torch.manual_seed(self.settings.seed)
        out: list[list[str]] = []
        size = max(1, self.settings.batch_size)
        bar = tqdm(
            total=len(queries),
            unit="query",
            desc="sampling" if sample else "rewriting",
            disable=not progress,
        )
        t0 = time.perf_counter()
        for start in range(0, len(queries), size):
            b0 = time.perf_counter()
            out.extend(self._generate_batch(queries[start : start + size], sample))
            self.stats.batches.append(time.perf_counter() - b0)
            bar.update(min(size, len(queries) - start))
        bar.close()
        self.stats.queries += len(queries)
        self.stats.seconds += time.perf_counter() - t0
        return out

    def score(self, queries: Sequence[str], rewrites: Sequence[str]) -> np.ndarray:
        """Mean log-probability per token of each rewrite given its query."""
        total, n = answer_logprobs(
            self.model, self.tokenizer, [rewrite_prompt(q) for q in queries], list(rewrites)
        )
        return total / np.maximum(n, 1)

    def generate_candidates(
        self, queries: Sequence[str], progress: bool = False
    ) -> list[list[str]]:
        """Raw generations per query: the greedy one first, then the sampled ones (by
        ``candidates`` when another engine generates)."""
        if self.candidates is not None:
            return self.candidates.generate_candidates(queries, progress)
        greedy = self.generate(queries, sample=False, progress=progress)
        sampled = self.generate(queries, sample=True, progress=progress)
        return [g + s for g, s in zip(greedy, sampled, strict=True)]

    def rank(
        self,
        queries: Sequence[str],
        candidates: Sequence[Sequence[str]],
        k: int = 3,
        grade: bool = True,
        graded: int | None = None,
    ) -> list[list[Rewrite]]:
        """Up to ``k`` distinct, well-formed, non-copy rewrites per query, best score first.

        ``candidates[i][0]`` is the greedy rewrite; when it copies the query and
        ``settings.abstain_on_copy`` is set, the query gets none."""
        cand_q: list[int] = []
        cand_text: list[str] = []
        for i, q in enumerate(queries):
            seen = {normalize_query(q)}
            first = candidates[i][0] if candidates[i] else ""
            if self.settings.abstain_on_copy and normalize_query(first) in seen:
                continue  # the greedy rewrite is a copy: the model abstains
            for text in candidates[i]:
                key = normalize_query(text)
                if key in seen or not is_well_formed(text):
                    continue
                seen.add(key)
                cand_q.append(i)
                cand_text.append(text)
        result: list[list[Rewrite]] = [[] for _ in queries]
        if not cand_text:
            return result
        scores = self.score([queries[i] for i in cand_q], cand_text)
        for i, text, s in zip(cand_q, cand_text, scores, strict=True):
            result[i].append(Rewrite(text, float(s)))
        for row in result:
            row.sort(key=lambda r: -r.score)
            del row[k:]
        if grade:
            # ``graded``: only the first rewrites of each query (evaluation serves the first;
            # grading is a forward pass per grade word, the dearest part of ranking)
            flat = [(i, r) for i, row in enumerate(result) for r in row[:graded]]
            if flat:
                p = self.judge.probabilities(
                    [queries[i] for i, _ in flat], [r.text for _, r in flat]
                )
                for (_, r), probs in zip(flat, p, strict=True):
                    r.grade = int(probs.argmax())
                    r.p_relevant = float(probs[2])
        return result

    def rewrite(
        self, queries: Sequence[str], k: int = 3, grade: bool = True, progress: bool = False
    ) -> list[list[Rewrite]]:
        """Up to ``k`` ranked rewrites per query (see :meth:`rank`)."""
        return self.rank(queries, self.generate_candidates(queries, progress), k, grade)
