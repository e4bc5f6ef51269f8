"""GRPO's vLLM settings (training/grpo.py): colocate or server mode, checked before anything loads,
and reaching TRL's ``GRPOConfig`` as its own fields. vLLM is not installed here: what is tested
is what the trainer would be given."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from qrewrite.config import load_config
from qrewrite.errors import ConfigError
from qrewrite.training.grpo import GRPOStepConfig, check_vllm_installed, grpo_arguments

OUT = Path("/out/checkpoints")
# TRL's configs still set the field transformers 5 renamed (as in test_options.py)
pytestmark = pytest.mark.filterwarnings("ignore:.*checkpointing.*deprecated:FutureWarning")


def _trl_config(config: GRPOStepConfig):
    from trl import GRPOConfig

    # use_cpu is in the arguments already (no GPU here), as a CPU run would build them
    return GRPOConfig(**grpo_arguments(config, output_dir=OUT, progress=False))


def test_colocate_settings_reach_grpo_config() -> None:
    config = GRPOStepConfig(
        model="x",
        use_vllm=True,
        vllm_gpu_memory_utilization=0.2,
        vllm_enable_sleep_mode=True,
        vllm_max_model_length=512,
    )
    config.check()
    args = _trl_config(config)
    assert (args.use_vllm, args.vllm_mode, args.vllm_enable_sleep_mode) == (True, "colocate", True)
    assert args.vllm_gpu_memory_utilization == 0.2 and args.vllm_max_model_length == 512
    assert args.vllm_tensor_parallel_size == 1
    arguments = grpo_arguments(config, output_dir=OUT, progress=False)
    assert not any(k.startswith("vllm_server") for k in arguments)  # server settings unused


def test_server_settings_reach_grpo_config() -> None:
    by_url = GRPOStepConfig(
        model="x",
        use_vllm=True,
        vllm_mode="server",
        vllm_server_base_url="http://vllm-grpo.kubeflow.svc:8000",
        vllm_server_timeout=600.0,
    )
    by_url.check()
    args = _trl_config(by_url)
    assert (args.vllm_mode, args.vllm_server_base_url) == (
        "server",
        "http://vllm-grpo.kubeflow.svc:8000",
    )
    assert args.vllm_server_timeout == 600.0
    by_host = GRPOStepConfig(
        model="x",
        use_vllm=True,
        vllm_mode="server",
        vllm_server_host="10.0.0.5",
        vllm_server_port=9000,
    )
    by_host.check()
    args = _trl_config(by_host)
    assert args.vllm_server_base_url is None  # TRL then connects to host:port
    assert (args.vllm_server_host, args.vllm_server_port) == ("10.0.0.5", 9000)
    arguments = grpo_arguments(by_host, output_dir=OUT, progress=False)
    assert "vllm_enable_sleep_mode" not in arguments  # colocate settings unused


def test_without_vllm_only_the_old_two_settings_are_passed() -> None:
    arguments = grpo_arguments(GRPOStepConfig(model="x"), output_dir=OUT, progress=False)
    assert sorted(k for k in arguments if "vllm" in k) == [
        "use_vllm",
        "vllm_gpu_memory_utilization",
    ]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"vllm_mode": "remote"}, r"grpo\.vllm_mode='remote': expected one of colocate, server"),
        ({"vllm_mode": "server"}, r"grpo\.vllm_mode=server needs the server's address"),
        ({"vllm_gpu_memory_utilization": 0.0}, r"vllm_gpu_memory_utilization=0\.0: expected"),
        ({"vllm_gpu_memory_utilization": 1.5}, r"vllm_gpu_memory_utilization=1\.5: expected"),
        ({"vllm_tensor_parallel_size": 2}, r"=2 must divide the 1 training process"),
        ({"vllm_server_base_url": "vllm:8000"}, r"expected http://HOST:PORT"),
        ({"vllm_server_timeout": 0.0}, r"vllm_server_timeout=0\.0 \(> 0 s\)"),
    ],
)
def test_vllm_mistakes_are_one_line_before_anything_loads(settings, message) -> None:
    config = GRPOStepConfig(model="x", use_vllm=True, **settings)
    with pytest.raises(ConfigError, match=message) as e:
        config.check()
    assert "\n" not in str(e.value)


def test_server_mode_without_vllm_in_use_needs_no_address() -> None:
    GRPOStepConfig(model="x", vllm_mode="server").check()  # use_vllm is off: nothing to reach


def test_two_processes_may_share_a_colocated_vllm_over_tensor_parallelism() -> None:
    config = GRPOStepConfig(
        model="x",
        use_vllm=True,
        vllm_tensor_parallel_size=2,
        processes_per_node=2,
        distributed="ddp",
    )
    config.check()


def test_the_cluster_preset_colocates_and_server_mode_is_a_set_away() -> None:
    cluster = load_config(GRPOStepConfig, "cluster", "grpo", ["model=x"])
    cluster.check()
    args = _trl_config(cluster)
    assert (args.use_vllm, args.vllm_mode, args.vllm_enable_sleep_mode) == (
        True,
        "colocate",
        False,
    )
    server = load_config(
        GRPOStepConfig,
        "cluster",
        "grpo",
        ["model=x", "vllm_mode=server", "vllm_server_base_url=http://vllm-grpo:8000"],
    )
    server.check()
    assert _trl_config(server).vllm_mode == "server"
    with pytest.raises(ConfigError, match="needs the server's address"):
        load_config(GRPOStepConfig, "cluster", "grpo", ["model=x", "vllm_mode=server"]).check()


@pytest.mark.skipif(bool(importlib.util.find_spec("vllm")), reason="vllm is installed here")
def test_use_vllm_without_the_package_is_one_line() -> None:
    check_vllm_installed(GRPOStepConfig(model="x"))  # not asked for: fine
    with pytest.raises(ConfigError, match=r"grpo\.use_vllm: the vllm package is not installed"):
        check_vllm_installed(GRPOStepConfig(model="x", use_vllm=True))
