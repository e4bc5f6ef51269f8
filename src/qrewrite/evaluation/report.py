"""The evaluation report: ``report.md``, a self-contained ``report.html`` and PNG plots."""

from __future__ import annotations

import base64
import math
import re
import shutil
from pathlib import Path
from typing import Any

from qrewrite.serving.policy import ServingPolicy

HEAD_QUERIES = 10  # the head whose share of the held-out searches the report gives

GRADE_NAMES = ("irrelevant", "partial", "relevant")

# (metric key, column title, format) of the ablation table
# The model alone first (every top rewrite served), then what the serving policy serves and adds
TABLE_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("relevance_rate_truth", "relevance (truth)", "pct"),
    ("relevance_rate", "relevance (teacher)", "pct"),
    ("ucvr_uplift_unfiltered", "UCVR uplift, model alone [95% CI]", "ci"),
    ("ucvr_uplift_unfiltered_without_top_query", "the same, top query left out [95% CI]", "ci"),
    ("copy_rate", "copy", "pct"),
    ("greedy_copy_rate", "greedy copies", "pct"),
    ("repeat_rate", "repeats", "pct"),
    ("spelling_fix_rate", "spelling fixes", "pct"),
    ("ucvr_uplift_from_spelling", "spelling adds", "pp"),
    ("tagging_macro_f1", "tagging macro-F1", "f3"),
    ("served_rate", "served", "pct"),
    ("served_relevance_rate", "served relevance", "pct"),
    ("ucvr_uplift", "UCVR uplift, served by the policy [95% CI]", "ci"),
    ("ucvr_uplift_from_vetting", "vetting adds", "pp"),
    ("increment", "increment", "f2"),
    ("hit_rate", "hit rate", "pct"),
    ("ndcg_at_10", "nDCG@10", "f3"),
    ("recall_at_100", "recall@100", "f3"),
    ("ctr_uplift", "CTR uplift", "pct"),
    ("distinct_rewrites_per_query", "distinct", "f2"),
)


def _fmt(value: Any, kind: str, row: dict[str, Any] | None = None, key: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "pp":  # a difference of two rates, in points
        return f"{100 * value:+.1f} pp"
    if kind == "ci":
        assert row is not None
        lo, hi = row.get(f"{key}_ci_low"), row.get(f"{key}_ci_high")
        if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
            return f"{100 * value:+.1f}%"
        return f"{100 * value:+.1f}% [{100 * lo:+.1f}, {100 * hi:+.1f}]"
    return f"{value:.{kind[1:]}f}"


def ablation_table(report: dict[str, Any]) -> str:
    """The variants side by side, as a Markdown table."""
    head = "| variant | " + " | ".join(title for _, title, _ in TABLE_COLUMNS) + " |"
    sep = "|---|" + "---:|" * len(TABLE_COLUMNS)
    lines = [head, sep]
    for name, row in report["variants"].items():
        mark = " (candidate)" if name == report.get("candidate") else ""
        cells = [_fmt(row.get(key), kind, row, key) for key, _, kind in TABLE_COLUMNS]
        lines.append(f"| {name}{mark} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _plot_metrics(report: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    names = list(report["variants"])
    keys = [
        ("relevance_rate", "relevance (teacher)"),
        ("increment", "increment (new relevant products)"),
        ("ndcg_at_10", "nDCG@10"),
        ("ucvr_uplift", "UCVR uplift"),
    ]
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3.6))
    for ax, (key, title) in zip(axes, keys, strict=True):
        vals = [report["variants"][n].get(key) for n in names]
        vals = [v if v is not None and not math.isnan(v) else 0.0 for v in vals]
        err = None
        if key == "ucvr_uplift":
            lo = [report["variants"][n].get("ucvr_uplift_ci_low") for n in names]
            hi = [report["variants"][n].get("ucvr_uplift_ci_high") for n in names]
            err = [
                [
                    max(0.0, v - (a if a is not None and not math.isnan(a) else v))
                    for v, a in zip(vals, lo, strict=True)
                ],
                [
                    max(0.0, (b if b is not None and not math.isnan(b) else v) - v)
                    for v, b in zip(vals, hi, strict=True)
                ],
            ]
            ax.axhline(0, color="grey", linewidth=0.8)
        ax.bar(range(len(names)), vals, yerr=err, capsize=4, color="#4C72B0")
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_grades(grades: dict[str, dict[str, list[int]]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    sources = [s for s in ("teacher", "truth", "self") if any(s in g for g in grades.values())]
    if not sources or not grades:
        return None
    fig, axes = plt.subplots(1, len(sources), figsize=(4.5 * len(sources), 3.6), squeeze=False)
    colours = ("#C44E52", "#DD8452", "#55A868")
    names = list(grades)
    for ax, source in zip(axes[0], sources, strict=True):
        bottom = [0.0] * len(names)
        for g, colour in enumerate(colours):
            share = []
            for n in names:
                vals = grades[n].get(source, [])
                share.append(sum(1 for v in vals if v == g) / len(vals) if vals else 0.0)
            ax.bar(range(len(names)), share, bottom=bottom, color=colour, label=GRADE_NAMES[g])
            bottom = [b + s for b, s in zip(bottom, share, strict=True)]
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_title(f"grades of top rewrites ({source})")
        ax.set_ylim(0, 1)
    axes[0][-1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


DEFINITIONS = """\
- **relevance (teacher / truth)**: share of the model's rewrites (the top-ranked candidate of
  each query) graded relevant by the teacher labeler / by the simulator's ground truth.
- **served**: share of queries whose top rewrite passes the serving policy (above: the model's
  own P(relevant) >= min_p_relevant, the teacher's grade 2, both, or the teacher grading the
  page served with it above the original's). **served relevance**: the teacher's relevance
  rate of the served rewrites.
- **increment**: mean number of relevant products per query that the rewrite retrieves (top 20)
  and the original query does not.
- **hit rate**: share of the products bought under the held-out queries that original + rewrite
  retrieve (top 20 each); the no-rewrite row is the original alone.
- **nDCG@10 / recall@100**: of the page that fuses original and rewrite results (reciprocal rank
  fusion), against graded truth.
- **UCVR uplift**: purchases per user of the treatment (original + rewrite page) over control
  (original page) minus 1, in the simulated A/B test; 95% bootstrap interval over users (the
  headline adds the interval over queries, wider when a few head queries make most searches).
  "model alone" serves every top rewrite; "served by the policy" only those the serving policy
  passes; **vetting adds** is the difference, in points.
- **tagging macro-F1**: the model's own relevance-tagging task on held-out pairs.
- **copy / distinct**: first rewrites that are the query again (its words and no others, in any
  order); distinct candidates per query. **greedy copies**: the model's greedy rewrite was the
  query itself, before decoding past the copy (`continue_copies`; the same as copy without it).
  **repeats**: the model's greedy rewrite repeats a word the query does not ("cowboy boots
  boots"); such candidates are never served (`drop_repeats`).
- **spelling fixes**: top rewrites that are the model's own spelling correction of the query (its
  answer under the normalize prompt, served first where it only corrects the query's spelling,
  by the catalog's words where they were saved with the model: `correct_spelling`); **spelling
  adds**: the model alone's UCVR uplift with them minus without them, in points.

Full definitions: docs/evaluation.md.
"""


def sample_table(samples: list[dict[str, Any]]) -> list[str]:
    """Markdown lines of the sample rewrites (head queries first), grades in words."""
    if not samples:
        return []

    def grade(g: int | None) -> str:
        return "-" if g is None else GRADE_NAMES[g]

    def cell(text: str) -> str:
        return str(text).replace("|", "\\|") or "(none)"

    def page(gain: float | None) -> str:  # vet "page": what the teacher finds the page gains
        return "" if gain is None else f" (page {gain:+.2f})"

    lines = [
        "## Sample rewrites",
        "",
        "The candidate's top rewrite of the most searched held-out queries (*spelling fix*: "
        "the model's own correction of the query, served first"
        + (
            "; *page*: the teacher's expected DCG of the first page served with the rewrite minus "
            "the original's own, which decides what is served)."
            if any(r.get("page_gain") is not None for r in samples)
            else ")."
        ),
        "",
        "| query | searches | top rewrite | teacher | truth | served |",
        "|---|---:|---|---|---|---|",
    ]
    for r in samples:
        lines.append(
            f"| {cell(r['query'])} | {r['searches']:,} | {cell(r['rewrite'])}"
            f"{' *(spelling fix)*' if r.get('spelling_fix') else ''} | "
            f"{grade(r['teacher_grade'])} | {grade(r['truth_grade'])} | "
            f"{'yes' if r['served'] else 'no'}{page(r.get('page_gain'))} |"
        )
    return [*lines, ""]


SUBSET_TITLES = {
    "all": "all",
    "misspelled": "misspelled queries",
    "original_finds_nothing_relevant": "original finds nothing relevant",
}


def judged_table(report: dict[str, Any]) -> list[str]:
    """Markdown lines: the candidate on people's grades, the model alone first."""
    judged = (report.get("judged") or {}).get(report.get("candidate"))
    if not judged:
        return []
    lines = [
        "## On human judgments",
        "",
        "Held-out judged queries: nDCG@10 and recall@100 of the original query against the "
        "original fused with the rewrite (reciprocal rank), on people's grades; 95% bootstrap "
        "intervals over queries, p from a paired t-test (ranx). Products nobody judged for the "
        "query count as irrelevant; the judging pool came from the original's results, so a "
        "rewrite's products are judged less often (judged@10). Unjudged left out: nDCG@10 of "
        "the pages with those products removed (condensed lists). The first uplift is the "
        "lower estimate, the second the higher one.",
        "",
        "| rewrites | queries | rewritten | nDCG@10 original | nDCG@10 fused | uplift [95% CI] "
        "| p | uplift, unjudged left out [95% CI] | judged@10 original / fused "
        "| recall@100 original | recall@100 fused |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for arm, title in (("model_alone", "model alone"), ("with_serving_policy", "served")):
        for r in judged.get(arm, []):
            condensed = "condensed_ndcg_at_10_uplift"
            lines.append(
                f"| {title}, {SUBSET_TITLES.get(r['subset'], r['subset'])} | {r['queries']:,} | "
                f"{r['rewritten']:,} | {_fmt(r['ndcg_at_10_original'], 'f3')} | "
                f"{_fmt(r['ndcg_at_10'], 'f3')} | "
                f"{_fmt(r['ndcg_at_10_uplift'], 'ci', r, 'ndcg_at_10_uplift')} | "
                f"{_fmt(r['p_value'], 'f3')} | "
                f"{_fmt(r.get(condensed), 'ci', r, condensed)} | "
                f"{_fmt(r.get('judged_at_10_original'), 'pct')} / "
                f"{_fmt(r.get('judged_at_10'), 'pct')} | "
                f"{_fmt(r['recall_at_100_original'], 'f3')} | "
                f"{_fmt(r['recall_at_100'], 'f3')} |"
            )
    return [*lines, ""]


def _over_queries(row: dict[str, Any], key: str) -> str:
    """ " (over users), [lo, hi] over queries" when the row has the interval over queries."""
    lo, hi = row.get(f"{key}_query_ci_low"), row.get(f"{key}_query_ci_high")
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi):
        return ""
    return f" over users, [{100 * lo:+.1f}, {100 * hi:+.1f}] over queries"


def _without_top_query(report: dict[str, Any], row: dict[str, Any], key: str) -> str:
    """ "; without "q" (s% of the searches), u [lo, hi] over the other queries" where the
    evaluation set the most searched query aside."""
    rest = row.get(f"{key}_without_top_query")
    top, share = report.get("top_query"), report.get("top_query_search_share")
    if top is None or share is None or rest is None or math.isnan(rest):
        return ""
    return f'; without its most searched query, "{top}" ({share:.0%} of the searches), ' + _fmt(
        rest, "ci", row, f"{key}_without_top_query"
    )


def headline(report: dict[str, Any]) -> list[str]:
    """Markdown bullets: the held-out queries, the model alone first, then what the serving
    policy serves (the report's and the model card's opening)."""
    cand = report["metrics"]
    serving = ServingPolicy.of(report.get("config") or {}).describe()
    choice = report.get("candidate_choice")
    chosen = (
        [
            f"- **candidate chosen**: {choice['chosen']} of {choice['preferred']} and "
            f"{choice['fallback']} ({choice['reason']})"
        ]
        if choice
        else []
    )
    head = report.get("head_search_share")
    return [
        f"- held-out queries: {report.get('held_out_queries', 0):,} (never seen in training"
        + (
            f"; {report['overlap_dropped']} overlapping queries left out"
            if report.get("overlap_dropped")
            else ""
        )
        + ")"
        + (
            f"; the {HEAD_QUERIES} most searched make {head:.0%} of their searches, so UCVR "
            "moves with their rewrites (the sample below)"
            if head is not None
            else ""
        ),
        "- candidate, **the model alone** (every top rewrite served): "
        f"**{report.get('candidate')}**: "
        f"relevance {_fmt(cand.get('relevance_rate_truth'), 'pct')} (truth), "
        f"{_fmt(cand.get('relevance_rate'), 'pct')} (teacher); simulated UCVR uplift "
        f"{_fmt(cand.get('ucvr_uplift_unfiltered'), 'ci', cand, 'ucvr_uplift_unfiltered')}"
        f"{_over_queries(cand, 'ucvr_uplift_unfiltered')}"
        f"{_without_top_query(report, cand, 'ucvr_uplift_unfiltered')}; "
        f"copies {_fmt(cand.get('copy_rate'), 'pct')}{_past_copies(cand)}, "
        f"empty {_fmt(cand.get('empty_rate'), 'pct')}{_spelling(cand)}",
        f"- **with the serving policy** ({serving}): "
        f"{_fmt(cand.get('served_rate'), 'pct')} of queries served, UCVR uplift "
        f"{_fmt(cand.get('ucvr_uplift'), 'ci', cand, 'ucvr_uplift')}"
        f"{_over_queries(cand, 'ucvr_uplift')}; vetting adds "
        f"{_fmt(cand.get('ucvr_uplift_from_vetting'), 'pp')}",
        *chosen,
    ]


def _spelling(m: dict[str, Any]) -> str:
    """What the model's spelling corrections are and add, when it made any: to the simulated
    UCVR uplift, else (judged data) to the nDCG@10 uplift on people's grades."""
    rate = m.get("spelling_fix_rate")
    if not rate:
        return ""
    said = f"; its own spelling corrections are {_fmt(rate, 'pct')} of the top rewrites and add "
    ucvr = m.get("ucvr_uplift_from_spelling")
    if ucvr is None or (isinstance(ucvr, float) and math.isnan(ucvr)):
        return said + (
            f"{_fmt(m.get('ndcg_at_10_uplift_from_spelling'), 'pp')} to its nDCG@10 uplift on "
            "people's grades"
        )
    low, high = (
        _fmt(m.get(f"ucvr_uplift_from_spelling_ci_{end}"), "pp").removesuffix(" pp")
        for end in ("low", "high")
    )
    return said + f"{_fmt(ucvr, 'pp')} [{low}, {high}] to its UCVR uplift"


def _past_copies(m: dict[str, Any]) -> str:
    """How many greedy copies decoding past them turned into rewrites, when it did."""
    greedy, copies = m.get("greedy_copy_rate"), m.get("copy_rate")
    if greedy is None or copies is None or greedy <= copies:
        return ""
    return f" (the model's greedy rewrite copied {_fmt(greedy, 'pct')}; decoded past the copy)"


def model_card(report: dict[str, Any], *, title: str, gate: str, lineage: dict[str, str]) -> str:
    """The registered version's card (Markdown): what the model does alone and served, the
    gate's decision with every check, figures on people's grades, sample rewrites a person can
    judge at a glance, and where the model came from."""
    lines = [f"# {title}", "", *headline(report), f"- **gate**: {gate}", ""]
    lines += judged_table(report)
    lines += sample_table(report.get("samples") or [])
    lines += ["## Lineage", "", "| tag | value |", "|---|---|"]
    lines += [f"| {k} | {str(v).replace('|', '/')} |" for k, v in sorted(lineage.items())]
    return "\n".join(lines) + "\n"


def write_report(
    report: dict[str, Any],
    grades: dict[str, dict[str, list[int]]],
    variants: dict[str, str],
    out: Path,
) -> Path:
    """Write report.md and report.html (images inlined) next to the plots."""
    plots: list[tuple[str, Path]] = []
    p = _plot_metrics(report, out / "metrics.png")
    if p:
        plots.append(("Metrics by variant", p))
    p = _plot_grades(grades, out / "grades.png")
    if p:
        plots.append(("Grade distributions", p))
    for name, path in variants.items():
        curve = Path(path) / "grpo_rewards.png"
        if curve.exists():
            dst = out / f"rewards_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.png"
            shutil.copyfile(curve, dst)
            plots.append((f"GRPO reward curves ({name})", dst))

    env = report.get("environment") or {}
    lines = [
        "# Offline evaluation",
        "",
        *headline(report),
        "",
        "## Ablation",
        "",
        ablation_table(report),
        "",
    ]
    lines += judged_table(report)
    lines += sample_table(report.get("samples") or [])
    if env:
        lines += [
            "## Environment",
            "",
            f"- CPU: {env.get('cpu_model')} ({env.get('cpus')} CPUs; "
            f"{', '.join(env.get('cpu_flags') or []) or 'no AVX'}); torch kernels "
            f"{env.get('torch_cpu_capability')}, {env.get('torch_threads')} threads"
            + (f"; GPU {env['gpu']}" if env.get("gpu") else ""),
            "- packages: " + ", ".join(f"{k} {v}" for k, v in (env.get("packages") or {}).items()),
            "",
        ]
    lines += ["## Definitions", "", DEFINITIONS]
    for title, path in plots:
        lines += [f"## {title}", "", f"![{title}]({path.name})", ""]
    md = "\n".join(lines) + "\n"
    (out / "report.md").write_text(md, encoding="utf-8")

    import markdown

    body = markdown.markdown(md, extensions=["tables"])
    for _, path in plots:  # inline the images: the HTML travels alone (KFP HTML artifact)
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        body = body.replace(f'src="{path.name}"', f'src="data:image/png;base64,{data}"')
    html = (
        "<!doctype html><html><head><meta charset='utf-8'><title>qrewrite evaluation</title>"
        "<style>body{font-family:sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
        "td{text-align:right}td:first-child{text-align:left}img{max-width:100%}</style>"
        f"</head><body>{body}</body></html>\n"
    )
    (out / "report.html").write_text(html, encoding="utf-8")
    return out / "report.md"
