"""The query-rewrite pipeline: data -> train -> evaluate-and-promote, inside one MLflow run.

``build_pipeline`` composes the public pipeline from three sub-pipelines. Two choices are made
when the pipeline is built, because they change its graph, not its inputs:

- ``pretrain``: the local preset builds and pretrains a tiny model in the run (no hub access);
  the cluster preset fine-tunes a base model from the workspace volume (``base_model``);
- ``ablation``: also train the single-task SFT model and evaluate it (the ablation table).

Everything else is a run parameter, few and named for what people change: the preset
(``config``: a shipped preset's name, or a whole YAML preset), the data location, the mining
window, the base model, the GPU count and the promotion margin.

How the pipeline is built for a cluster (the cluster profile, retries, the images) is a
``platform.BuildOptions``, passed down to every step's settings.
"""

from pathlib import Path
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, Dataset, Model
from kfp.dsl.graph_component import GraphComponent

from qrewrite_components import (
    build_training_datasets,
    end_mlflow_run,
    evaluate_rewriter,
    grpo_align,
    label_rewrite_pairs,
    mine_search_logs,
    pretrain_small_model,
    promote_champion,
    register_challenger,
    sft_multitask,
    stage_marketplace,
    start_mlflow_run,
    validate_contracts,
)
from qrewrite_pipelines.platform import (
    DEFAULT_BUILD,
    GPU_STEP,
    BuildOptions,
    on_cluster,
    retry,
)

PIPELINE_NAME = "query-rewrite"
COMPILED = Path(__file__).resolve().parent / "compiled" / "query_rewrite_pipeline.yaml"


class DataOutputs(NamedTuple):
    market: Dataset
    mined: Dataset
    labels: Dataset
    datasets: Dataset
    market_contracts: Artifact
    mined_contracts: Artifact
    labels_contracts: Artifact
    dataset_contracts: Artifact


def _data_pipeline(scheduled: bool, options: BuildOptions) -> GraphComponent:
    # kfp.local cannot resolve the schedule-time placeholder; a local run has no schedule anyway
    scheduled_time = dsl.PIPELINE_JOB_SCHEDULE_TIME_UTC_PLACEHOLDER if scheduled else ""

    @dsl.pipeline(name="data", description="Stage, mine, label and build the training sets.")
    def data_pipeline(
        config: str,
        data_source: str,
        window_end: str,
        window_days: int,
        parent_run_id: str,
    ) -> DataOutputs:
        # the export under one path can change between runs: never reuse a staged copy or mining
        staged = stage_marketplace(
            config=config, data_source=data_source, parent_run_id=parent_run_id
        )
        retry(on_cluster(staged, workspace=True, options=options), options=options)
        staged.set_caching_options(False)
        market_ok = validate_contracts(
            data=staged.outputs["market"],
            contracts=["catalog", "search_log"],
            parent_run_id=parent_run_id,
        ).set_display_name("validate-market")
        on_cluster(market_ok, options=options)
        mined = mine_search_logs(
            config=config,
            market=staged.outputs["market"],
            window_end=window_end,
            window_days=window_days,
            scheduled_time=scheduled_time,
            parent_run_id=parent_run_id,
        ).after(market_ok)
        on_cluster(mined, options=options).set_caching_options(False)
        mined_ok = validate_contracts(
            data=mined.outputs["mined"],
            contracts=["rewrite_candidates", "query_stats"],
            parent_run_id=parent_run_id,
        ).set_display_name("validate-mined")
        on_cluster(mined_ok, options=options)
        labeled = label_rewrite_pairs(
            config=config,
            market=staged.outputs["market"],
            mined=mined.outputs["mined"],
            parent_run_id=parent_run_id,
        ).after(mined_ok)
        # the workspace volume holds the embedding cache a scheduled run hands to the next
        on_cluster(labeled, workspace=True, options=options)
        labels_ok = validate_contracts(
            data=labeled.outputs["labels"], contracts=["labeled_pairs"], parent_run_id=parent_run_id
        ).set_display_name("validate-labels")
        on_cluster(labels_ok, options=options)
        built = build_training_datasets(
            config=config,
            market=staged.outputs["market"],
            mined=mined.outputs["mined"],
            labels=labeled.outputs["labels"],
            parent_run_id=parent_run_id,
        ).after(labels_ok)
        on_cluster(built, options=options)
        return DataOutputs(
            market=staged.outputs["market"],
            mined=mined.outputs["mined"],
            labels=labeled.outputs["labels"],
            datasets=built.outputs["datasets"],
            market_contracts=market_ok.outputs["results"],
            mined_contracts=mined_ok.outputs["results"],
            labels_contracts=labels_ok.outputs["results"],
            dataset_contracts=built.outputs["contract_results"],
        )

    return data_pipeline


def _train_pipeline(pretrain: bool, ablation: bool, options: BuildOptions) -> GraphComponent:
    outputs = {"sft_model": Model, "grpo_model": Model}
    if ablation:
        outputs["single_task_model"] = Model
    TrainOutputs = NamedTuple("TrainOutputs", list(outputs.items()))

    @dsl.pipeline(name="train", description="Multi-task SFT, then GRPO on the fused reward.")
    def train_pipeline(
        config: str,
        market: Dataset,
        mined: Dataset,
        labels: Dataset,
        datasets: Dataset,
        base_model: str,
        gpu_count: int,
        parent_run_id: str,
    ) -> TrainOutputs:
        pretrained = None
        if pretrain:
            pre = pretrain_small_model(
                config=config,
                market=market,
                mined=mined,
                datasets=datasets,
                parent_run_id=parent_run_id,
            )
            retry(on_cluster(pre, options=options), 1, options=options)
            pretrained = pre.outputs["model"]

        def sft(tasks: str, name: str):
            task = sft_multitask(
                config=config,
                datasets=datasets,
                base_model_path=base_model,
                tasks=tasks,
                parent_run_id=parent_run_id,
                **({"pretrained": pretrained} if pretrained is not None else {}),
            ).set_display_name(name)
            on_cluster(task, gpus=gpu_count, resources=GPU_STEP, workspace=True, options=options)
            return retry(task, 1, options=options)

        # every task the datasets hold; the ablation drops the tagging task alone
        multi = sft("rewrite,tag,normalize", "sft-multitask")
        aligned = grpo_align(
            config=config,
            datasets=datasets,
            market=market,
            sft_model=multi.outputs["model"],
            labels=labels,
            parent_run_id=parent_run_id,
        )
        on_cluster(aligned, gpus=gpu_count, resources=GPU_STEP, workspace=True, options=options)
        retry(aligned, 1, options=options)
        result = {"sft_model": multi.outputs["model"], "grpo_model": aligned.outputs["model"]}
        if ablation:
            single = sft("rewrite,normalize", "sft-single-task")
            result["single_task_model"] = single.outputs["model"]
        return TrainOutputs(**result)

    return train_pipeline


def _evaluate_and_promote(
    config: str,
    market: Dataset,
    labels: Dataset,
    datasets: Dataset,
    models: dict,
    contracts: dict,
    promotion_margin: float,
    parent_run_id: str,
    *,
    options: BuildOptions,
) -> dsl.PipelineTask:
    """The body of both evaluate-and-promote sub-pipelines; returns the register task."""
    evaluated = evaluate_rewriter(
        config=config,
        market=market,
        datasets=datasets,
        labels=labels,
        parent_run_id=parent_run_id,
        **models,
    )
    retry(on_cluster(evaluated, resources=GPU_STEP, options=options), 1, options=options)
    registered = register_challenger(
        config=config,
        model=models["model"],
        sft_model=models["sft_model"],
        evaluation=evaluated.outputs["evaluation"],
        market=market,
        labels=labels,
        datasets=datasets,
        kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
        parent_run_id=parent_run_id,
        margin=promotion_margin,
        **contracts,
    )
    retry(on_cluster(registered, options=options), options=options)
    with dsl.If(registered.output != "", "gate-passed"):
        promoted = promote_champion(
            config=config, version=registered.output, parent_run_id=parent_run_id
        )
        retry(on_cluster(promoted, options=options), options=options)
    return registered


EVALUATE_DESCRIPTION = (
    "Evaluate against the baselines and the champion; register; promote if the gate passes."
)


def _evaluate_and_promote_pipeline(ablation: bool, options: BuildOptions) -> GraphComponent:
    # built when the pipeline is built (not at import), so the build's options apply
    @dsl.pipeline(name="evaluate-and-promote", description=EVALUATE_DESCRIPTION)
    def evaluate_and_promote_pipeline(
        config: str,
        market: Dataset,
        labels: Dataset,
        datasets: Dataset,
        sft_model: Model,
        grpo_model: Model,
        market_contracts: Artifact,
        mined_contracts: Artifact,
        labels_contracts: Artifact,
        dataset_contracts: Artifact,
        promotion_margin: float,
        parent_run_id: str,
    ) -> str:
        registered = _evaluate_and_promote(
            config,
            market,
            labels,
            datasets,
            {"model": grpo_model, "sft_model": sft_model},
            {
                "market_contracts": market_contracts,
                "mined_contracts": mined_contracts,
                "labels_contracts": labels_contracts,
                "dataset_contracts": dataset_contracts,
            },
            promotion_margin,
            parent_run_id,
            options=options,
        )
        return registered.output

    @dsl.pipeline(name="evaluate-and-promote", description=EVALUATE_DESCRIPTION)
    def evaluate_and_promote_with_ablation_pipeline(
        config: str,
        market: Dataset,
        labels: Dataset,
        datasets: Dataset,
        sft_model: Model,
        grpo_model: Model,
        single_task_model: Model,
        market_contracts: Artifact,
        mined_contracts: Artifact,
        labels_contracts: Artifact,
        dataset_contracts: Artifact,
        promotion_margin: float,
        parent_run_id: str,
    ) -> str:
        registered = _evaluate_and_promote(
            config,
            market,
            labels,
            datasets,
            {"model": grpo_model, "sft_model": sft_model, "single_task_model": single_task_model},
            {
                "market_contracts": market_contracts,
                "mined_contracts": mined_contracts,
                "labels_contracts": labels_contracts,
                "dataset_contracts": dataset_contracts,
            },
            promotion_margin,
            parent_run_id,
            options=options,
        )
        return registered.output

    if ablation:
        return evaluate_and_promote_with_ablation_pipeline
    return evaluate_and_promote_pipeline


def build_pipeline(
    *,
    pretrain: bool = False,
    ablation: bool = False,
    default_config: str = "cluster",
    scheduled: bool = True,
    options: BuildOptions = DEFAULT_BUILD,
) -> GraphComponent:
    """The public pipeline. ``default_config`` is the name of the shipped preset the ``config``
    parameter defaults to (a whole YAML preset can be passed at run time instead; a multi-line
    default would break the compiled file's header). ``scheduled=False`` leaves out the
    schedule-time placeholder, which ``kfp.local`` cannot resolve. ``options`` is how the steps
    are set up: the cluster profile, retries (off for local runs) and the images."""
    preset = default_config
    data_pipeline = _data_pipeline(scheduled, options)
    train_pipeline = _train_pipeline(pretrain, ablation, options)
    evaluate_and_promote = _evaluate_and_promote_pipeline(ablation, options)

    @dsl.pipeline(
        name=PIPELINE_NAME,
        description="Mine rewrites from search logs, multi-task SFT + GRPO, evaluate with a "
        "simulated A/B test, register in MLflow and promote the model when it beats the champion.",
    )
    def query_rewrite_pipeline(
        config: str = preset,
        data_source: str = "synthetic",
        window_end: str = "",
        window_days: int = 28,
        base_model: str = "",
        gpu_count: int = 1,
        promotion_margin: float = 0.0,
    ):
        # the exit task may not depend on other tasks: it finds the MLflow run by the KFP run id
        ended = end_mlflow_run(config=config, kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER)
        retry(on_cluster(ended, options=options), options=options)
        with dsl.ExitHandler(ended, name="mlflow-run"):
            started = start_mlflow_run(
                config=config,
                kfp_run_id=dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                kfp_run_name=dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
                data_source=data_source,
                base_model=base_model,
            )
            retry(on_cluster(started, options=options), options=options)
            data = data_pipeline(
                config=config,
                data_source=data_source,
                window_end=window_end,
                window_days=window_days,
                parent_run_id=started.output,
            )
            trained = train_pipeline(
                config=config,
                market=data.outputs["market"],
                mined=data.outputs["mined"],
                labels=data.outputs["labels"],
                datasets=data.outputs["datasets"],
                base_model=base_model,
                gpu_count=gpu_count,
                parent_run_id=started.output,
            )
            extra = {"single_task_model": trained.outputs["single_task_model"]} if ablation else {}
            evaluate_and_promote(
                config=config,
                market=data.outputs["market"],
                labels=data.outputs["labels"],
                datasets=data.outputs["datasets"],
                sft_model=trained.outputs["sft_model"],
                grpo_model=trained.outputs["grpo_model"],
                market_contracts=data.outputs["market_contracts"],
                mined_contracts=data.outputs["mined_contracts"],
                labels_contracts=data.outputs["labels_contracts"],
                dataset_contracts=data.outputs["dataset_contracts"],
                promotion_margin=promotion_margin,
                parent_run_id=started.output,
                **extra,
            )

    return query_rewrite_pipeline
