from pathlib import Path

import pytest

from qrewrite.config import load_config
from qrewrite.errors import ConfigError
from qrewrite.labeling.label import LabelConfig
from qrewrite.market.simulate import SynthConfig
from qrewrite.mining.config import MiningConfig

ROOT = Path(__file__).resolve().parents[1]


def test_preset_then_overrides(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("synth:\n  scale: tiny\n  seed: 3\n  click_given_seen: [0.1, 0.2, 0.3]\n")
    cfg = load_config(SynthConfig, preset, "synth", ["seed=9", "days=7"])
    assert (cfg.scale, cfg.seed, cfg.days) == ("tiny", 9, 7)
    assert cfg.click_given_seen == (0.1, 0.2, 0.3)


def test_shipped_local_preset_loads_every_section() -> None:
    preset = ROOT / "configs" / "local.yaml"
    assert load_config(SynthConfig, preset, "synth").scale == "demo"
    assert load_config(MiningConfig, preset, "mine").reformulation_window_s == 600
    assert load_config(LabelConfig, preset, "label").backend == "teacher"


def test_unknown_key_and_bad_type_are_one_line_errors(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("mine:\n  reformulation_window: 10\n")
    with pytest.raises(ConfigError, match=r"unknown key mine.reformulation_window"):
        load_config(MiningConfig, preset, "mine")
    with pytest.raises(ConfigError, match=r"min_reformulation_support='many'"):
        load_config(MiningConfig, None, None, ["min_reformulation_support=many"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(MiningConfig, None, None, ["start"])
    with pytest.raises(ConfigError, match="not found"):
        load_config(MiningConfig, tmp_path / "missing.yaml", "mine")


def test_optional_fields_accept_null_and_dates() -> None:
    cfg = load_config(MiningConfig, None, None, ["start=2026-01-01", "end=null"])
    assert cfg.start == "2026-01-01" and cfg.end is None
