"""The batch export's candidate engines (serving/engines.py): vLLM's offline engine where it is
installed and a CUDA device is there, HF generate otherwise, with the same prompts, the same
candidate set and the same scoring, ranking and serving policy.

vLLM is not installed here and there is no GPU: a fake ``vllm`` module (``LLM``,
``SamplingParams``, ``generate``, as TRL's colocated generation calls them) stands in, and the
CUDA check is the export's ``cuda_available`` argument."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any, ClassVar

import pandas as pd
import pyarrow.parquet as pq
import pytest

from qrewrite.cli import main
from qrewrite.errors import ConfigError
from qrewrite.serving.engines import ENGINES, choose_engine, sampling_arguments
from qrewrite.serving.export import REWRITES_SCHEMA, RewriteConfig, export_rewrites
from qrewrite.serving.policy import ServingPolicy
from qrewrite.serving.rewriter import GenerationSettings, Rewriter, prompt_texts
from qrewrite.serving.served import ServedRewriter

QUERIES = ["red running shoes", "oak desk", "wireless earbuds black", "cotton hoodie xl"]
SETTINGS = {"k": 3, "samples": 2, "max_new_tokens": 8}


def fake_candidates(query: str, samples: int) -> list[str]:
    """What the fake engine answers: the greedy rewrite (not a copy: a word more), then the
    samples."""
    words = query.split()
    return [
        " ".join([*reversed(words), "online"]),
        *(f"{words[-1]} {('cheap', 'new', 'sale')[j]}" for j in range(samples)),
    ]


class FakeSamplingParams:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs


class FakeLLM:
    """vllm.LLM as the export uses it: built once, ``generate`` over token-id prompts; answers
    :func:`fake_candidates` for the query it reads back from the prompt."""

    instances: ClassVar[list[FakeLLM]] = []

    def __init__(self, model: str, **kwargs: Any) -> None:
        from transformers import AutoTokenizer

        self.kwargs = {"model": model, **kwargs}
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.calls: list[tuple[list[dict[str, list[int]]], FakeSamplingParams, bool]] = []
        FakeLLM.instances.append(self)

    def generate(
        self, prompts: list[dict[str, list[int]]], sampling_params: Any, use_tqdm: bool = True
    ) -> list[Any]:
        self.calls.append((prompts, sampling_params, use_tqdm))
        params = sampling_params.kwargs
        eos = self.tokenizer.eos_token_id
        outputs = []
        for prompt in prompts:
            text = self.tokenizer.decode(prompt["prompt_token_ids"])
            query = text.split("query: ")[1].split("<|im_end|>")[0]
            answers = fake_candidates(query, params["n"] if params["temperature"] else 0)
            answers = answers[1:] if params["temperature"] else answers[:1]
            completions = [
                types.SimpleNamespace(
                    token_ids=[*self.tokenizer.encode(a, add_special_tokens=False), eos]
                )
                for a in answers
            ]
            outputs.append(types.SimpleNamespace(prompt_token_ids=prompt, outputs=completions))
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    module = types.ModuleType("vllm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = FakeSamplingParams  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", module)
    FakeLLM.instances.clear()
    return module


@pytest.fixture
def no_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)  # `import vllm` raises ImportError


def _queries(tmp_path: Path) -> Path:
    path = tmp_path / "queries.txt"
    path.write_text("\n".join(QUERIES) + "\n")
    return path


def test_the_engine_follows_the_setting_the_package_and_the_device(fake_vllm, monkeypatch):
    def gpu() -> bool:
        return True

    def cpu() -> bool:
        return False

    assert choose_engine("hf", cuda=gpu).name == "hf"
    assert choose_engine("auto", cuda=gpu).name == "vllm"
    assert choose_engine("auto", cuda=gpu).vllm is fake_vllm
    assert choose_engine("vllm", cuda=gpu).reason == "engine: vllm"

    def never() -> None:
        pytest.fail("vllm imported without a CUDA device")

    assert choose_engine("auto", cuda=cpu, load_vllm=never).reason == "auto: no CUDA device"
    assert choose_engine("auto", cuda=cpu).name == "hf"
    with pytest.raises(ConfigError, match="no CUDA device here"):
        choose_engine("vllm", cuda=cpu)
    with pytest.raises(ConfigError, match=r"rewrite\.engine='vLLM': expected one of auto, hf"):
        choose_engine("vLLM", cuda=gpu)
    monkeypatch.setitem(sys.modules, "vllm", None)
    fallback = choose_engine("auto", cuda=gpu)
    assert (fallback.name, fallback.reason) == ("hf", "auto: the vllm package is not installed")
    with pytest.raises(ConfigError) as e:
        choose_engine("vllm", cuda=gpu)
    assert "\n" not in str(e.value) and "vllm package is not installed" in str(e.value)
    assert ENGINES == ("auto", "hf", "vllm")


def test_sampling_matches_what_hf_generate_is_asked_for() -> None:
    settings = GenerationSettings(max_new_tokens=12, samples=3, top_k=20, temperature=0.7)
    greedy = sampling_arguments(settings, sample=False, eos_token_id=5)
    assert greedy == {"n": 1, "temperature": 0.0, "max_tokens": 12, "stop_token_ids": [5]}
    sampled = sampling_arguments(settings, sample=True, eos_token_id=5)
    assert sampled == {
        "n": 3,
        "temperature": 0.7,
        "top_k": 20,
        "max_tokens": 12,
        "stop_token_ids": [5],
    }
    # HF generate applies the model's generation config where the call leaves a value unset
    config = types.SimpleNamespace(repetition_penalty=1.1, top_p=0.8, min_p=None)
    assert sampling_arguments(settings, sample=False, eos_token_id=5, generation_config=config)[
        "repetition_penalty"
    ] == pytest.approx(1.1)
    with_defaults = sampling_arguments(
        settings, sample=True, eos_token_id=5, generation_config=config
    )
    assert with_defaults["top_p"] == pytest.approx(0.8) and "min_p" not in with_defaults


def test_vllm_gets_the_hf_paths_prompts_byte_for_byte(tiny_model: Path, fake_vllm, monkeypatch):
    from qrewrite.serving.engines import VllmCandidates

    settings = GenerationSettings(samples=2, max_new_tokens=8, batch_size=2)
    hf = Rewriter.from_dir(tiny_model, settings)
    seen: list[list[int]] = []
    generate = hf.model.generate

    def spy(**kwargs: Any) -> Any:  # the unpadded token ids HF generate is given
        for ids, mask in zip(kwargs["input_ids"], kwargs["attention_mask"], strict=True):
            seen.append(ids[mask.bool()].tolist())
        return generate(**kwargs)

    monkeypatch.setattr(hf.model, "generate", spy)
    hf.generate_candidates(QUERIES)
    greedy_ids = seen[: len(QUERIES)]
    assert seen[len(QUERIES) :] == greedy_ids  # sampling is prompted the same way

    engine = VllmCandidates(fake_vllm, tiny_model, hf.tokenizer, settings)
    candidates = engine.generate_candidates(QUERIES)
    (greedy_prompts, greedy_params, _), (sample_prompts, sample_params, _) = engine.llm.calls
    assert [p["prompt_token_ids"] for p in greedy_prompts] == greedy_ids
    assert sample_prompts == greedy_prompts
    texts = prompt_texts(hf.tokenizer, QUERIES)
    decoded = [hf.tokenizer.decode(p["prompt_token_ids"]) for p in greedy_prompts]
    assert [t.encode() for t in decoded] == [t.encode() for t in texts]
    assert greedy_params.kwargs["temperature"] == 0.0 and greedy_params.kwargs["n"] == 1
    assert sample_params.kwargs["n"] == 2 and sample_params.kwargs["max_tokens"] == 8
    assert candidates == [fake_candidates(q, 2) for q in QUERIES]  # greedy first, then samples


def test_the_export_generates_with_vllm_and_serves_by_the_same_policy(
    tiny_model: Path, tmp_path: Path, fake_vllm
) -> None:
    queries = _queries(tmp_path)
    summary = export_rewrites(
        RewriteConfig(**SETTINGS),
        model_dir=tiny_model,
        queries_file=queries,
        out_file=tmp_path / "vllm" / "rewrites.parquet",
        progress=False,
        cuda_available=lambda: True,
    )
    assert (summary.engine, summary.engine_reason) == ("vllm", "auto: vllm and a CUDA device")
    (llm,) = FakeLLM.instances
    assert llm.kwargs == {
        "model": str(tiny_model),
        "tokenizer": str(tiny_model),
        "dtype": "bfloat16",
        "seed": 7,
        "gpu_memory_utilization": 0.5,
    }
    table = pd.read_parquet(tmp_path / "vllm" / "rewrites.parquet")

    # the same ranking, self-grading and policy as the HF path, on the fake's candidates
    rewriter = Rewriter.from_dir(tiny_model, RewriteConfig(**SETTINGS).generation())
    ranked = rewriter.rank(QUERIES, [fake_candidates(q, 2) for q in QUERIES], k=3)
    served = ServedRewriter(rewriter, ServingPolicy("model", 0.5)).vet(QUERIES, ranked)
    expected = [
        (s.query, rank, r.text, r.grade, rank == 1 and s.served)
        for s in served
        for rank, r in enumerate(s.rewrites, start=1)
    ]
    got = list(table[["query", "rank", "rewrite", "grade", "served"]].itertuples(index=False))
    assert [tuple(row) for row in got] == expected
    assert len(expected) > len(QUERIES)  # samples were ranked, not only the greedy rewrites

    hf = export_rewrites(
        RewriteConfig(**SETTINGS, engine="hf"),
        model_dir=tiny_model,
        queries_file=queries,
        out_file=tmp_path / "hf" / "rewrites.parquet",
        progress=False,
        cuda_available=lambda: True,
    )
    assert (hf.engine, hf.engine_reason) == ("hf", "engine: hf") and len(FakeLLM.instances) == 1
    schemas = [pq.read_schema(tmp_path / e / "rewrites.parquet") for e in ("vllm", "hf")]
    assert schemas[0].equals(schemas[1]) and schemas[0].names == REWRITES_SCHEMA.names
    reports = [json.loads((tmp_path / e / "rewrites.json").read_text()) for e in ("vllm", "hf")]
    assert list(reports[0]) == list(reports[1])
    assert [r["engine"] for r in reports] == ["vllm", "hf"]
    assert "candidates by vllm: auto: vllm and a CUDA device" in summary.summary_lines("x")[0]


def test_auto_falls_back_to_hf_and_vllm_without_it_is_one_line(
    tiny_model: Path, tmp_path: Path, no_vllm, capsys
) -> None:
    queries = _queries(tmp_path)
    summary = export_rewrites(
        RewriteConfig(**SETTINGS),
        model_dir=tiny_model,
        queries_file=queries,
        out_file=tmp_path / "auto.parquet",
        progress=False,
        cuda_available=lambda: True,
    )
    assert (summary.engine, summary.engine_reason) == (
        "hf",
        "auto: the vllm package is not installed",
    )
    assert summary.rows > 0
    args = ["rewrite", "--model", str(tiny_model), "--queries", str(queries)]
    out = ["--out", str(tmp_path / "v.parquet"), "--no-progress", "--set", "engine=vllm"]
    capsys.readouterr()  # the export's own output above
    assert main([*args, *out]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "rewrite.engine=vllm" in err and "engine: auto" in err
    assert not (tmp_path / "v.parquet").exists()
