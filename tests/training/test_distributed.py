"""More than one process (training/distributed.py, options.DistributedOptions): the preset keys,
the strategies' trainer arguments from the shipped files, the mistakes refused before anything
loads, and what only the main process of a distributed run does (log to MLflow). The training
itself with two processes: test_distributed_sft.py."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from qrewrite.config import load_config
from qrewrite.errors import ConfigError
from qrewrite.training.common import run_identity
from qrewrite.training.distributed import (
    STRATEGIES,
    STRATEGY_FILES,
    check_distributed,
    main_process_first,
    strategy_settings,
)
from qrewrite.training.grpo import GRPOStepConfig, grpo_arguments
from qrewrite.training.sft import SFTStepConfig, sft_arguments

ROOT = Path(__file__).parents[2]
OUT = Path("/out/checkpoints")
DISTRIBUTED = {"nodes", "processes_per_node", "distributed", "trainjob_timeout_s"}


def _sft(**values) -> SFTStepConfig:
    return SFTStepConfig(base_model="x", **values)


def test_the_keys_are_flat_preset_keys_of_sft_and_grpo(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text(
        "sft: {nodes: 2, processes_per_node: 8, distributed: deepspeed-zero3}\n"
        "grpo: {processes_per_node: 4, distributed: ddp, trainjob_timeout_s: 600}\n"
    )
    sft = load_config(SFTStepConfig, preset, "sft")
    assert (sft.nodes, sft.processes_per_node, sft.distributed) == (2, 8, "deepspeed-zero3")
    assert sft.process_count() == 16 and sft.trainjob_runtime == "torch-distributed"
    grpo = load_config(GRPOStepConfig, preset, "grpo", ["nodes=2"])
    assert (grpo.process_count(), grpo.trainjob_timeout_s) == (8, 600)
    for key in ("nodes", "processes_per_node", "trainjob_timeout_s"):
        with pytest.raises(ConfigError, match=rf"{key}=0 must be at least 1"):
            load_config(SFTStepConfig, None, None, [f"{key}=0"])


def test_one_process_and_ddp_add_no_trainer_argument() -> None:
    plain = sft_arguments(_sft(), output_dir=OUT, progress=False)
    assert sft_arguments(_sft(distributed="ddp"), output_dir=OUT, progress=False) == plain
    two = _sft(processes_per_node=2, distributed="ddp")
    assert sft_arguments(two, output_dir=OUT, progress=False) == plain
    assert not {"fsdp", "fsdp_config", "deepspeed"} & set(plain)


def test_fsdp_reaches_trl_from_the_shipped_file() -> None:
    from trl import SFTConfig

    config = _sft(processes_per_node=2, distributed="fsdp")
    arguments = sft_arguments(config, output_dir=OUT, progress=False)
    shipped = json.loads((ROOT / "configs" / "distributed" / "fsdp.json").read_text())
    assert arguments["fsdp"] is True and arguments["fsdp_config"] == shipped
    args = SFTConfig(**arguments)  # TRL takes it as it is
    assert args.fsdp_plugin_args["fsdp_version"] == 2


def test_deepspeed_reaches_trl_from_the_shipped_file(monkeypatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: object() if n == "deepspeed" else real(n, *a)
    )
    for stage, strategy in ((2, "deepspeed-zero2"), (3, "deepspeed-zero3")):
        config = GRPOStepConfig(model="m", nodes=2, processes_per_node=8, distributed=strategy)
        arguments = grpo_arguments(config, output_dir=OUT, progress=False)
        assert arguments["deepspeed"]["zero_optimization"]["stage"] == stage
    # ZeRO-3 gathers the weights when the model is saved (distributed.final_model)
    zero3 = strategy_settings("deepspeed-zero3")["zero_optimization"]
    assert zero3["stage3_gather_16bit_weights_on_model_save"] is True


def test_a_strategy_setting_is_not_passed_through_behind_its_back() -> None:
    config = _sft(processes_per_node=2, distributed="fsdp", training_args={"fsdp_config": {}})
    with pytest.raises(ConfigError, match=r"'fsdp_config' cannot be passed through: set "):
        sft_arguments(config, output_dir=OUT, progress=False)
    # with one process the pass-through stays what it was
    one = _sft(training_args={"deepspeed": {"zero_optimization": {"stage": 2}}})
    assert sft_arguments(one, output_dir=OUT, progress=False)["deepspeed"]


def _missing(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"distributed": "zero2"}, "expected one of none, ddp, fsdp"),
        ({"processes_per_node": 2}, r"1 node\(s\) x 2 process\(es\) need a strategy"),
        ({"distributed": "fsdp"}, "shards the model over processes, but sft trains with one"),
        ({"nodes": 2, "distributed": "deepspeed-zero2"}, "needs the deepspeed package"),
    ],
)
def test_mistakes_fail_before_anything_loads(values, message) -> None:
    if "deepspeed" in message and not _missing("deepspeed"):
        pytest.skip("deepspeed is installed here")
    with pytest.raises(ConfigError, match=message):
        check_distributed("sft", _sft(**values))
    with pytest.raises(ConfigError, match=message):
        sft_arguments(_sft(**values), output_dir=OUT, progress=False)


def test_the_shipped_strategy_files_are_the_packaged_ones() -> None:
    folder = ROOT / "configs" / "distributed"
    assert {p.name for p in folder.glob("*.json")} == set(STRATEGY_FILES.values())
    assert set(STRATEGY_FILES) < set(STRATEGIES)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "distributed/*.json" in project["tool"]["setuptools"]["package-data"]["qrewrite_presets"]
    for strategy in STRATEGY_FILES:
        assert strategy_settings(strategy)  # read through the installed package


def test_checkpoints_from_before_the_keys_still_belong_to_the_run(tmp_path: Path) -> None:
    """Identity of a one-process run is what it was; another layout starts fresh; the timeout
    and the runtime may change between a run and its resume."""
    plain = run_identity(_sft(), tmp_path, None)["config"]
    assert not DISTRIBUTED & set(plain) and "trainjob_runtime" not in plain
    other = run_identity(_sft(processes_per_node=2, distributed="ddp"), tmp_path, None)["config"]
    assert (other["processes_per_node"], other["distributed"]) == (2, "ddp")
    assert run_identity(_sft(trainjob_timeout_s=5), tmp_path, None)["config"] == plain


def test_only_the_main_process_opens_an_mlflow_run(tmp_path: Path, monkeypatch) -> None:
    import mlflow

    from qrewrite.tracking import mlflow_run

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("RANK", "1")
    with mlflow_run(uri, "qrewrite", "sft", _sft()) as run:
        assert run.info.run_id == "" and mlflow.active_run() is None
    assert not (tmp_path / "mlflow.db").exists()  # not even a store was made
    monkeypatch.setenv("RANK", "0")
    with mlflow_run(uri, "qrewrite", "sft", _sft()) as run:
        assert run.info.run_id and mlflow.active_run() is not None


def test_main_process_first_alone_just_runs() -> None:
    done = []
    with main_process_first():
        done.append(1)
    assert done == [1]
