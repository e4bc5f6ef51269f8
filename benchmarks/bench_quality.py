"""Rewriter quality across seeds: the whole local pipeline once per seed, figures side by side.

Run with ``make bench-quality`` (``--vary market``: every seed of the preset set to 7, 11, 13,
marketplace and training alike) or ``make bench-quality-training`` (``--vary training``: the
marketplace and its split fixed at seed 7, the training seeds, i.e. initialisation, data order
and sampling, set to each). Each seed is one ``qrewrite run --local`` (about ten minutes on two
cores). With ``--base-model DIR`` every run fine-tunes that model instead of pretraining the
small one (``qrewrite run --local --base-model``), and the figures go to a section of their own.
Prints a Markdown table and, with ``--write``, replaces this benchmark's section of
``docs/benchmarks.md``, with the commit and the CPU it ran on. A measurement, never a test.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from docs_section import markers, pct, write_run_preset, write_section

from qrewrite.config import preset_document
from qrewrite.evaluation.evaluate import (
    ALIGNED,
    MULTI_TASK_SFT,
    SINGLE_TASK_SFT,
    choose_candidate,
)

# preset sections whose seed decides the marketplace and its train/eval split ...
MARKET_SECTIONS = ("synth", "import_judged", "build_datasets")
# ... and those whose seed decides training: initialisation, data order, sampling
TRAINING_SECTIONS = ("pretrain", "sft", "grpo")
GOAL_RELEVANCE, GOAL_SPREAD, GOAL_COPY = 0.50, 0.10, 0.20


def seeded_preset(base: Path, seed: int, vary: str, out: Path) -> Path:
    """``base`` with the seeds of ``vary`` (market: every section; training: the training
    steps only, the marketplace at its preset seed) set to ``seed``."""
    doc = preset_document(base)  # with whatever it extends merged in
    sections = TRAINING_SECTIONS if vary == "training" else MARKET_SECTIONS + TRAINING_SECTIONS
    for name in sections:
        if name in doc or name in TRAINING_SECTIONS:
            doc.setdefault(name, {})["seed"] = seed
    return write_run_preset(doc, out)


def run_seed(
    qrewrite: str,
    base: Path,
    seed: int,
    vary: str,
    work: Path,
    *,
    ablation: bool,
    base_model: Path | None = None,
) -> dict:
    out = work / f"{vary}-seed{seed}"
    # a fresh store each time: a champion left by an earlier run would join the evaluation
    shutil.rmtree(out, ignore_errors=True)
    preset = seeded_preset(base, seed, vary, out)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [qrewrite, "run", "--local", "--config", str(preset), "--out", str(out)]
        + (["--ablation"] if ablation else [])
        + (["--base-model", str(base_model)] if base_model else []),
        capture_output=True,
        text=True,
    )
    minutes = (time.perf_counter() - t0) / 60
    (out / "run.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode:
        sys.exit(f"seed {seed}: qrewrite run failed (exit {proc.returncode}); see {out}/run.log")
    found = sorted((out / "latest").glob("**/metrics.json"))
    if not found:
        sys.exit(f"seed {seed}: no metrics.json under {out}/latest")
    metrics = json.loads(found[0].read_text())
    registry = next((ln for ln in proc.stdout.splitlines() if ln.startswith("run: registry")), "")
    return {
        "seed": seed,
        "minutes": minutes,
        "metrics": metrics,
        "registry": registry[15:],
        "ablation_differences": ablation_differences(found[0].parent / "rewrites.parquet"),
    }


def ablation_differences(rewrites: Path) -> Any:
    """Per held-out query both SFT models rewrote: multi-task SFT's top rewrite relevant (truth)
    minus single-task SFT's (1, 0 or -1), as a numpy array; None without the ablation."""
    import pandas as pd

    top = pd.read_parquet(rewrites, columns=["variant", "query", "rank", "truth_grade"])
    top = top[(top["rank"] == 1) & top["truth_grade"].notna()]
    relevant = (top["truth_grade"] == 2).astype(float)
    both = top.assign(relevant=relevant).pivot_table(
        index="query", columns="variant", values="relevant"
    )
    if SINGLE_TASK_SFT not in both or MULTI_TASK_SFT not in both:
        return None
    return (both[MULTI_TASK_SFT] - both[SINGLE_TASK_SFT]).dropna().to_numpy()


def paired_interval(
    diff: Any, *, resamples: int = 1000, seed: int = 0
) -> tuple[float, float, float]:
    """The mean of per-query differences with a 95% bootstrap interval over queries: whether the
    held-out queries tell the two models apart at all."""
    import numpy as np

    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    low, high = np.percentile(means, [2.5, 97.5])
    return float(diff.mean()), float(low), float(high)


def _ci(m: dict, key: str, unit: str = "%") -> str:
    """``key`` of ``m`` with its interval where there is one; ``unit`` " points" for a
    difference of two uplifts."""
    v, lo, hi = m.get(key), m.get(f"{key}_ci_low"), m.get(f"{key}_ci_high")
    if v is None:
        return "-"
    if lo is None or hi is None:
        return f"{100 * v:+.1f}{unit}"
    return f"{100 * v:+.1f}{unit} [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def _spelling(m: dict) -> str:
    """The model's spelling corrections among its top rewrites, and the UCVR points they add."""
    rate, adds = m.get("spelling_fix_rate"), m.get("ucvr_uplift_from_spelling")
    if rate is None:
        return "-"
    return pct(rate) + ("" if adds is None else f" ({100 * adds:+.1f} pp)")


def table(results: list[dict]) -> list[str]:
    lines = [
        "| seed | variant | relevance (truth) | relevance (teacher) | UCVR, model alone "
        "| the same, top query left out | spelling fixes (add) | copy | greedy copies | empty "
        "| tagging macro-F1 | served | UCVR, served by the policy | vetting adds | increment "
        "| minutes |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        variants = r["metrics"]["variants"]
        for name in (n for n in variants if n != "no-rewrite"):
            m = variants[name]
            adds = m.get("ucvr_uplift_from_vetting")
            lines.append(
                f"| {r['seed']} | {name} | {pct(m.get('relevance_rate_truth'))} | "
                f"{pct(m.get('relevance_rate'))} | {_ci(m, 'ucvr_uplift_unfiltered')} | "
                f"{_ci(m, 'ucvr_uplift_unfiltered_without_top_query')} | {_spelling(m)} | "
                f"{pct(m.get('copy_rate'))} | {pct(m.get('greedy_copy_rate'))} | "
                f"{pct(m.get('empty_rate'))} | "
                f"{m.get('tagging_macro_f1') or 0:.3f} | {pct(m.get('served_rate'))} | "
                f"{_ci(m, 'ucvr_uplift')} | "
                f"{'-' if adds is None else f'{100 * adds:+.1f} pp'} | "
                f"{m.get('increment') or 0:.2f} | {r['minutes']:.1f} |"
            )
    return lines


def _range(values: list[float | None]) -> float:
    known = [v for v in values if v is not None]
    return max(known) - min(known) if known else 0.0


def _points(d: tuple[float, float, float] | list[float] | None) -> str:
    """A difference of two rates or uplifts with its interval, in points."""
    return "-" if not d else f"{100 * d[0]:+.1f} points [{100 * d[1]:+.1f}, {100 * d[2]:+.1f}]"


def _difference(choice: dict | None) -> str:
    return _points((choice or {}).get("uplift_difference"))


def _signed(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:+.1f}%"


def _top_query(r: dict) -> str:
    report, variants = r["metrics"], r["metrics"]["variants"]
    top, share = report.get("top_query"), report.get("top_query_search_share")
    if top is None or share is None:
        return "-"
    key = "ucvr_uplift_unfiltered_without_top_query"
    return (
        f'"{top}" {pct(share)}, {_signed(variants[ALIGNED].get(key))} against '
        f"{_signed(variants[MULTI_TASK_SFT].get(key))}"
    )


def goals(results: list[dict]) -> list[str]:
    """The issue's goals, each with its figures: met or not."""
    sft = [r["metrics"]["variants"][MULTI_TASK_SFT] for r in results]
    grpo = [r["metrics"]["variants"][ALIGNED] for r in results]
    # the candidate evaluation put forward: GRPO's model when it improved on SFT's, else SFT's
    cand = [r["metrics"]["metrics"] for r in results]
    chosen = [r["metrics"].get("candidate", ALIGNED) for r in results]
    rel = [m.get("relevance_rate_truth") or 0.0 for m in sft]
    spread = max(rel) - min(rel)
    alone_ok = [(m.get("ucvr_uplift_unfiltered_ci_low") or -1) > 0 for m in cand]
    # the bar, which is also evaluation's rule for putting GRPO's model forward
    grpo_better = [
        choose_candidate(
            r["metrics"]["variants"], preferred=ALIGNED, fallback=MULTI_TASK_SFT
        ).chosen
        == ALIGNED
        for r in results
    ]
    copies = [m.get("copy_rate") or 0.0 for m in grpo + sft]
    greedy_copies = [m.get("greedy_copy_rate", m.get("copy_rate")) or 0.0 for m in grpo + sft]
    repeats = [m["repeat_rate"] for m in grpo + sft if m.get("repeat_rate") is not None]
    single = [r["metrics"]["variants"].get(SINGLE_TASK_SFT) for r in results]
    ablation = [
        (m.get("relevance_rate_truth") or 0) < (s.get("relevance_rate_truth") or 0)
        for m, s in zip(single, sft, strict=True)
        if m is not None
    ]

    def mark(ok: bool) -> str:
        return "met" if ok else "**not met**"

    return [
        f"- multi-task SFT relevance (truth) >= {GOAL_RELEVANCE:.0%} on every seed: "
        f"{', '.join(pct(v) for v in rel)}: {mark(min(rel) >= GOAL_RELEVANCE)}; spread "
        f"{100 * spread:.1f} points (at most {100 * GOAL_SPREAD:.0f}): "
        f"{mark(spread <= GOAL_SPREAD)}",
        "- the candidate evaluation put forward (GRPO's model when it improves on SFT's): "
        + ", ".join(chosen),
        f"- the candidate alone (every rewrite served) lifts UCVR with its interval above zero: "
        f"{sum(alone_ok)} of {len(alone_ok)} seeds: {mark(all(alone_ok))}",
        f"- GRPO improves on multi-task SFT (unvetted UCVR higher, relevance at most 1 point "
        f"lower): {sum(grpo_better)} of {len(grpo_better)} seeds: "
        f"{mark(sum(grpo_better) >= 2)}",
        # evaluation's paired comparison: whether the held-out queries tell the two apart
        "- GRPO's unvetted UCVR uplift minus SFT's, 95% interval over queries (paired): "
        + ", ".join(_difference(r["metrics"].get("candidate_choice")) for r in results),
        f"- copy rate at most {GOAL_COPY:.0%}: highest {pct(max(copies))}: "
        f"{mark(max(copies) <= GOAL_COPY)}; the models' own greedy copies "
        f"{pct(min(greedy_copies))}-{pct(max(greedy_copies))}"
        + (" (decoded past the copy)" if max(greedy_copies) > max(copies) else ""),
        # the model's own stutters ("boots boots"), never served (drop_repeats)
        "- greedy rewrites that repeat a word the query does not: "
        + pct(min(repeats, default=None))
        + "-"
        + pct(max(repeats, default=None)),
        # the model's own spelling corrections, served first (correct_spelling), and what
        # they add to the candidate alone: the figures above are with them
        "- the candidate's top rewrites that are its own spelling correction, and the UCVR "
        "points they add (95% interval over queries): "
        + ", ".join(
            f"{pct(m.get('spelling_fix_rate'))} ({_ci(m, 'ucvr_uplift_from_spelling', ' points')})"
            for m in cand
        ),
        # one query can make a third of a seed's held-out searches: what the rest make of it
        "- the most searched held-out query of each seed, its share of the searches, and GRPO's "
        "unvetted UCVR uplift against SFT's without it: "
        + "; ".join(_top_query(r) for r in results),
        "- minutes per run: " + ", ".join(f"{r['minutes']:.1f}" for r in results),
        # what the gate's registry.seed_spread holds: a smaller win over the champion is noise
        "- the candidate's served UCVR uplift across these seeds: "
        + ", ".join(pct(m.get("ucvr_uplift")) for m in cand)
        + f"; spread {100 * _range([m.get('ucvr_uplift') for m in cand]):.1f} points "
        "(`registry.seed_spread` of the preset, when the training seeds varied)",
    ] + (
        [
            f"- single-task SFT below multi-task (relevance, truth): {sum(ablation)} of "
            f"{len(ablation)} seeds: {mark(all(ablation))}",
            # the same two models paired over queries: a difference inside the interval is noise
            "- multi-task SFT's relevance (truth) minus single-task's, 95% interval over the "
            "queries both rewrote (paired): "
            + ", ".join(_points(_ablation_interval(r)) for r in results),
            # one seed's 450-500 queries cannot tell a point or two apart; all seeds' can
            # come closer
            _pooled_ablation(results),
        ]
        if ablation
        else []
    )


def _ablation_interval(result: dict) -> tuple[float, float, float] | None:
    d = result.get("ablation_differences")
    return None if d is None else paired_interval(d)


def _pooled_ablation(results: list[dict]) -> str:
    import numpy as np

    parts = [d for r in results if (d := r.get("ablation_differences")) is not None]
    pooled = np.concatenate(parts)
    return (
        f"- the same over the {len(parts)} seeds' held-out queries together ({len(pooled):,} "
        f"queries, paired): {_points(paired_interval(pooled))}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, default=Path("configs/local.yaml"))
    ap.add_argument("--seeds", type=int, nargs="+", default=[7, 11, 13])
    ap.add_argument("--vary", choices=("market", "training"), default="market")
    ap.add_argument(
        "--work", type=Path, help="where the runs go (.bench/quality, or -base-model after it)"
    )
    ap.add_argument("--qrewrite", default=str(Path(sys.executable).parent / "qrewrite"))
    ap.add_argument("--ablation", action="store_true", help="also train single-task SFT")
    ap.add_argument(
        "--base-model", type=Path, help="fine-tune this model folder instead of pretraining"
    )
    ap.add_argument("--write", type=Path, help="docs/benchmarks.md to update")
    args = ap.parse_args()

    from qrewrite.environment import current_environment

    # the commit the runs start from (later commits while they run change nothing they run)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    work = args.work or Path(".bench/quality" + ("-base-model" if args.base_model else ""))
    results: list[dict] = []
    for seed in args.seeds:
        print(f"bench-quality: seed {seed} ({args.vary}) ...", flush=True)
        results.append(
            run_seed(
                args.qrewrite,
                args.config,
                seed,
                args.vary,
                work.resolve(),
                ablation=args.ablation,
                base_model=args.base_model.resolve() if args.base_model else None,
            )
        )
        print("\n".join(table(results[-1:])), flush=True)
        # after every seed: an interrupted benchmark still leaves the seeds it finished
        section = render(args, commit, results, current_environment())
        if args.write:
            write_section(args.write, section_name(args), section, heading(args))
    print(section)
    if args.write:
        print(f"bench-quality: wrote {args.write}")


def section_name(args: argparse.Namespace) -> str:
    return f"quality-{args.vary}" + ("-base-model" if args.base_model else "")


def heading(args: argparse.Namespace) -> str:
    base = ", from a base model" if args.base_model else ""
    return f"Rewriter quality across seeds ({args.vary}{base})"


def render(args: argparse.Namespace, commit: str, results: list[dict], env: Any) -> str:
    what = (
        "every seed of the preset (marketplace and training)"
        if args.vary == "market"
        else "the training seeds (pretrain, sft, grpo), the marketplace at the preset's seed"
    )
    done = [r["seed"] for r in results]
    pending = [s for s in args.seeds if s not in done]
    begin, end = markers(section_name(args))
    body = [
        begin,
        (
            f"`benchmarks/bench_quality.py --vary {args.vary} --base-model` on "
            if args.base_model
            else f"`make bench-quality{'-training' if args.vary == 'training' else ''}` on "
        )
        + f"{datetime.now(UTC):%b %d %Y}, commit {commit}, {env.cpu_model} "
        f"({env.cpus} CPUs, {'/'.join(env.cpu_flags)}), torch {env.packages.get('torch')}: "
        f"{args.config} with {what} set to {', '.join(map(str, done))}"
        + (f" (not run: {', '.join(map(str, pending))})" if pending else "")
        + "; one `qrewrite run --local"
        + (" --ablation" if args.ablation else "")
        + (f" --base-model {args.base_model}" if args.base_model else "")
        + "` per seed. Serving policy: the preset's.",
        "",
        *table(results),
        "",
        *goals(results),
        *[f"- seed {r['seed']}: registry {r['registry']}" for r in results],
        end,
    ]
    return "\n".join(body)


if __name__ == "__main__":
    main()
