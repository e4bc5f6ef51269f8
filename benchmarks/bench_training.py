"""Training and serving throughput on this machine's accelerator: SFT tokens/s, GRPO steps/s and
batched rewriting queries/s, through the library's own ``sft``, ``grpo`` and ``Rewriter``.

Made for a GPU node (the training image's job); on a CPU it runs too, slowly. Inputs are a
finished demo run's artifacts (``make demo``): the training datasets, the staged marketplace (GRPO's
retriever) and the pretrained small model (its tokenizer; the ``local`` shape's weights). Shapes:

- ``local``: the demo's model (~1.2M parameters), trained as the demo trains it;
- ``qwen2.5-0.5b``: Qwen2.5-0.5B's layers (24 x 896, GQA 14/2 heads, MLP 4864) randomly
  initialised with the demo's 4k-token vocabulary, so ~0.36B parameters, not 0.49B: throughput
  depends on the shape, not the weights, and no weights may be fetched from a hub.

Steps are capped (``--sft-steps``, ``--grpo-steps``); the preset's other settings are kept, with
``--batch-size`` for SFT. Prints a Markdown table; ``--write`` replaces the ``bench:training``
section of ``docs/benchmarks.md``, ``--json`` keeps the raw figures. Timings are measurements,
never test assertions.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from docs_section import markers, write_section

BEGIN, END = markers("training")
SHAPES: dict[str, dict[str, int] | None] = {
    "local": None,  # the pretrained demo model as it is
    "qwen2.5-0.5b": {
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_hidden_layers": 24,
        "num_attention_heads": 14,
        "num_key_value_heads": 2,
        "max_position_embeddings": 256,
    },
}


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"CPU ({platform.machine()}), torch {torch.__version__}"


def _base_model(shape: str, pretrained: Path, work: Path) -> tuple[Path, int]:
    """The model directory SFT starts from, and its parameter count."""
    from qrewrite.training.models import (
        ModelShape,
        build_small_model,
        load_model,
        load_tokenizer,
        save_model,
    )

    dims = SHAPES[shape]
    if dims is None:
        model, path = load_model(pretrained), pretrained
    else:
        tokenizer = load_tokenizer(pretrained)
        model = build_small_model(tokenizer, ModelShape(**dims), seed=0)
        path = save_model(model, tokenizer, work / shape / "base", {"step": "bench", "shape": dims})
    return path, sum(p.numel() for p in model.parameters())


def _rewrite_rates(model_dir: Path, queries: list[str], batch_sizes: list[int]) -> dict[int, float]:
    from qrewrite.serving.rewriter import GenerationSettings, Rewriter

    rates = {}
    for batch in batch_sizes:
        n = min(len(queries), 64) if batch == 1 else len(queries)
        r = Rewriter.from_dir(model_dir, GenerationSettings(batch_size=batch, max_new_tokens=16))
        r.generate(queries[: min(batch, 8)])  # warm-up: first-call allocations and kernels
        t0 = time.perf_counter()
        r.generate(queries[:n])
        rates[batch] = n / (time.perf_counter() - t0)
    return rates


def run_shape(shape: str, args: argparse.Namespace, queries: list[str]) -> dict[str, Any]:
    """SFT, then GRPO from it, then batched rewriting with the GRPO model; one shape."""
    from qrewrite.config import load_config
    from qrewrite.training.grpo import GRPOStepConfig, grpo
    from qrewrite.training.sft import SFTStepConfig, sft

    work = args.work / shape
    tracking = f"sqlite:///{(args.work / 'mlflow.db').resolve()}"
    base, params = _base_model(shape, args.pretrained, args.work)
    row: dict[str, Any] = {"shape": shape, "parameters": params}
    sft_config = load_config(
        SFTStepConfig,
        args.config,
        "sft",
        [
            f"base_model={base}",
            f"max_steps={args.sft_steps}",
            f"batch_size={args.batch_size}",
            f"save_steps={10 * args.sft_steps}",
            "tagging_eval_pairs=200",
            "resume=false",
            f"tracking_uri={tracking}",
            *args.sft_set,
        ],
    )
    sft_result = sft(sft_config, datasets_dir=args.datasets, out_dir=work / "sft", progress=False)
    row["sft"] = {k: getattr(sft_result, k) for k in ("steps", "train_seconds", "tokens_seen")}
    row["sft"]["tokens_per_second"] = sft_result.tokens_per_second
    row["sft"]["model_flops_per_token"] = sft_result.model_flops_per_token
    row["sft"]["mfu"] = sft_result.mfu
    row["sft"]["batch_size"] = args.batch_size
    grpo_config = load_config(
        GRPOStepConfig,
        args.config,
        "grpo",
        [
            f"model={work / 'sft'}",
            f"max_steps={args.grpo_steps}",
            f"save_steps={10 * args.grpo_steps}",
            "resume=false",
            f"tracking_uri={tracking}",
            *args.grpo_set,
        ],
    )
    grpo_result = grpo(
        grpo_config,
        datasets_dir=args.datasets,
        data_dir=args.data,
        out_dir=work / "grpo",
        progress=False,
    )
    row["grpo"] = {
        "steps": grpo_result.steps,
        "train_seconds": grpo_result.train_seconds,
        "steps_per_second": grpo_result.steps_per_second,
        "completions_per_step": grpo_config.batch_size,
    }
    row["rewrite_queries_per_second"] = _rewrite_rates(work / "grpo", queries, args.batch_sizes)
    return row


def _queries(datasets: Path, n: int) -> list[str]:
    from datasets import load_from_disk

    return list(load_from_disk(str(datasets / "grpo"))["train"]["query"][:n])


def markdown(rows: list[dict[str, Any]], args: argparse.Namespace, device: str) -> str:
    lines = [
        BEGIN,
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d} on {device}; `python benchmarks/bench_training.py` "
        f"over the demo's datasets, preset `{args.config}`; SFT batch {args.batch_size} capped at "
        f"{args.sft_steps} steps, GRPO capped at {args.grpo_steps} steps, rewriting greedy with at "
        "most 16 new tokens.",
        "",
        "| shape | parameters | SFT tokens/s | SFT MFU | SFT s | GRPO steps/s | completions/step | "
        + " | ".join(f"rewrite q/s, batch {b}" for b in args.batch_sizes)
        + " |",
        "|---|---:|---:|---:|---:|---:|---:|" + "---:|" * len(args.batch_sizes),
    ]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['shape']} | failed: {r['error']} |")
            continue
        rates = r["rewrite_queries_per_second"]
        mfu = r["sft"].get("mfu")
        lines.append(
            f"| {r['shape']} | {r['parameters'] / 1e6:.1f}M | {r['sft']['tokens_per_second']:,.0f} "
            f"| {f'{mfu:.1%}' if mfu is not None else 'n/a'} "
            f"| {r['sft']['train_seconds']} | {r['grpo']['steps_per_second']} "
            f"| {r['grpo']['completions_per_step']} | "
            + " | ".join(f"{rates[b]:.0f}" for b in args.batch_sizes)
            + " |"
        )
    return "\n".join([*lines, "", END])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    demo = Path("out/demo/latest")
    ap.add_argument("--datasets", type=Path, default=demo / "build-training-datasets/datasets")
    ap.add_argument("--data", type=Path, default=demo / "stage-marketplace/market")
    ap.add_argument("--pretrained", type=Path, default=demo / "pretrain-small-model/model")
    ap.add_argument("--config", default="configs/local.yaml")
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--sft-steps", type=int, default=200)
    ap.add_argument("--grpo-steps", type=int, default=30)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 256])
    ap.add_argument("--queries", type=int, default=1024)
    ap.add_argument(
        "--sft-set", nargs="*", default=[], metavar="KEY=VALUE", help="more SFT --set overrides"
    )
    ap.add_argument(
        "--grpo-set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="more GRPO --set overrides (use_vllm=true against use_vllm=false)",
    )
    ap.add_argument("--work", type=Path, default=Path(".bench/training"))
    ap.add_argument("--write", type=Path, help="docs/benchmarks.md to update")
    ap.add_argument("--json", type=Path, help="where to keep the raw figures")
    args = ap.parse_args()

    device = _device()
    print(f"device: {device}", flush=True)
    args.work.mkdir(parents=True, exist_ok=True)
    queries = _queries(args.datasets, args.queries)
    rows = []
    for shape in args.shapes:
        t0 = time.perf_counter()
        try:
            rows.append(run_shape(shape, args, queries))
        except Exception as e:  # one shape failing (memory, a missing kernel) keeps the others
            traceback.print_exc()
            rows.append({"shape": shape, "error": f"{type(e).__name__}: {e}".splitlines()[0]})
        print(f"{shape}: {time.perf_counter() - t0:.0f} s: {json.dumps(rows[-1])}", flush=True)
    section = markdown(rows, args, device)
    print(section)
    if args.json:
        args.json.write_text(json.dumps({"device": device, "rows": rows}, indent=2) + "\n")
    if args.write:
        write_section(args.write, "training", section, "Training and rewriting on an accelerator")


if __name__ == "__main__":
    main()
