"""Batched rewrite generation: the one code path evaluation, batch export and the MLflow model use.

For each query the model proposes a greedy rewrite and, optionally, top-k sampled ones. Every
distinct candidate is then scored by the model itself with one forward pass (mean log-probability
per token of the rewrite, so sampled and greedy candidates are ranked on the same scale) and graded
by the model in tagging mode (the multi-task model grades its own rewrites, as in the paper).
Copies of the query and malformed outputs are dropped: they add nothing to a recall path. When the
greedy rewrite itself is a copy, the model has found nothing to rewrite and the query gets no
rewrite (``abstain_on_copy``), instead of its best sample.

With ``correct_spelling`` the model also answers the query in its correction mode (task C, the
normalize prompt, its best beams); where an answer only corrects the query's spelling
(:meth:`Rewriter.is_correction`, with the catalog's words saved beside the model) it is the first
rewrite, ahead of the ranked ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from qrewrite.text import (
    corrects_to_catalog,
    is_copy,
    normalize_query,
    repeated_words,
    respells,
    words,
)
from qrewrite.training.judge import RelevanceJudge, answer_logprobs
from qrewrite.training.prompts import (
    is_well_formed,
    normalize_prompt,
    parse_rewrite,
    rewrite_prompt,
)


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
    # when the greedy rewrite copies the query, decode it again greedily with the end of the
    # rewrite forbidden while it still reads as the query (the next word must be a new one):
    # the model's likeliest rewrite that is not the query. It meets a copy bar, but the model
    # puts most of its probability on stopping there, and on the demo seeds the model alone
    # converts less with it (docs/benchmarks.md, "Copies"): off unless asked for
    continue_copies: bool = False
    # a candidate that repeats a word ("cowboy boots boots") is dropped like a malformed one: a
    # stutter retrieves nothing the word once would not, and the small model stutters on real
    # shops' text (docs/benchmarks.md, "Stutters")
    drop_repeats: bool = True
    # the model's own spelling correction of the query (task C's answer), where it only
    # corrects the query's spelling (Rewriter.is_correction), is the first rewrite: in rewrite
    # mode the model may read "dumbgells" as another product ("yoga mat") while in correction
    # mode it reads "dumbbells" (docs/evaluation.md, "Spelling corrections"). Off here so that a
    # model registered before it existed is served as it was measured; evaluate: and rewrite:
    # turn it on
    correct_spelling: bool = False
    # the correction is the likeliest of this many beams (correction mode) that corrects the
    # query: the small model may know "dumbbells" only as its third answer for "dumbgells"
    # (docs/benchmarks.md, "Corrections from the beam"). 1 (greedy) here so that a model
    # registered before it is served as it was measured; evaluate: and rewrite: ask for 4
    correction_beams: int = 1


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
    greedy_copies: int = 0  # queries whose greedy rewrite was the query itself...
    copies_continued: int = 0  # ...and of those, decoded again past the copy (continue_copies)
    corrections: int = 0  # queries whose first rewrite is the model's spelling correction

    @property
    def queries_per_second(self) -> float:
        return self.queries / self.seconds if self.seconds else 0.0


def prompt_texts(
    tokenizer: Any, queries: Sequence[str], *, prompt: Any = rewrite_prompt
) -> list[str]:
    """The text the model is prompted with for each query: the rewrite prompt (or another
    task's ``prompt``) under the tokenizer's chat template, ready for the assistant's answer.
    Tokenised without special tokens, it is what every generation engine is given."""
    return [
        tokenizer.apply_chat_template(prompt(q), add_generation_prompt=True, tokenize=False)
        for q in queries
    ]


class PastCopy:
    """A logits processor for greedy decoding past a copy: while a row's rewrite so far reads
    as its query (normalised), it may not end there, and its next token must begin a new word
    (not "size 90" from "size 9"). Decoding each row's text per step costs little: it runs
    only on the queries whose greedy rewrite was a copy."""

    def __init__(
        self, tokenizer: Any, queries: Sequence[str], prompt_length: int, word_starts: Any
    ) -> None:
        self.tokenizer = tokenizer
        self.queries = [normalize_query(q) for q in queries]
        self.prompt_length = prompt_length
        self.word_starts = word_starts
        self.ends = [t for t in {tokenizer.eos_token_id, tokenizer.pad_token_id} if t is not None]

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        so_far = self.tokenizer.batch_decode(
            input_ids[:, self.prompt_length :], skip_special_tokens=True
        )
        width = min(scores.shape[1], len(self.word_starts))
        starts = self.word_starts[:width].to(scores.device)
        for row, text in enumerate(so_far):
            if normalize_query(parse_rewrite(text)) == self.queries[row]:
                # after a space the next piece is the new word's letters (a lone space is a
                # piece of its own before digits: " 9"), else it is a new word
                spaced = text[-1:].isspace()
                blocked = starts if spaced else ~starts
                scores[row, :width][blocked] = float("-inf")
                scores[row, self.ends] = float("-inf")
        return scores


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
        catalog_words: frozenset[str] | None = None,
        tagging_form: str = "conversation",
    ):
        self.model = model.eval()
        # the words the shop's titles write (:func:`qrewrite.text.words`), saved with the model:
        # what tells a misspelling from the spelling the shop uses (:meth:`is_correction`)
        self.catalog_words = catalog_words
        self.tokenizer = tokenizer
        # the form of task B's prompt it learnt to grade in (prompts.TAGGING_FORMS)
        self.tagging_form = tagging_form
        self.settings = settings or GenerationSettings()
        self.candidates = candidates
        self._judge: RelevanceJudge | None = None
        self._word_start_mask: Any = None
        self.stats = GenerationStats()

    @property
    def judge(self) -> RelevanceJudge:
        """The model in tagging mode, built on first use: it freezes the weights, which a
        rewriter that only generates (GRPO's probe, mid-training) must not do."""
        if self._judge is None:
            self._judge = RelevanceJudge(self.model, self.tokenizer, form=self.tagging_form)
        return self._judge

    @classmethod
    def from_dir(cls, path: str | Path, settings: GenerationSettings | None = None) -> Rewriter:
        from qrewrite.training.models import (
            load_catalog_words,
            load_model,
            load_tagging_form,
            load_tokenizer,
        )

        return cls(
            load_model(path, "rewrite model"),
            load_tokenizer(path),
            settings,
            catalog_words=load_catalog_words(path),
            tagging_form=load_tagging_form(path),
        )

    def _generate_batch(
        self,
        queries: Sequence[str],
        sample: bool,
        *,
        past_copy: bool = False,
        prompt: Any = rewrite_prompt,
        beams: int = 1,
    ) -> list[list[str]]:
        import torch

        s = self.settings
        texts = prompt_texts(self.tokenizer, queries, prompt=prompt)
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        device = next(self.model.parameters()).device
        enc = {k: v.to(device) for k, v in enc.items()}
        n = s.samples if sample else max(1, beams)
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
            if n > 1:  # the n best of a beam search, best first
                kwargs.update(num_beams=n, num_return_sequences=n)
        if past_copy:
            from transformers import LogitsProcessorList

            kwargs["logits_processor"] = LogitsProcessorList(
                [PastCopy(self.tokenizer, queries, enc["input_ids"].shape[1], self._word_starts())]
            )
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
            raw = self.candidates.generate_candidates(queries, progress)
        else:
            greedy = self.generate(queries, sample=False, progress=progress)
            sampled = self.generate(queries, sample=True, progress=progress)
            raw = [g + s for g, s in zip(greedy, sampled, strict=True)]
        return self._past_copies(queries, raw)

    def _past_copies(self, queries: Sequence[str], raw: list[list[str]]) -> list[list[str]]:
        """Count the greedy copies in ``raw``; with ``settings.continue_copies``, replace each
        with the model's greedy rewrite decoded past the copy (on this model, whichever engine
        generated the rest)."""
        copies = [
            i for i, (q, c) in enumerate(zip(queries, raw, strict=True)) if c and is_copy(q, c[0])
        ]
        self.stats.greedy_copies += len(copies)
        if not copies or not self.settings.continue_copies:
            return raw
        out = [list(c) for c in raw]
        again = self._greedy([queries[i] for i in copies], past_copy=True)
        for i, g in zip(copies, again, strict=True):
            if not is_copy(queries[i], g):  # decoded past it, not reordered
                out[i][0] = g
                self.stats.copies_continued += 1
        return out

    def corrections(self, queries: Sequence[str], progress: bool = False) -> list[str] | None:
        """With ``settings.correct_spelling``, the model's spelling correction of each query, or
        "" where it has none: the likeliest of its ``settings.correction_beams`` answers in
        correction mode (the normalize prompt, on this model whichever engine generates the
        candidates) that :meth:`is_correction` accepts. None without it."""
        if not self.settings.correct_spelling:
            return None
        answers = self._decode(
            queries,
            prompt=normalize_prompt,
            beams=self.settings.correction_beams,
            progress=progress,
            desc="correcting",
        )
        out = [
            next((a for a in group if self.is_correction(q, a)), "")
            for q, group in zip(queries, answers, strict=True)
        ]
        self.stats.corrections += sum(bool(f) for f in out)
        return out

    def is_correction(self, query: str, answer: str) -> bool:
        """Is ``answer`` a spelling correction of ``query``? Well formed, and, with the
        catalog's words saved beside the model (``catalog_words.json``), either it replaces
        only words no title writes by ones a title writes one edit away, in any order
        (:func:`~qrewrite.text.corrects_to_catalog`: "puurelle 8 oz shampoo" -> "purelle
        shampoo 8 oz", "zenfit bllack ..." -> "zenfit black ...": the typo may be one of the
        tokenizer's pieces if shoppers write it often), or it writes no word the titles do not
        and passes the pieces rule. The pieces rule (a model saved without the words has only
        it): it only respells the query's words (:func:`~qrewrite.text.respells`, "ear buds"
        -> "earbuds") in fewer of the tokenizer's pieces, which learnt from the shop's text, so
        the spelling the shop writes takes fewer; a misspelling a beam offers ("brown" ->
        "brwn") or a spelling as common ("grey" -> "gray") takes as many or more."""
        if not is_well_formed(answer):
            return False
        if self.catalog_words is not None:
            if corrects_to_catalog(query, answer, self.catalog_words):
                return True  # replaces words the shop never writes ("dumbgells" -> "dumbbells")
            if not set(words(answer)) - set(words(query)) <= self.catalog_words:
                return False  # writes a word the shop never writes ("crocs" -> "cros")
        return respells(query, answer) and self._pieces(answer) < self._pieces(query)

    def _pieces(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _greedy(self, queries: Sequence[str], **options: Any) -> list[str]:
        """One greedy answer per query on this model (:meth:`_decode`'s options)."""
        return [g[0] for g in self._decode(queries, **options)]

    def _decode(
        self,
        queries: Sequence[str],
        *,
        progress: bool = False,
        desc: str = "rewriting",
        **batch: Any,
    ) -> list[list[str]]:
        """The deterministic answers to each query on this model (greedy, or the best of
        ``beams``), ``settings.batch_size`` queries at a time (``batch``:
        :meth:`_generate_batch`'s options), their time counted in ``stats``."""
        t0 = time.perf_counter()
        size = max(1, self.settings.batch_size)
        out: list[list[str]] = []
        bar = tqdm(total=len(queries), unit="query", desc=desc, disable=not progress)
        for start in range(0, len(queries), size):
            chunk = queries[start : start + size]
            out += self._generate_batch(chunk, False, **batch)
            bar.update(len(chunk))
        bar.close()
        self.stats.seconds += time.perf_counter() - t0
        return out

    def _word_starts(self) -> Any:
        """Which vocabulary entries begin a new word (decode to text starting with a space)."""
        if self._word_start_mask is None:
            import torch

            pieces = self.tokenizer.batch_decode([[i] for i in range(len(self.tokenizer))])
            self._word_start_mask = torch.tensor([p[:1].isspace() for p in pieces])
        return self._word_start_mask

    def rank(
        self,
        queries: Sequence[str],
        candidates: Sequence[Sequence[str]],
        k: int = 3,
        grade: bool = True,
        graded: int | None = None,
        *,
        corrections: Sequence[str] | None = None,
    ) -> list[list[Rewrite]]:
        """Up to ``k`` distinct, well-formed, non-copy rewrites per query, best score first.

        ``candidates[i][0]`` is the greedy rewrite; when it copies the query (its words and no
        others, in any order or number) and ``settings.abstain_on_copy`` is set, the query gets
        none. With ``settings.drop_repeats`` a candidate that repeats a word is dropped.
        ``corrections[i]`` (:meth:`corrections`), where not empty, is the first rewrite
        whatever its score, and the query gets it even when the model abstains otherwise."""
        cand_q: list[int] = []
        cand_text: list[str] = []
        fixes = list(corrections) if corrections is not None else [""] * len(queries)
        if len(fixes) != len(queries):
            raise ValueError(f"{len(fixes)} corrections for {len(queries)} queries")
        for i, q in enumerate(queries):
            seen: set[str] = set()
            if fixes[i]:
                seen.add(normalize_query(fixes[i]))
                cand_q.append(i)
                cand_text.append(fixes[i])
            first = candidates[i][0] if candidates[i] else ""
            if self.settings.abstain_on_copy and is_copy(q, first):
                continue  # the greedy rewrite is a copy: the model abstains
            if self.settings.drop_repeats and repeated_words(q, first):
                continue  # ... or it stutters
            for text in candidates[i]:
                key = normalize_query(text)
                if (
                    key in seen
                    or is_copy(q, text)
                    or not is_well_formed(text)
                    or (self.settings.drop_repeats and repeated_words(q, text))
                ):
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
        for i, row in enumerate(result):
            row.sort(key=lambda r: (r.text != fixes[i], -r.score))  # the correction first
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
        """Up to ``k`` ranked rewrites per query (see :meth:`rank`), the model's spelling
        correction first with ``settings.correct_spelling``."""
        candidates = self.generate_candidates(queries, progress)
        return self.rank(
            queries,
            candidates,
            k,
            grade,
            corrections=self.corrections(queries, progress),
        )
