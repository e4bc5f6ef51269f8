"""``qrewrite``: one entry point, one subcommand per pipeline step.

Each subcommand builds its step's config (defaults < ``--config`` preset section < ``--set``
overrides < explicit flags), calls the library, and reports in one line per fact. Errors in the
input become one line on stderr and a non-zero exit code, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from qrewrite import __version__
from qrewrite.config import load_config
from qrewrite.errors import (
    ConfigError,
    ContractViolation,
    DataError,
    EnvironmentProblem,
    QrewriteError,
)

log = logging.getLogger("qrewrite")


def _add_config_flags(p: argparse.ArgumentParser, section: str) -> None:
    p.add_argument(
        "--config",
        metavar="PRESET",
        help=f"YAML preset whose '{section}:' section sets this step's options "
        "(e.g. configs/local.yaml)",
    )
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one option of this step (repeatable); values are YAML scalars",
    )


def _with_flags(config: Any, **flags: Any) -> Any:
    for key, value in flags.items():
        if value is not None:
            setattr(config, key, value)
    return config


def cmd_synth(args: argparse.Namespace) -> int:
    from qrewrite.market.simulate import SynthConfig, synthesize

    cfg = _with_flags(
        load_config(SynthConfig, args.config, "synth", args.overrides),
        seed=args.seed,
        scale=args.scale,
    )
    manifest = synthesize(cfg, args.out, progress=not args.no_progress)
    c = manifest["counts"]
    print(
        f"synth: {c['products']:,} products, {c['intents']:,} intents, {c['sessions']:,} sessions,"
        f" {c['searches']:,} searches, {c['impressions']:,} impressions -> {args.out}"
    )
    return 0


def cmd_import_judged(args: argparse.Namespace) -> int:
    from qrewrite.importing.judged import JudgedImportConfig, import_judged

    cfg = _with_flags(
        load_config(JudgedImportConfig, args.config, "import_judged", args.overrides),
        seed=args.seed,
        grade_scale=args.grade_scale,
        query_column=args.query_column,
        product_id_column=args.product_id_column,
        title_column=args.title_column,
        grade_column=args.grade_column,
    )
    manifest = import_judged(cfg, args.input, args.out)
    c = manifest["counts"]
    rejected = sum(c["rows_rejected"].values())
    print(
        f"import-judged: {c['judgments']:,} judgments of {c['queries']:,} queries over "
        f"{c['products']:,} products (scale {manifest['grade_scale']}) -> {args.out}"
    )
    if rejected:
        reasons = ", ".join(f"{k}: {v}" for k, v in c["rows_rejected"].items())
        print(
            f"import-judged: set aside {rejected:,} of {c['rows_read']:,} rows ({reasons}); "
            f"see {Path(args.out) / 'quarantine' / 'judged_rejected.parquet'}"
        )
    return 0


def cmd_mine(args: argparse.Namespace) -> int:
    from qrewrite.mining.config import MiningConfig
    from qrewrite.mining.mine import mine

    cfg = _with_flags(
        load_config(MiningConfig, args.config, "mine", args.overrides),
        start=args.start,
        end=args.end,
    )
    report = mine(cfg, args.data, args.out)
    inp = report["input"]
    cands = ", ".join(f"{k} {v:,}" for k, v in report["candidates"].items())
    print(
        f"mine: {inp['rows_read']:,} impressions, {inp['searches']:,} searches, "
        f"{report['queries']:,} queries -> candidates: {cands} ({report['seconds']:.1f}s)"
    )
    set_aside = {
        **inp["rows_rejected"],
        **({"outside_window": inp["rows_outside_window"]} if inp["rows_outside_window"] else {}),
    }
    if set_aside:
        print(
            "mine: set aside rows: "
            + ", ".join(f"{k} {v:,}" for k, v in set_aside.items())
            + (
                f"; rejected rows in {Path(args.out) / 'quarantine'}"
                if inp["rows_rejected"]
                else ""
            )
        )
    dups = inp["duplicate_impressions"] + inp["duplicate_engaged_events"]
    if dups:
        print(
            f"mine: counted duplicated events once: {inp['duplicate_impressions']:,} impressions,"
            f" {inp['duplicate_engaged_events']:,} engagement events"
        )
    if report["engaged_pairs_with_unknown_product"]:
        print(
            f"mine: {report['engaged_pairs_with_unknown_product']:,} (query, product) engagements"
            " name products missing from the catalog; they give no engaged_title candidates"
        )
    print(
        f"mine: wrote {args.out}/rewrite_candidates.parquet, query_stats.parquet, "
        "mining_report.json; read mining_report.md"
    )
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from qrewrite.contracts import available_contracts, validate_path

    if args.list:
        print("\n".join(available_contracts()))
        return 0
    if not args.contract or not args.data:
        raise QrewriteError("validate: --contract and --data are required (or --list)")
    result = validate_path(args.contract, args.data, args.report, max_rows=args.max_rows)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, default=str))
    if not result.success:
        raise ContractViolation(result.summary_line())
    if not args.json:
        print(result.summary_line())
        if args.report:
            print(
                f"validate: report {Path(args.report) / (args.contract + '.md')}, "
                f"Data Docs {result.data_docs}"
            )
    return 0


def cmd_label(args: argparse.Namespace) -> int:
    from qrewrite.labeling.label import LabelConfig, label

    cfg = _with_flags(
        load_config(LabelConfig, args.config, "label", args.overrides), backend=args.backend
    )
    report = label(cfg, args.data, args.candidates, args.out)
    grades = ", ".join(f"{g}: {n:,}" for g, n in report["grades"].items())
    print(
        f"label: {report['pairs_labeled']:,} pairs graded by {report['backend']} in "
        f"{report['seconds']:.1f}s ({report['pairs_per_second']:,} pairs/s; encoder load "
        f"{report['encoder']['load_seconds']:.1f}s) -> {args.out} (grades {grades})"
    )
    if report["set_aside"]:
        reasons = ", ".join(f"{k}: {v}" for k, v in report["set_aside"].items())
        print(
            f"label: set aside {sum(report['set_aside'].values()):,} pairs ({reasons}); see "
            f"{report['set_aside_file']}"
        )
    if report["llm"] and report["llm"]["fell_back_to_teacher"]:
        llm = report["llm"]
        reasons = "; ".join(f"{k} ({v})" for k, v in list(llm["failure_reasons"].items())[:3])
        print(
            f"label: the llm endpoint could not grade {llm['fell_back_to_teacher']:,} pairs; "
            f"the teacher graded them (backend column says which): {reasons}"
        )
    if report["truncated_to_chars"]["pairs"]:
        print(
            f"label: {report['truncated_to_chars']['pairs']:,} pairs had text longer than "
            f"{report['truncated_to_chars']['limit']} characters, graded on the first "
            f"{report['truncated_to_chars']['limit']}"
        )
    return 0


def cmd_label_eval(args: argparse.Namespace) -> int:
    from qrewrite.labeling.evaluate import evaluate_labels, metrics_markdown

    result = evaluate_labels(args.data, args.labels)
    summary = metrics_markdown(result)
    if args.report:
        out = Path(args.report)
        out.mkdir(parents=True, exist_ok=True)
        (out / "label_eval.json").write_text(json.dumps(result, indent=2) + "\n")
        (out / "label_eval.md").write_text(summary)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(summary, end="")
    return 0


def cmd_build_datasets(args: argparse.Namespace) -> int:
    from qrewrite.training.datasets import DatasetConfig, build_datasets

    cfg = load_config(DatasetConfig, args.config, "build_datasets", args.overrides)
    report = build_datasets(cfg, args.data, args.mined, args.labels, args.out, args.report)
    a, e = report["task_a"], report["sft_examples"]
    print(
        f"build-datasets: rewrite task {a['kept_after_per_query_cap']:,} examples "
        f"({a['graded_relevant']:,} graded relevant, {a['without_conversion_evidence']:,} "
        "without conversion evidence, "
        + ("kept" if a["kept_without_conversion_evidence"] else "set aside")
        + "); tagging task "
        f"{report['task_b']['kept']:,} examples; GRPO prompts "
        f"{report['grpo_prompts']['train']:,} train / {report['grpo_prompts']['eval']:,} eval"
    )
    print(
        f"build-datasets: split by query: train {e['train'].get('rewrite', 0):,} + "
        f"{e['train'].get('tag', 0):,}, eval {e['eval'].get('rewrite', 0):,} + "
        f"{e['eval'].get('tag', 0):,} (rewrite + tag) -> {args.out}/sft, {args.out}/grpo; "
        f"read {args.out}/dataset_report.md"
    )
    return 0


def cmd_pretrain(args: argparse.Namespace) -> int:
    from qrewrite.training.pretrain import PretrainConfig, pretrain

    cfg = load_config(PretrainConfig, args.config, "pretrain", args.overrides)
    r = pretrain(cfg, args.data, args.mined, args.out, args.datasets, not args.no_progress)
    print(
        f"pretrain: {r['parameters']:,}-parameter Qwen2, vocab {r['vocab_size']:,}, "
        f"{r['corpus_texts']:,} texts + {r['denoising_pairs']:,} denoising pairs, "
        f"{r['steps']} steps in {r['train_seconds']} s; loss "
        f"{r['loss_first_20pct']:.3f} -> {r['loss_last_20pct']:.3f} -> {args.out}"
    )
    return 0


def cmd_sft(args: argparse.Namespace) -> int:
    from qrewrite.training.sft import SFTStepConfig, sft

    cfg = _with_flags(
        load_config(SFTStepConfig, args.config, "sft", args.overrides),
        base_model=args.base_model,
    )
    r = sft(cfg, args.datasets, args.out, not args.no_progress)
    print(
        f"sft: {r['steps']} steps on {r['train_examples']:,} examples ({', '.join(r['tasks'])}) "
        f"in {r['train_seconds']} s; loss {r['loss_first_20pct']:.3f} -> "
        f"{r['loss_last_20pct']:.3f}, held-out loss {r['eval_loss']:.3f} -> {args.out}"
    )
    t = r["tagging"]
    if t:
        print(
            f"sft: relevance tagging on {int(t['pairs'])} held-out pairs: accuracy "
            f"{t['tagging_accuracy']:.3f} (majority class {t['majority_accuracy']:.3f}), "
            f"macro-F1 {t['tagging_macro_f1']:.3f} (majority {t['majority_macro_f1']:.3f})"
        )
    print(f"sft: MLflow run {r['mlflow_run_id']}")
    return 0


def cmd_grpo(args: argparse.Namespace) -> int:
    from qrewrite.training.grpo import GRPOStepConfig, grpo

    cfg = _with_flags(
        load_config(GRPOStepConfig, args.config, "grpo", args.overrides), model=args.model
    )
    r = grpo(cfg, args.datasets, args.data, args.out, args.labels, not args.no_progress)
    print(
        f"grpo: {r['steps']} steps in {r['train_seconds']} s; mean total reward "
        f"{r['reward_first_20pct']:.3f} (first 20% of steps) -> {r['reward_last_20pct']:.3f} "
        f"(last 20%) -> {args.out}"
    )
    parts = ", ".join(
        f"{n} {v['first_20pct']:.2f}->{v['last_20pct']:.2f}" for n, v in r["rewards"].items()
    )
    print(f"grpo: rewards {parts}; MLflow run {r['mlflow_run_id']}")
    return 0


def _model_dir(uri: str, tracking_uri: str) -> tuple[Path, str]:
    from qrewrite.registry.registry import resolve_model_dir

    return resolve_model_dir(uri, tracking_uri)


def _named(spec: str) -> tuple[str, str]:
    name, sep, uri = spec.partition("=")
    if not sep or not name or not uri:
        raise ConfigError(f"--baseline {spec!r}: expected NAME=PATH_OR_URI")
    return name, uri


def cmd_evaluate(args: argparse.Namespace) -> int:
    from qrewrite.evaluation.evaluate import EvaluateConfig, evaluate
    from qrewrite.evaluation.report import ablation_table
    from qrewrite.registry.registry import CHAMPION, resolve_champion

    cfg = load_config(EvaluateConfig, args.config, "evaluate", args.overrides)
    specs = [_named(b) for b in args.baseline] + [(args.name, args.model)]
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ConfigError(f"evaluate: variant names repeat ({', '.join(names)}); name each once")
    variants: dict[str, str] = {}
    refs: dict[str, str] = {}
    for name, uri in specs:
        path, refs[name] = _model_dir(uri, cfg.tracking_uri)
        variants[name] = str(path)
    champion = resolve_champion(args.champion, cfg.tracking_uri) if args.champion else None
    if champion is not None:
        variants[CHAMPION], refs[CHAMPION] = str(champion[0]), champion[1]
    report = evaluate(
        cfg,
        args.data,
        args.datasets,
        variants,
        args.out,
        args.labels,
        args.name,
        not args.no_progress,
        model_refs=refs,  # registry URIs pinned to versions, not cache folders
    )
    print(
        f"evaluate: {report['held_out_queries']:,} held-out queries, variants: "
        + ", ".join(report["variants"])
    )
    print(ablation_table(report))
    print(
        f"evaluate: report {args.out}/report.md (and report.html), metrics {args.out}/metrics.json"
    )
    return 0


def _registry_config(args: argparse.Namespace) -> Any:
    from qrewrite.registry.registry import RegistryConfig

    return _with_flags(
        load_config(RegistryConfig, args.config, "registry", args.overrides),
        registered_model=getattr(args, "registered_model", None),
    )


def cmd_register(args: argparse.Namespace) -> int:
    from qrewrite.registry.registry import lineage, register

    cfg = _registry_config(args)
    model = Path(args.model)
    tags = lineage(
        model,
        Path(args.data) if args.data else None,
        Path(args.datasets) if args.datasets else None,
        Path(args.config) if args.config else None,
        Path(args.contracts) if args.contracts else None,
        args.pipeline_run_id,
    )
    r = register(
        cfg, model, args.metrics, tags, args.report, data_dir=args.data, labels=args.labels
    )
    what = "registered" if r.created else "already registered"
    print(f"register: {what} {r.name} version {r.version} (alias challenger)")
    verdict = "promoted to champion" if r.decision.promote else "not promoted"
    print(f"register: gate: {verdict}: {r.decision.reason}")
    print(f"register: {r.name}@champion = {r.champion or 'none'}")
    return 0


def cmd_promote(args: argparse.Namespace) -> int:
    from qrewrite.registry.registry import promote

    cfg = _registry_config(args)
    previous = promote(cfg, args.version, args.reason)
    print(
        f"promote: {cfg.registered_model}@champion = version {args.version} "
        f"(previous: {previous or 'none'}; `qrewrite rollback` returns to it)"
    )
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    from qrewrite.registry.registry import rollback

    cfg = _registry_config(args)
    old, new = rollback(cfg)
    print(f"rollback: {cfg.registered_model}@champion = version {new} (was {old})")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from qrewrite.registry.registry import registry_summary

    cfg = _registry_config(args)
    s = registry_summary(cfg)
    print(
        f"models: {s['name']}: champion {s['champion'] or 'none'}, challenger "
        f"{s['challenger'] or 'none'}, earlier champions {s['history'] or 'none'}"
    )
    missing = [a for a in args.require_alias if not s.get(a)]
    if missing:
        raise ConfigError(
            f"{s['name']} has no {', '.join(missing)} alias; `qrewrite register` sets it when the "
            "gate passes (see the version's gate tag), `qrewrite promote` by hand"
        )
    return 0


def cmd_rewrite(args: argparse.Namespace) -> int:
    from qrewrite.serving.export import RewriteConfig, export_rewrites

    cfg = _with_flags(
        load_config(RewriteConfig, args.config, "rewrite", args.overrides),
        tracking_uri=args.tracking_uri,
    )
    from qrewrite.registry.registry import resolve_model

    model = resolve_model(args.model, cfg.tracking_uri)
    s = export_rewrites(
        cfg,
        model.path,
        args.queries,
        args.out,
        model_ref=model.pinned,
        progress=not args.no_progress,
        data_dir=args.data,
        labels=args.labels,
        policy_dir=model.policy_dir,
    )
    aside = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in s["set_aside"].items() if v)
    print(
        f"rewrite: {s['queries']:,} queries -> {s['rows']:,} rewrites "
        f"({s['queries_without_rewrite']} queries without one, {s['queries_served']} served "
        f"by the policy {s['policy_source']}: {s['policy']}) in {s['seconds']} s "
        f"({s['queries_per_second']} queries/s) with {model.pinned} -> {args.out}"
        + (f"; set aside: {aside}" if aside else "")
    )
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    if not args.local:
        raise ConfigError(
            "run: only --local runs here; on a cluster use `qrewrite submit --host URL` "
            "(or upload pipelines/compiled/query_rewrite_pipeline.yaml in the Kubeflow UI)"
        )
    from qrewrite.evaluation.report import ablation_table
    from qrewrite_pipelines.local import LocalRun, run_local

    run = LocalRun(
        config=args.config,
        out=args.out,
        scale=args.scale or "",
        data_source=args.data_source,
        window_end=args.window_end or "",
        window_days=args.window_days,
        base_model=args.base_model or "",
        promotion_margin=args.promotion_margin,
        ablation=args.ablation,
        runner=args.runner,
    )
    r = run_local(run)
    minutes, seconds = divmod(round(r.seconds), 60)
    print(f"run: pipeline finished in {minutes} min {seconds} s (kfp.local, {args.runner})")
    evaluation = r.outputs.get("evaluation")
    if evaluation is not None and (evaluation / "metrics.json").exists():
        print(ablation_table(json.loads((evaluation / "metrics.json").read_text())))
    reg = r.registry
    if reg["champion"]:
        model = f"models:/{reg['name']}@champion = version {reg['champion']}"
    else:
        model = f"no champion: version {reg['challenger']} is the challenger; gate: "
        model += reg["challenger_gate"] or "not decided"
    print(f"run: registry   {model}")
    if reg["champion"] and "mined" in r.outputs:
        # the champion carries its serving policy and teacher: nothing else to pass
        print(
            "run: serve      qrewrite rewrite --model models:/query-rewriter@champion --queries "
            f"{r.outputs['mined'] / 'query_stats.parquet'} --out rewrites.parquet"
        )
    if "report" in r.outputs:
        print(f"run: report     {r.outputs['report']} (HTML; report.md beside the metrics)")
    if "evaluation" in r.outputs:
        print(f"run: metrics    {r.outputs['evaluation'] / 'metrics.json'}")
    print(f"run: artifacts  {r.run_dir} (also {Path(args.out) / 'latest'})")
    print(f"run: MLflow     {r.tracking_uri}  (mlflow ui --backend-store-uri {r.tracking_uri})")
    return 0


def cmd_compile(args: argparse.Namespace) -> int:
    from qrewrite_pipelines.cluster import compile_pipeline
    from qrewrite_pipelines.query_rewrite import COMPILED

    path = compile_pipeline(
        args.out or COMPILED,
        args.image_registry,
        args.image_tag,
        args.ablation,
        args.preset,
        args.profile,
    )
    print(f"compile: wrote {path}; upload it in the Kubeflow UI or run `qrewrite submit`")
    return 0


def _target(args: argparse.Namespace) -> Any:
    import yaml

    from qrewrite_pipelines.cluster import ClusterTarget
    from qrewrite_pipelines.query_rewrite import COMPILED

    arguments: dict[str, Any] = {}
    for item in args.param:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param {item!r}: expected NAME=VALUE")
        if raw.startswith("@"):  # a whole file, e.g. --param config=@my-preset.yaml
            try:
                raw = Path(raw[1:]).read_text(encoding="utf-8")
            except OSError as e:
                raise ConfigError(f"--param {key}: cannot read {raw[1:]} ({e.strerror})") from e
        try:
            value = yaml.safe_load(raw) if raw else ""
        except yaml.YAMLError:  # not YAML at all: a plain string
            value = raw
        # numbers and booleans typed; a YAML document (a preset's text) stays text
        arguments[key.strip()] = raw if isinstance(value, dict | list) else value
    return ClusterTarget(
        host=args.host,
        experiment=args.experiment,
        namespace=args.namespace,
        package=args.package or str(COMPILED),
        arguments=arguments,
        existing_token=args.token,
        service_account=args.service_account or None,
    )


def cmd_submit(args: argparse.Namespace) -> int:
    from qrewrite_pipelines.cluster import submit_run, wait_for_run

    target = _target(args)
    run_id = submit_run(target, args.run_name)
    print(f"submit: started run {run_id} in experiment {args.experiment} at {args.host}")
    if args.wait:
        print(f"submit: waiting up to {args.wait} s for run {run_id}", flush=True)
        print(f"submit: run {run_id} {wait_for_run(target, run_id, args.wait)}")
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    from qrewrite_pipelines.cluster import kfp_cron, schedule_runs

    job = schedule_runs(_target(args), args.cron, args.name)
    print(
        f"schedule: recurring run {job} ({kfp_cron(args.cron)}, one at a time, no catch-up) in "
        f"experiment {args.experiment} at {args.host}"
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qrewrite",
        description="Mine search logs, train and evaluate an LLM query rewriter for e-commerce "
        "search. Each subcommand is one pipeline step; see docs/architecture.md.",
    )
    parser.add_argument("--version", action="version", version=f"qrewrite {__version__}")
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging verbosity on stderr (default WARNING)",
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the Python traceback of unexpected errors"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "synth",
        help="generate a seeded synthetic marketplace (catalog, search log, truth)",
        description="Generate a seeded synthetic shop: catalog, search_log and truth/ as parquet "
        "(schemas in docs/data.md). The same seed and scale give the same bytes.",
    )
    p.add_argument("--out", required=True, help="output directory (created if missing)")
    p.add_argument("--seed", type=int, help="random seed (default 7)")
    p.add_argument(
        "--scale",
        choices=["tiny", "demo", "large", "huge"],
        help="tiny: tests, seconds; demo (default): ~0.6M impressions; large: ~10M; huge: ~100M "
        "written in chunks with bounded memory",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_flags(p, "synth")
    p.set_defaults(func=cmd_synth)

    p = sub.add_parser(
        "import-judged",
        help="convert an ESCI/WANDS/Kaggle-shaped judged file into catalog + search_log + truth",
        description="Convert a relevance-judgment file (TSV/CSV/parquet with query, product id, "
        "product title, grade) into the catalog + search_log + truth schema, replaying each "
        "query with grade-driven engagement (docs/data.md#judged-import).",
    )
    p.add_argument("--input", required=True, help="the judged file (.tsv, .csv or .parquet)")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument(
        "--grade-scale",
        help="esci (E/S/C/I), wands (Exact/Partial/Irrelevant), numeric:MIN:MAX, or auto "
        "(default; detects label scales, numeric grades need their declared range)",
    )
    p.add_argument("--query-column", help="column holding the query (default: detected)")
    p.add_argument("--product-id-column", help="column holding the product id (default: detected)")
    p.add_argument("--title-column", help="column holding the product title (default: detected)")
    p.add_argument("--grade-column", help="column holding the judgment (default: detected)")
    p.add_argument("--seed", type=int, help="seed of the replayed engagement (default 7)")
    _add_config_flags(p, "import_judged")
    p.set_defaults(func=cmd_import_judged)

    p = sub.add_parser(
        "mine",
        help="mine rewrite candidates and query stats from a search log (DuckDB)",
        description="Mine DIR/search_log.parquet and DIR/catalog.parquet with DuckDB: session "
        "reformulations, co-engagement and engaged titles -> rewrite_candidates.parquet; "
        "per-query statistics -> query_stats.parquet; mining_report.json with every count, "
        "mining_report.md to read.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="directory with catalog.parquet and "
        "search_log.parquet (output of synth or import-judged)",
    )
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--start", help="first day of the time window, inclusive (YYYY-MM-DD)")
    p.add_argument("--end", help="end of the time window, exclusive (YYYY-MM-DD)")
    _add_config_flags(p, "mine")
    p.set_defaults(func=cmd_mine)

    p = sub.add_parser(
        "validate",
        help="check a table against its data contract (Great Expectations)",
        description="Validate a parquet table against data_contracts/NAME.json. Exits 4 and "
        "names each failed expectation when the contract is broken.",
    )
    p.add_argument("--contract", help="contract name (see --list)")
    p.add_argument("--data", help="the parquet file to check")
    p.add_argument("--report", help="directory for NAME.md, NAME.json and a Data Docs site")
    p.add_argument(
        "--max-rows",
        type=int,
        default=5_000_000,
        help="validate an evenly spread sample of row groups above this many rows "
        "(default 5,000,000; the report says when it sampled)",
    )
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument("--list", action="store_true", help="list the known contracts and exit")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser(
        "label",
        help="grade mined (query, rewrite) and (query, title) pairs: 2 relevant, 1 partial, 0 not",
        description="Grade the pairs of a rewrite_candidates file by the guideline in "
        "docs/labeling.md and write labeled_pairs (parquet) with per-grade probabilities and the "
        "signals each grade rests on, plus OUT.report.json. The default backend, teacher, runs "
        "on a CPU with no ground truth: a lexicon mined from the catalog, a bundled sentence "
        "encoder, and behaviour from mining.",
    )
    p.add_argument(
        "--data",
        required=True,
        help="the synth or import-judged output directory (its catalog is read)",
    )
    p.add_argument("--candidates", required=True, help="rewrite_candidates.parquet from mine")
    p.add_argument("--out", required=True, help="the labeled_pairs parquet file to write")
    p.add_argument(
        "--backend",
        choices=["teacher", "llm"],
        help="teacher (default: CPU, no model server) or llm (an OpenAI-compatible chat endpoint "
        "set with --set llm_endpoint=URL --set llm_model=NAME; key from $QREWRITE_LLM_API_KEY)",
    )
    _add_config_flags(p, "label")
    p.set_defaults(func=cmd_label)

    p = sub.add_parser(
        "label-eval",
        help="measure relevance labels against the ground truth (accuracy, macro-F1, kappa)",
        description="Compare a labels table (query, rewrite, grade 0/1/2, optional product_id "
        "for (query, title) pairs and source) with the truth of a synth or import-judged "
        "directory: accuracy, macro-F1, Cohen's kappa, confusion matrix, Spearman, overall, per "
        "pair kind and per source. Definitions: docs/labeling.md.",
    )
    p.add_argument("--data", required=True, help="the synth or import-judged output directory")
    p.add_argument("--labels", required=True, help="the labels parquet file")
    p.add_argument("--report", help="also write label_eval.md and label_eval.json here")
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.set_defaults(func=cmd_label_eval)
    p = sub.add_parser(
        "build-datasets",
        help="build the SFT mixture (rewrite + relevance tagging) and GRPO prompts, split by query",
        description="From labeled pairs, mined candidates and query stats: task A (query -> "
        "rewrite, relevant rewrites with conversion evidence only), task B ((query, rewrite) -> "
        "grade, balanced) and GRPO prompts with the products their rewards need; split by "
        "query; saved as HF datasets OUT/sft and OUT/grpo, each checked by its data contract.",
    )
    p.add_argument("--data", required=True, help="the synth or import-judged output directory")
    p.add_argument("--mined", required=True, help="the mine output directory")
    p.add_argument("--labels", required=True, help="labeled_pairs.parquet from label")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--report", help="directory for the contract reports (default OUT/contracts)")
    _add_config_flags(p, "build_datasets")
    p.set_defaults(func=cmd_build_datasets)
    p = sub.add_parser(
        "pretrain",
        help="train a tokenizer and a small Qwen2 on the shop's titles and queries (local preset)",
        description="Train a byte-level BPE tokenizer and a small Qwen2 model from a config on "
        "catalog titles, mined queries and rewrites (eval-split queries left out), and save a "
        "model directory that sft starts from. The cluster preset starts from a real instruct "
        "model instead.",
    )
    p.add_argument("--data", required=True, help="the synth or import-judged output directory")
    p.add_argument("--mined", required=True, help="the mine output directory")
    p.add_argument("--datasets", help="build-datasets output: its eval queries are left out")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_flags(p, "pretrain")
    p.set_defaults(func=cmd_pretrain)
    p = sub.add_parser(
        "sft",
        help="multi-task supervised fine-tuning (TRL SFTTrainer, optional LoRA)",
        description="Fine-tune a local base model on DATASETS/sft: loss on completions only, "
        "checkpoints in OUT/checkpoints and resume after a kill, metrics to MLflow "
        "($MLFLOW_TRACKING_URI, $MLFLOW_RUN_ID), tagging accuracy vs the majority class on "
        "held-out pairs, and a merged model in OUT.",
    )
    p.add_argument("--datasets", required=True, help="build-datasets output directory")
    p.add_argument("--base-model", help="local model directory (default: sft.base_model)")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_flags(p, "sft")
    p.set_defaults(func=cmd_sft)
    p = sub.add_parser(
        "grpo",
        help="GRPO alignment on the fused relevance + conversion + rules reward (TRL)",
        description="Align the SFT model with TRL's GRPOTrainer on DATASETS/grpo. Rewards "
        "(docs/training.md): relevance by a frozen judge, hit rate and increment by the lexical "
        "engine over the catalog, and rules; weights in grpo.reward_weights.",
    )
    p.add_argument("--datasets", required=True, help="build-datasets output directory")
    p.add_argument("--data", required=True, help="the synth or import-judged output directory")
    p.add_argument("--model", help="the SFT model directory (default: grpo.model)")
    p.add_argument("--labels", help="labeled_pairs.parquet, for judge=teacher's learned synonyms")
    p.add_argument("--out", required=True, help="model directory to write")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_flags(p, "grpo")
    p.set_defaults(func=cmd_grpo)
    p = sub.add_parser(
        "evaluate",
        help="offline evaluation, simulated A/B test and ablation on held-out queries",
        description="Rewrite the held-out queries (never seen in training) with each model and "
        "measure relevance, increment, hit rate, nDCG@10, recall@100, tagging, copy and speed; on "
        "synthetic data also replay held-out shoppers in a simulated A/B test (UCVR, CTR uplift "
        "with bootstrap intervals). Writes metrics.json, report.md, report.html and plots "
        "(definitions in docs/evaluation.md).",
    )
    p.add_argument("--data", required=True, help="the synth or import-judged output directory")
    p.add_argument("--datasets", required=True, help="build-datasets output (its eval split)")
    p.add_argument("--model", required=True, help="model directory or models:/NAME@ALIAS URI")
    p.add_argument("--name", default="candidate", help="the model's row in the table")
    p.add_argument(
        "--baseline",
        action="append",
        default=[],
        metavar="NAME=PATH_OR_URI",
        help="another model to compare (repeatable): the ablation's variants",
    )
    p.add_argument(
        "--champion",
        metavar="REGISTERED_MODEL",
        help="also evaluate models:/REGISTERED_MODEL@champion when the alias is set",
    )
    p.add_argument("--labels", help="labeled_pairs.parquet (the teacher's learned synonyms)")
    p.add_argument("--out", required=True, help="output directory for the report")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    _add_config_flags(p, "evaluate")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser(
        "register",
        help="log the model to MLflow, register it as challenger, and gate it against champion",
        description="Log a pyfunc model (weights, tokenizer, signature, the serving policy its "
        "evaluation measured and the teacher that policy vets with) with lineage and metrics, "
        "register it (once per trained model) with alias challenger, and move alias champion to "
        "it when it beats the champion on the primary metric (registry.primary_metric) without "
        "losing more than registry.relevance_tolerance of relevance rate.",
    )
    p.add_argument("--model", required=True, help="the trained model directory")
    p.add_argument("--metrics", required=True, help="metrics.json from evaluate")
    p.add_argument("--report", help="report.md from evaluate, logged with the model")
    p.add_argument(
        "--data",
        help="data directory: its manifest's hash (lineage), and the catalog of the teacher "
        "the serving policy vets with",
    )
    p.add_argument("--labels", help="labeled_pairs.parquet: the teacher's learned synonyms")
    p.add_argument("--datasets", help="build-datasets output (lineage)")
    p.add_argument("--contracts", help="directory of contract reports (lineage)")
    p.add_argument("--pipeline-run-id", help="the KFP run id, when run by the pipeline")
    p.add_argument("--registered-model", help="registered model name (default query-rewriter)")
    _add_config_flags(p, "registry")
    p.set_defaults(func=cmd_register)
    p = sub.add_parser(
        "promote",
        help="make a registered version the champion by hand",
        description="Point alias champion at VERSION and record the previous champion, "
        "so that `qrewrite rollback` can return to it.",
    )
    p.add_argument("--version", required=True, help="model version number")
    p.add_argument("--reason", default="promoted by hand", help="recorded on the version")
    p.add_argument("--registered-model", help="registered model name (default query-rewriter)")
    _add_config_flags(p, "registry")
    p.set_defaults(func=cmd_promote)
    p = sub.add_parser(
        "rollback",
        help="point champion back at the previous champion",
        description="Move alias champion back to the version that held it before.",
    )
    p.add_argument("--registered-model", help="registered model name (default query-rewriter)")
    _add_config_flags(p, "registry")
    p.set_defaults(func=cmd_rollback)
    p = sub.add_parser(
        "models",
        help="show the registered model's champion, challenger and champion history",
        description="Print the aliases and the champion history of the registered model; with "
        "--require-alias, exit 3 when an alias is not set (for scripts).",
    )
    p.add_argument("--registered-model", help="registered model name (default query-rewriter)")
    p.add_argument(
        "--require-alias",
        action="append",
        default=[],
        choices=["champion", "challenger"],
        help="fail (exit 3) unless this alias is set",
    )
    _add_config_flags(p, "registry")
    p.set_defaults(func=cmd_models)
    p = sub.add_parser(
        "rewrite",
        help="batch rewrite export: query -> top-k rewrites table for an online cache",
        description="Rewrite every query of a text file (one per line) or a CSV/parquet file "
        "with a 'query' column, in batches, and write a parquet table (query, rank, rewrite, "
        "score, grade, p_relevant, served) with a JSON summary next to it. A registered model "
        "(models:/...) serves with the policy and teacher it was registered with, the ones its "
        "evaluation measured; --set vet=model|teacher|both overrides the policy.",
    )
    p.add_argument("--model", required=True, help="model directory or models:/NAME@ALIAS URI")
    p.add_argument("--queries", required=True, help="queries file (.txt, .csv or .parquet)")
    p.add_argument("--out", required=True, help="output parquet file")
    p.add_argument(
        "--data",
        help="with --set vet=teacher|both: the synth or import-judged directory whose catalog "
        "the teacher reads (a registered model carries its own)",
    )
    p.add_argument("--labels", help="with --data: labeled_pairs.parquet, the teacher's synonyms")
    p.add_argument(
        "--tracking-uri", help="MLflow tracking URI for models:/ URIs (default: env, then preset)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_config_flags(p, "rewrite")
    p.set_defaults(func=cmd_rewrite)

    p = sub.add_parser(
        "run",
        help="run the whole pipeline locally through kfp.local (the demo)",
        description="Run the Kubeflow pipeline on this machine with kfp.local's subprocess "
        "runner: stage the data, mine, label, build datasets, pretrain (local preset), SFT, "
        "GRPO, evaluate, register and promote. Prints the ablation table and where the report, "
        "the MLflow store and the registered model are.",
    )
    p.add_argument("--local", action="store_true", help="run with kfp.local (required here)")
    p.add_argument(
        "--config",
        default="local",
        metavar="PRESET",
        help="preset YAML file, or the name of a shipped one (local, cluster); default local",
    )
    p.add_argument("--out", default="out/demo", help="run directory (artifacts, MLflow store)")
    p.add_argument(
        "--scale", choices=["tiny", "demo", "large", "huge"], help="synthetic marketplace size"
    )
    p.add_argument(
        "--data-source",
        default="synthetic",
        help="'synthetic' or a directory with catalog.parquet and search_log.parquet",
    )
    p.add_argument("--window-end", help="mine the log up to this date (ISO, exclusive)")
    p.add_argument(
        "--window-days", type=int, default=0, help="days of log before --window-end (0: all)"
    )
    p.add_argument("--base-model", help="fine-tune this model directory instead of pretraining")
    p.add_argument(
        "--promotion-margin", type=float, help="gate margin (default: the preset's registry.margin)"
    )
    p.add_argument(
        "--ablation",
        action="store_true",
        help="also train and evaluate the single-task SFT model (about 2.5 more minutes)",
    )
    p.add_argument(
        "--runner",
        default="subprocess",
        choices=["subprocess", "docker"],
        help="subprocess: every step in this Python environment; docker: every step in the "
        "runtime image (`make images` first), as on a cluster",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "compile",
        help="write the pipeline package for the Kubeflow UI",
        description="Compile the cluster pipeline (cluster preset as the config default) to "
        "pipelines/compiled/query_rewrite_pipeline.yaml.",
    )
    p.add_argument("--out", default=None, help="output YAML (default: the checked-in package)")
    p.add_argument(
        "--preset",
        default="cluster",
        help="shipped preset (configs/NAME.yaml) the config parameter defaults to",
    )
    p.add_argument("--image-registry", help="registry of the component images")
    p.add_argument("--image-tag", help="tag of the component images (default: the version)")
    p.add_argument("--ablation", action="store_true", help="also train the single-task model")
    p.add_argument(
        "--profile",
        default="gpu",
        choices=["gpu", "kind"],
        help="gpu: training on GPU nodes (the checked-in package); kind: no GPUs, small steps, "
        "for a local kind cluster (k8s/kind/e2e.sh)",
    )
    p.set_defaults(func=cmd_compile)

    for name, helptext in (
        ("submit", "start one pipeline run on a Kubeflow Pipelines cluster"),
        ("schedule", "create a recurring retrain on a Kubeflow Pipelines cluster"),
    ):
        p = sub.add_parser(name, help=helptext, description=helptext + ".")
        p.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080")
        p.add_argument("--experiment", default="query-rewrite", help="KFP experiment name")
        p.add_argument("--namespace", help="Kubeflow profile namespace (multi-user installs)")
        p.add_argument("--token", help="bearer token for the KFP API (e.g. kubectl create token)")
        p.add_argument(
            "--service-account",
            default="qrewrite-pipeline-runner",
            help="Kubernetes service account the steps run as (k8s/base/pipeline/rbac.yaml); "
            "'' for the installation's default",
        )
        p.add_argument(
            "--package",
            default=None,
            help="compiled pipeline (default pipelines/compiled/query_rewrite_pipeline.yaml)",
        )
        p.add_argument(
            "--param",
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help="pipeline parameter (repeatable): data_source, window_end, window_days, "
            "base_model, gpu_count, promotion_margin",
        )
        if name == "submit":
            p.add_argument("--run-name", help="name of the run in the KFP UI")
            p.add_argument(
                "--wait",
                type=int,
                default=0,
                metavar="SECONDS",
                help="wait for the run to end; exit non-zero unless it succeeded",
            )
            p.set_defaults(func=cmd_submit)
        else:
            p.add_argument(
                "--cron",
                required=True,
                help="when to retrain, e.g. '0 3 * * *' (03:00 daily); each run mines the "
                "window_days before its scheduled date",
            )
            p.add_argument("--name", default="query-rewrite-retrain", help="recurring run name")
            p.set_defaults(func=cmd_schedule)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level), format="%(levelname)s %(name)s: %(message)s"
    )
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except QrewriteError as e:
        print(f"qrewrite {args.command}: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print(f"qrewrite {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # a path that is not there is the input's fault; the rest the machine's
        if args.debug:
            raise
        where = f" ({e.filename})" if e.filename else ""
        if isinstance(e, FileNotFoundError | IsADirectoryError | NotADirectoryError):
            print(f"qrewrite {args.command}: error: {e.strerror}{where}", file=sys.stderr)
            return DataError.exit_code
        print(
            f"qrewrite {args.command}: environment error: {e.strerror or e}{where}",
            file=sys.stderr,
        )
        return EnvironmentProblem.exit_code
    except Exception as e:  # a bug, not bad input: say so in one line, traceback on request
        if args.debug:
            raise
        print(
            f"qrewrite {args.command}: internal error: {type(e).__name__}: {e} "
            "(rerun with --debug for the traceback and report it)",
            file=sys.stderr,
        )
        return 70


if __name__ == "__main__":
    sys.exit(main())
