"""Which engine generates the candidates of ``qrewrite rewrite``: transformers' ``generate`` or
vLLM's offline engine.

Only candidate generation differs between the two. The prompts are the same token ids (the
rewrite prompt under the tokenizer's chat template, :func:`prompt_texts`); the candidate
set is the same (the greedy rewrite first, then ``samples`` top-k samples at the same temperature,
at most ``max_new_tokens`` each, ending at the tokenizer's EOS, decoded by the same tokenizer);
and scoring, ranking, self-grading and the serving policy are the same code on the HF model
(:class:`~qrewrite.serving.rewriter.Rewriter`, :class:`~qrewrite.serving.served.ServedRewriter`).
The samples themselves differ: the two engines draw from their own random streams.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qrewrite.errors import ConfigError
from qrewrite.serving.rewriter import GenerationSettings, prompt_texts
from qrewrite.training.prompts import parse_rewrite

log = logging.getLogger(__name__)

ENGINES = ("auto", "hf", "vllm")


@dataclass(frozen=True)
class EngineChoice:
    """The engine that generates (``hf`` or ``vllm``), why, and the vllm module for ``vllm``."""

    name: str
    reason: str
    vllm: Any = None


def cuda_available() -> bool:
    """Is there a CUDA device (vLLM's offline engine needs one)?"""
    import torch

    return torch.cuda.is_available()


def import_vllm() -> Any | None:
    """The vllm module, or None where it is not installed."""
    try:
        return importlib.import_module("vllm")
    except ImportError:
        return None


def choose_engine(
    requested: str,
    *,
    cuda: Callable[[], bool] = cuda_available,
    load_vllm: Callable[[], Any | None] = import_vllm,
) -> EngineChoice:
    """The engine ``requested`` (``rewrite.engine``) gives on this machine: ``auto`` takes vLLM
    when it is installed and a CUDA device is there, else HF generate; ``vllm`` without either
    is a :class:`ConfigError`; ``hf`` is HF generate."""
    if requested not in ENGINES:
        raise ConfigError(f"rewrite.engine={requested!r}: expected one of {', '.join(ENGINES)}")
    if requested == "hf":
        return EngineChoice("hf", "engine: hf")
    has_cuda = cuda()
    module = load_vllm() if has_cuda or requested == "vllm" else None
    if requested == "vllm":
        if module is None:
            raise ConfigError(
                "rewrite.engine=vllm: the vllm package is not installed here (the training "
                "image has it, pip install 'qrewrite[vllm]'); set engine: auto to fall back to HF "
                "generate"
            )
        if not has_cuda:
            raise ConfigError(
                "rewrite.engine=vllm: no CUDA device here, and vLLM's offline engine needs one; "
                "set engine: auto to fall back to HF generate"
            )
        return EngineChoice("vllm", "engine: vllm", module)
    if not has_cuda:
        return EngineChoice("hf", "auto: no CUDA device")
    if module is None:
        return EngineChoice("hf", "auto: the vllm package is not installed")
    return EngineChoice("vllm", "auto: vllm and a CUDA device", module)


def sampling_arguments(
    settings: GenerationSettings,
    *,
    sample: bool,
    eos_token_id: int,
    generation_config: Any = None,
) -> dict[str, Any]:
    """vLLM ``SamplingParams`` that generate what ``Rewriter`` asks HF ``generate`` for: greedy
    (one), or ``settings.samples`` top-k samples at ``settings.temperature``; at most
    ``max_new_tokens``, ending at the tokenizer's EOS. HF generate also applies the model's
    ``generation_config`` where a call does not set a value (``repetition_penalty``; ``top_p``
    and ``min_p`` when sampling): so does this."""
    defaults = generation_config
    out: dict[str, Any] = {
        "max_tokens": settings.max_new_tokens,
        "stop_token_ids": [eos_token_id],
    }
    penalty = getattr(defaults, "repetition_penalty", None)
    if penalty not in (None, 1.0):
        out["repetition_penalty"] = float(penalty)
    if not sample:
        return {"n": 1, "temperature": 0.0, **out}
    out.update(n=settings.samples, temperature=settings.temperature, top_k=settings.top_k)
    top_p = getattr(defaults, "top_p", None)
    if top_p not in (None, 1.0):
        out["top_p"] = float(top_p)
    min_p = getattr(defaults, "min_p", None)
    if min_p:
        out["min_p"] = float(min_p)
    return out


class VllmCandidates:
    """Candidate generation on vLLM's offline engine (``vllm.LLM``) for a
    :class:`~qrewrite.serving.rewriter.Rewriter`: its ``generate_candidates`` in place of HF
    generate's, with the same prompts, settings and decoding."""

    def __init__(
        self,
        vllm: Any,
        model_dir: str | Path,
        tokenizer: Any,
        settings: GenerationSettings,
        *,
        generation_config: Any = None,
        gpu_memory_utilization: float = 0.5,
    ) -> None:
        self.vllm = vllm
        self.tokenizer = tokenizer
        self.settings = settings
        self.generation_config = generation_config
        # bf16 as load_model puts the HF model on a GPU; the HF model that scores and grades the
        # candidates shares the GPU, hence a share of it rather than vLLM's default 0.9
        self.llm = vllm.LLM(
            model=str(model_dir),
            tokenizer=str(model_dir),
            dtype="bfloat16",
            seed=settings.seed,
            gpu_memory_utilization=gpu_memory_utilization,
        )

    def prompts(self, queries: Sequence[str]) -> list[dict[str, list[int]]]:
        """The token ids HF generate sees for ``queries`` (unpadded), as vLLM prompts."""
        texts = prompt_texts(self.tokenizer, queries)
        ids = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return [{"prompt_token_ids": list(row)} for row in ids]

    def _generate(
        self, prompts: list[dict[str, list[int]]], *, sample: bool, progress: bool
    ) -> list[list[str]]:
        params = self.vllm.SamplingParams(
            **sampling_arguments(
                self.settings,
                sample=sample,
                eos_token_id=self.tokenizer.eos_token_id,
                generation_config=self.generation_config,
            )
        )
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=progress)
        # decoded by the HF tokenizer, exactly as the HF path decodes
        return [
            [
                parse_rewrite(text)
                for text in self.tokenizer.batch_decode(
                    [list(c.token_ids) for c in out.outputs], skip_special_tokens=True
                )
            ]
            for out in outputs
        ]

    def generate_candidates(
        self, queries: Sequence[str], progress: bool = False
    ) -> list[list[str]]:
        """Raw generations per query: the greedy one first, then the sampled ones."""
        prompts = self.prompts(queries)
        greedy = self._generate(prompts, sample=False, progress=progress)
        if self.settings.samples < 1:
            return greedy
        sampled = self._generate(prompts, sample=True, progress=progress)
        return [g + s for g, s in zip(greedy, sampled, strict=True)]
