"""The same data on every machine: the data steps under the kernels and threads other CPUs pick.

Run with ``make bench-determinism``. One seed of the preset goes through ``synth`` -> ``mine`` ->
``label`` -> ``build-datasets`` once per setting: this machine as it is, numpy held to the AVX2
or SSE4.2 kernels an older or AMD CPU would use (with OpenBLAS's Haswell kernels), torch held to
AVX2, and one thread everywhere (torch, BLAS, DuckDB). Each step's fingerprint
(``tables.table_fingerprint``, recorded in its report) is compared with the first setting's: a
step that differs is where two machines would part. Where a judged file is at hand (``--judged``;
``../shared/data/crowdflower/`` by default, skipped when absent), its path runs too under every
setting: ``import-judged`` -> ``mine`` -> ``label`` (the teacher calibrated on the judgments, with
the encoder) -> ``build-datasets`` under ``configs/judged.yaml``. Prints Markdown tables and, with
``--write``, replaces this benchmark's section of ``docs/benchmarks.md``. A measurement, never a
test (``tests/market/test_simulate.py`` checks the marketplace under other kernels).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from docs_section import current_commit, markers, write_section

from qrewrite.environment import current_environment

NUMPY_AVX2 = "SSE SSE2 SSE3 SSSE3 SSE41 POPCNT SSE42 AVX F16C FMA3 AVX2"
NUMPY_SSE42 = "SSE SSE2 SSE3 SSSE3 SSE41 POPCNT SSE42"
HASWELL_BLAS = {"OPENBLAS_CORETYPE": "Haswell"}
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}


@dataclass(frozen=True)
class Setting:
    name: str
    env: dict[str, str] = field(default_factory=dict)
    mine_flags: tuple[str, ...] = ()


SETTINGS = (
    Setting("this machine"),
    Setting("numpy AVX2", {"NPY_ENABLE_CPU_FEATURES": NUMPY_AVX2, **HASWELL_BLAS}),
    Setting("numpy SSE4.2", {"NPY_ENABLE_CPU_FEATURES": NUMPY_SSE42, **HASWELL_BLAS}),
    Setting("torch AVX2", {"ATEN_CPU_CAPABILITY": "avx2"}),
    Setting("one thread", ONE_THREAD, ("--set", "duckdb_threads=1")),
)
# the reports that record each step's fingerprints, in pipeline order
REPORTS = (
    ("synth", "market/manifest.json"),
    ("mine", "mined/mining_report.json"),
    ("label", "labels/labeled_pairs.report.json"),
    ("build-datasets", "datasets/dataset_report.json"),
)
JUDGED_REPORTS = (("import-judged", "market/manifest.json"), *REPORTS[1:])
DEFAULT_JUDGED = (
    Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "crowdflower"
) / "crowdflower_train.tsv"


def make_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", type=Path, default=Path("configs/local.yaml"))
    p.add_argument("--seed", type=int, default=7, help="the marketplace's seed")
    p.add_argument("--work", type=Path, default=Path(".bench/determinism"))
    p.add_argument("--judged", type=Path, default=DEFAULT_JUDGED, help="a judged file (TSV)")
    p.add_argument("--judged-config", type=Path, default=Path("configs/judged.yaml"))
    p.add_argument("--grade-scale", default="numeric:1:4", help="the judged file's grades")
    p.add_argument("--write", type=Path, help="docs/benchmarks.md: replace this section")
    return p


def data_steps(
    config: Path, setting: Setting, out: Path, first: list[str], build_flags: tuple[str, ...] = ()
) -> list[list[str]]:
    """``first`` (the step that writes ``out/market``), then mine, label and build-datasets."""
    preset = ["--config", str(config)]
    market, mined = str(out / "market"), str(out / "mined")
    labels = str(out / "labels" / "labeled_pairs.parquet")
    candidates = str(out / "mined" / "rewrite_candidates.parquet")
    return [
        first,
        ["mine", *preset, *setting.mine_flags, "--data", market, "--out", mined],
        ["label", *preset, "--data", market, "--candidates", candidates, "--out", labels],
        [
            *("build-datasets", *preset, *build_flags, "--data", market),
            *("--mined", mined, "--labels", labels, "--out", str(out / "datasets")),
        ],
    ]


def run_steps(qrewrite: str, steps: list[list[str]], setting: Setting, out: Path) -> float:
    """``steps`` (qrewrite's arguments) under ``setting``; returns the seconds they took."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, **setting.env}
    t0 = time.perf_counter()
    for step in steps:
        proc = subprocess.run([qrewrite, *step], env=env, capture_output=True, text=True)
        if proc.returncode:
            log = out / f"{step[0]}.log"
            log.write_text(proc.stdout + proc.stderr)
            sys.exit(f"{setting.name}: qrewrite {step[0]} failed ({proc.returncode}); see {log}")
    return time.perf_counter() - t0


def fingerprints(out: Path, reports: tuple[tuple[str, str], ...] = REPORTS) -> dict[str, dict]:
    """Every table's fingerprint, keyed ``step: table``, in pipeline order."""
    found = {}
    for step, report in reports:
        for table, fp in json.loads((out / report).read_text())["fingerprints"].items():
            found.setdefault(f"{step}: {table}", fp)  # label repeats mine's candidates
    return found


def table(names: list[str], runs: list[dict[str, dict]]) -> list[str]:
    first = runs[0]
    lines = [
        "| step: table | rows | " + " | ".join(names) + " |",
        "|---|---:|" + "---|" * len(names),
    ]
    for key, fp in first.items():
        cells = [f"`{fp['content'][-8:]}`"] + [
            "same" if run[key] == fp else f"**differs** ({run[key]['rows']:,} rows)"
            for run in runs[1:]
        ]
        lines.append(f"| {key} | {fp['rows']:,} | " + " | ".join(cells) + " |")
    return lines


def verdict(names: list[str], runs: list[dict[str, dict]]) -> str:
    parted = [name for name, run in zip(names[1:], runs[1:], strict=True) if run != runs[0]]
    if not parted:
        return f"- every step's output is the same under every setting ({len(names)})"
    return f"- **the data parts** under: {', '.join(parted)}"


@dataclass
class PathRuns:
    """One data path run under every setting: each setting's fingerprints and seconds."""

    runs: list[dict[str, dict]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


def render(
    args: argparse.Namespace, names: list[str], market: PathRuns, judged: PathRuns | None
) -> str:
    env = current_environment()
    begin, end = markers("determinism")
    lines = [
        begin,
        f"`make bench-determinism` on {datetime.now(UTC):%b %d %Y}, commit "
        f"{current_commit()}, {env.cpu_model} ({env.cpus} CPUs, "
        f"{'/'.join(env.cpu_flags)}), numpy {env.packages.get('numpy')}, torch "
        f"{env.packages.get('torch')}: {args.config}, seed {args.seed}, `synth` -> `mine` "
        "-> `label` -> `build-datasets` once per setting. The first column is the content "
        "fingerprint's last digits on this machine; the others say whether theirs matches.",
        "",
        *table(names, market.runs),
        "",
        verdict(names, market.runs),
        "- seconds for the four steps: "
        + ", ".join(f"{n} {s:.0f}" for n, s in zip(names, market.seconds, strict=True)),
    ]
    if judged is not None:
        lines += [
            "",
            f"The judged path on `{args.judged.name}`: `import-judged` -> `mine` -> `label` "
            f"(the teacher calibrated on the judgments, with the encoder's cosine) -> "
            f"`build-datasets`, {args.judged_config}, once per setting.",
            "",
            *table(names, judged.runs),
            "",
            verdict(names, judged.runs),
            "- seconds for the four steps: "
            + ", ".join(f"{n} {s:.0f}" for n, s in zip(names, judged.seconds, strict=True)),
        ]
    return "\n".join([*lines, end])


def main(argv: list[str] | None = None) -> None:
    args = make_parser().parse_args(argv)
    qrewrite = str(Path(sys.executable).with_name("qrewrite"))
    with_judged = args.judged.is_file()
    if not with_judged:
        print(
            f"bench-determinism: {args.judged}: not found; the judged path left out",
            file=sys.stderr,
        )
    names: list[str] = []
    market, judged = PathRuns(), PathRuns()
    for i, setting in enumerate(SETTINGS):
        names.append(setting.name)
        out = args.work / f"setting{i}"
        synth = ["synth", "--config", str(args.config), "--seed", str(args.seed)]
        synth += ["--out", str(out / "market"), "--no-progress"]
        seed_flags = ("--set", f"seed={args.seed}")
        steps = data_steps(args.config, setting, out, synth, seed_flags)
        market.seconds.append(run_steps(qrewrite, steps, setting, out))
        market.runs.append(fingerprints(out))
        print(f"bench-determinism: {setting.name}: {market.seconds[-1]:.0f} s", file=sys.stderr)
        if with_judged:
            out = args.work / f"judged{i}"
            imported = ["import-judged", "--input", str(args.judged), "--out", str(out / "market")]
            imported += ["--grade-scale", args.grade_scale]
            steps = data_steps(args.judged_config, setting, out, imported)
            judged.seconds.append(run_steps(qrewrite, steps, setting, out))
            judged.runs.append(fingerprints(out, JUDGED_REPORTS))
            print(
                f"bench-determinism: judged, {setting.name}: {judged.seconds[-1]:.0f} s",
                file=sys.stderr,
            )
    section = render(args, names, market, judged if with_judged else None)
    print(section)
    if args.write:
        write_section(args.write, "determinism", section, "The same data on every machine")
        print(f"bench-determinism: wrote {args.write}", file=sys.stderr)


if __name__ == "__main__":
    main()
