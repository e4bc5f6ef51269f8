"""``qrewrite run --local`` pretrains the small model, or fine-tunes a base model instead: the
way the README sends a real shop (``--base-model DIR``), decided before any step runs."""

from __future__ import annotations

import pytest
import yaml

from qrewrite.errors import ConfigError
from qrewrite_pipelines.local import LocalRun, preset_text, pretrains, run_local


def _preset(name: str) -> dict:
    return yaml.safe_load(preset_text(name))


def test_the_local_preset_pretrains_unless_a_base_model_replaces_it() -> None:
    local = _preset("local")
    assert pretrains(LocalRun(config="local"), local)
    assert not pretrains(LocalRun(config="local", base_model="/models/qwen"), local)


def test_a_preset_without_pretraining_fine_tunes_its_own_base_model() -> None:
    cluster = _preset("cluster")
    assert "pretrain" not in cluster and cluster["sft"]["base_model"]
    assert not pretrains(LocalRun(config="cluster"), cluster)


def test_a_preset_with_neither_is_refused_before_any_step_runs() -> None:
    cluster = _preset("cluster")
    cluster["sft"]["base_model"] = ""
    with pytest.raises(ConfigError, match=r"^shop\.yaml: no pretrain: .*pass --base-model DIR$"):
        pretrains(LocalRun(config="shop.yaml"), cluster)
    assert not pretrains(LocalRun(config="shop.yaml", base_model="/models/qwen"), cluster)


def test_run_local_refuses_it_before_writing_anything(tmp_path) -> None:
    preset = _preset("cluster")
    preset["sft"]["base_model"] = ""
    path = tmp_path / "shop.yaml"
    path.write_text(yaml.safe_dump(preset))
    with pytest.raises(ConfigError, match="pass --base-model DIR"):
        run_local(LocalRun(config=str(path), out=str(tmp_path / "out")))
    assert not (tmp_path / "out").exists()
