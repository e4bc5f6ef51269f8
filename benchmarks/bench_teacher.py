"""The teacher against human judgments: every judged (query, product) pair of a judged file graded
by each grader, compared with people's grades.

Graders: the rule teacher (no calibration), the plain cosine of the bundled MiniLM embeddings,
the share of query words in the title, and the teacher calibrated on the judgments (cross-fitted:
every pair is graded by a model fitted without its query), with and without the encoder's cosine
among its signals, cold and as the steps after ``qrewrite label`` build it (from the embeddings
label stored), and without its pseudo-relevance-feedback signal (or at other depths:
``--feedback-depths 0,10,20``), its title-name signals or its topic signal. Speed counts
everything after loading: for the calibrated teacher, fitting included; grading alone is
measured on pairs nobody judged. Run with
``make bench-teacher`` (``../shared/data/crowdflower/`` by default); with ``--write``, replaces
this benchmark's section of ``docs/benchmarks.md``. A measurement, never a test.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import sklearn.linear_model  # noqa: F401  (imported before any timing, as torch is)
from docs_section import current_commit, markers, write_section
from scipy.stats import spearmanr

from qrewrite.environment import current_environment
from qrewrite.evaluation.labels import grade_metrics
from qrewrite.importing.judged import JudgedImportConfig, import_judged
from qrewrite.labeling.calibration import FEEDBACK_DEPTH
from qrewrite.labeling.encoder import SentenceEncoder
from qrewrite.labeling.teacher import Teacher, TeacherConfig
from qrewrite.tables import read_judgments
from qrewrite.text import tokenize

DEFAULT_INPUT = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "crowdflower"


@dataclass
class Graded:
    name: str
    grade: np.ndarray | None  # 0-2, None for a score that has no grades
    score: np.ndarray  # what ranks pairs: the expected grade, a cosine, a share
    seconds: float


def grade_all(
    data: Path, encoder: SentenceEncoder, *, feedback_depths: list[int]
) -> tuple[pd.DataFrame, list[Graded], GradingSpeed]:
    catalog = pd.read_parquet(data / "catalog.parquet")
    judged = read_judgments(data)
    assert judged is not None
    titles = dict(zip(catalog["product_id"], catalog["title"], strict=True))
    pairs = pd.DataFrame(
        {
            "query": judged["query"],
            "rewrite": judged["product_id"].map(titles),
            "product_id": judged["product_id"],
        }
    )
    out: list[Graded] = []

    def teacher(
        name: str, config: TeacherConfig, *, stored: Path | None = None, enc: object = encoder
    ) -> Teacher:
        t = Teacher(catalog, config, encoder=enc)
        t0 = time.perf_counter()
        if stored is not None:
            t.use_embeddings(stored)
        if config.calibrate_on_judgments:
            t.calibrate(judged)
        g = t.grade(pairs)
        seconds = time.perf_counter() - t0
        expected = g[["p_irrelevant", "p_partial", "p_relevant"]].to_numpy() @ np.arange(3)
        out.append(Graded(name, g["grade"].to_numpy(), expected, seconds))
        return t

    t0 = time.perf_counter()
    overlap = np.array(
        [
            len(set(tokenize(q)) & set(tokenize(t))) / max(1, len(set(tokenize(q))))
            for q, t in zip(pairs["query"], pairs["rewrite"], strict=True)
        ]
    )
    out.append(Graded("query-word overlap", None, overlap, time.perf_counter() - t0))
    teacher("calibrated teacher (lexical signals)", TeacherConfig(calibration_encoder=False))
    teacher(
        "the same without the title-name and topic signals",
        TeacherConfig(
            calibration_encoder=False, calibration_title_names=False, calibration_topics=0
        ),
    )
    # the encoder's cost is counted here, where its cache is cold: what `qrewrite label` pays
    cold = teacher("calibrated teacher + encoder cosine", TeacherConfig(calibration_encoder=True))
    # ...and what every later step pays: they preload the embeddings label stored
    cold.save_embeddings(stored := data / "stored_embeddings.parquet")
    teacher(
        "the same, embeddings preloaded (later steps; label with its embedding cache)",
        TeacherConfig(calibration_encoder=True),
        stored=stored,
        enc=SentenceEncoder(),
    )
    # what the pseudo-relevance-feedback signal adds (labeling/calibration.py), and other depths
    for depth in feedback_depths:
        teacher(
            f"the same, feedback depth {depth} (encoder cache warm)"
            if depth
            else "the same without the feedback signal (encoder cache warm)",
            TeacherConfig(calibration_encoder=True, calibration_feedback_depth=depth),
        )
    # what the title-name signals and the topic signal add (labeling/calibration.py)
    teacher(
        "the same without the title-name signals (encoder cache warm)",
        TeacherConfig(calibration_encoder=True, calibration_title_names=False),
    )
    teacher(
        "the same without the topic signal (encoder cache warm)",
        TeacherConfig(calibration_encoder=True, calibration_topics=0),
    )
    t0 = time.perf_counter()
    cosine = encoder.similarity(pairs["query"].tolist(), pairs["rewrite"].tolist())
    out.append(Graded("MiniLM cosine (encoder cache warm)", None, cosine, time.perf_counter() - t0))
    teacher(
        "rule teacher, no calibration (encoder cache warm)",
        TeacherConfig(calibrate_on_judgments=False),
    )
    return judged, out, grading_speed(catalog, judged, cold)


@dataclass
class GradingSpeed:
    pairs: int
    seconds: float


def grading_speed(catalog: pd.DataFrame, judged: pd.DataFrame, fitted: Teacher) -> GradingSpeed:
    """A fitted teacher grading pairs nobody judged: each judged query with 40 catalog titles
    it was not judged with (seeded), as evaluation and serving grade what a search returns."""
    rng = np.random.default_rng(0)
    judged_pids = judged.groupby("query")["product_id"].apply(set).to_dict()
    pids = catalog["product_id"].to_numpy()
    rows = []
    for q, seen in judged_pids.items():
        unjudged = [p for p in rng.permutation(pids)[: 40 + len(seen)] if p not in seen]
        rows += [(q, p) for p in unjudged[:40]]
    pairs = pd.DataFrame(rows, columns=["query", "product_id"])
    titles = dict(zip(catalog["product_id"], catalog["title"], strict=True))
    pairs["rewrite"] = pairs["product_id"].map(titles)
    t0 = time.perf_counter()
    fitted.grade(pairs)
    return GradingSpeed(len(pairs), time.perf_counter() - t0)


def render(
    source: Path, judged: pd.DataFrame, graded: list[Graded], speed: GradingSpeed, commit: str
) -> str:
    env = current_environment()
    truth = judged["grade"].to_numpy(dtype=np.int64)
    begin, end = markers("teacher")
    majority = np.bincount(truth, minlength=3).max() / len(truth)
    lines = [
        begin,
        f"`make bench-teacher` on `{source.name}`: {len(judged):,} judged pairs, "
        f"{judged['query'].nunique():,} queries, grades 0/1/2 "
        f"{'/'.join(str(int(n)) for n in np.bincount(truth, minlength=3))} "
        f"(majority class {majority:.3f}). {datetime.now(UTC):%b %d %Y}, commit {commit}, "
        f"{env.cpu_model} ({env.cpus} CPUs). Calibrated graders are cross-fitted: each pair is "
        "graded by a model fitted without its query.",
        "",
        "| grader | Spearman (score) | Spearman (grade) | accuracy | quadratic kappa | pairs/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for g in graded:
        rho = spearmanr(g.score, truth).statistic
        if g.grade is not None:
            m = grade_metrics(truth, g.grade)
            cells = f"{m['spearman']:.3f} | {m['accuracy']:.3f} | {m['quadratic_kappa']:.3f}"
        else:
            cells = "- | - | -"
        lines.append(f"| {g.name} | {rho:.3f} | {cells} | {len(judged) / g.seconds:,.0f} |")
    lines += [
        "",
        "Score: the expected grade (teachers) or the raw similarity; grade: the teacher's 0/1/2. "
        "Pairs/s counts everything after loading the encoder: fitting the calibration on the "
        "judged pairs, embedding what is not stored yet, grading.",
        "",
        f"Grading alone, the calibrated teacher + encoder once fitted: {speed.pairs:,} (query, "
        "title) pairs nobody judged (each judged query with catalog titles it was not judged "
        f"with) in {speed.seconds:.2f} s, **{speed.pairs / speed.seconds:,.0f} pairs/s**.",
        end,
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--input",
        type=Path,
        default=DEFAULT_INPUT / "crowdflower_train.tsv",
        help="a judged file import-judged reads",
    )
    parser.add_argument("--grade-scale", default="numeric:1:4")
    parser.add_argument(
        "--feedback-depths",
        default="0",
        help="comma-separated depths of the feedback signal to grade with besides the default "
        f"({FEEDBACK_DEPTH}); 0 is without it",
    )
    parser.add_argument("--write", type=Path, help="docs/benchmarks.md to update")
    args = parser.parse_args(argv)
    try:
        depths = [int(d) for d in args.feedback_depths.split(",") if d.strip()]
    except ValueError:
        parser.error(f"--feedback-depths {args.feedback_depths!r}: expected integers, e.g. 0,20")
    if not args.input.exists():
        print(f"bench-teacher: {args.input}: not found", file=sys.stderr)
        return 2
    commit = current_commit()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        import_judged(
            JudgedImportConfig(grade_scale=args.grade_scale), input_path=args.input, out_dir=data
        )
        encoder = SentenceEncoder()
        judged, graded, speed = grade_all(data, encoder, feedback_depths=depths)
    section = render(args.input, judged, graded, speed, commit)
    print(section)
    if args.write:
        write_section(args.write, "teacher", section, "The teacher against human judgments")
    return 0


if __name__ == "__main__":
    sys.exit(main())
