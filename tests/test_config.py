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


def test_training_presets_load_every_training_section() -> None:
    from qrewrite.training.datasets import DatasetConfig
    from qrewrite.training.grpo import GRPOStepConfig
    from qrewrite.training.pretrain import PretrainConfig
    from qrewrite.training.sft import SFTStepConfig

    for name in ("local.yaml", "cluster.yaml"):
        preset = ROOT / "configs" / name
        load_config(DatasetConfig, preset, "build_datasets")
        sft = load_config(SFTStepConfig, preset, "sft")
        grpo = load_config(GRPOStepConfig, preset, "grpo")
        grpo.model = grpo.model or "set-by-cli"
        grpo.check()  # the shipped batch/generation sizes are consistent
        assert sft.task_list() == ["rewrite", "tag"]
    local = ROOT / "configs" / "local.yaml"
    assert load_config(PretrainConfig, local, "pretrain").hidden_size <= 256
    cluster = load_config(SFTStepConfig, ROOT / "configs" / "cluster.yaml", "sft")
    assert cluster.use_lora and cluster.precision == "auto"


def test_reward_weights_are_a_mapping_of_numbers(tmp_path: Path) -> None:
    from qrewrite.training.grpo import GRPOStepConfig

    preset = tmp_path / "p.yaml"
    preset.write_text("grpo:\n  reward_weights: {relevance: 2, hit_rate: 0.5}\n")
    cfg = load_config(GRPOStepConfig, preset, "grpo")
    assert cfg.reward_weights == {"relevance": 2.0, "hit_rate": 0.5}
    with pytest.raises(ConfigError, match="reward_weights"):
        load_config(GRPOStepConfig, None, None, ["reward_weights={relevance: high}"])


def test_grpo_config_mistakes_fail_before_training() -> None:
    from qrewrite.training.grpo import GRPOStepConfig

    with pytest.raises(ConfigError, match="not divisible by num_generations=4"):
        GRPOStepConfig(model="m", batch_size=6, num_generations=4).check()
    with pytest.raises(ConfigError, match="unknown reward"):
        GRPOStepConfig(model="m", reward_weights={"clicks": 1.0}).check()
    with pytest.raises(ConfigError, match="judge"):
        GRPOStepConfig(model="m", judge="oracle").check()
    with pytest.raises(ConfigError, match=r"grpo\.model is not set"):
        GRPOStepConfig().check()


def test_presets_load_the_evaluation_registry_and_export_sections() -> None:
    from qrewrite.evaluation.evaluate import EvaluateConfig
    from qrewrite.registry.registry import RegistryConfig
    from qrewrite.serving.export import RewriteConfig

    for name in ("local.yaml", "cluster.yaml"):
        preset = ROOT / "configs" / name
        evaluate = load_config(EvaluateConfig, preset, "evaluate")
        evaluate.check()
        assert evaluate.merge == "rrf" and 0 < evaluate.min_p_relevant < 1
        registry = load_config(RegistryConfig, preset, "registry")
        assert registry.registered_model == "query-rewriter"
        assert registry.primary_metric == "ucvr_uplift"
        assert load_config(RewriteConfig, preset, "rewrite").k >= 1


def test_a_misspelt_section_is_an_error_that_suggests_the_right_one(tmp_path: Path) -> None:
    preset = tmp_path / "p.yaml"
    preset.write_text("mien:\n  max_candidates_per_query: 5\n")
    with pytest.raises(ConfigError, match=r"unknown section 'mien' \(did you mean 'mine'\?\)"):
        load_config(MiningConfig, preset, "mine")


def test_every_section_a_step_reads_is_a_known_one() -> None:
    import re

    from qrewrite.config import SECTIONS

    used = set()
    for path in [*(ROOT / "src").rglob("*.py"), *(ROOT / "components").rglob("*.py")]:
        text = path.read_text()
        used |= set(re.findall(r"(?:load_config|config_from_preset_text)\([^()]*?\"(\w+)\"", text))
        used |= set(re.findall(r"_add_config_flags\(p, \"(\w+)\"\)", text))
    assert used and used <= set(SECTIONS), used - set(SECTIONS)
    for preset in (ROOT / "configs").glob("*.yaml"):
        import yaml

        assert set(yaml.safe_load(preset.read_text())) <= set(SECTIONS), preset.name


def test_a_file_holds_a_preset_and_a_name_finds_the_shipped_one(tmp_path, monkeypatch) -> None:
    word = tmp_path / "p.yaml"
    word.write_text("cluster\n")
    with pytest.raises(ConfigError, match="expected a mapping of step sections, got str"):
        load_config(MiningConfig, word, "mine")
    monkeypatch.chdir(tmp_path)  # not the repository: the shipped presets are still found
    assert load_config(SynthConfig, "local", "synth").scale == "demo"
    with pytest.raises(ConfigError, match="no such preset; shipped presets: cluster, local"):
        load_config(SynthConfig, "lokal", "synth")


def test_out_of_range_values_are_refused_by_name(tmp_path: Path) -> None:
    from qrewrite.importing.judged import JudgedImportConfig
    from qrewrite.training.datasets import DatasetConfig

    with pytest.raises(ConfigError, match=r"max_candidates_per_query=-3 must be at least 0"):
        load_config(MiningConfig, None, None, ["max_candidates_per_query=-3"])
    with pytest.raises(ConfigError, match=r"sessions_per_query=0 must be at least 1"):
        load_config(JudgedImportConfig, None, None, ["sessions_per_query=0"])
    with pytest.raises(ConfigError, match=r"eval_fraction=1.5 must be within 0..1"):
        load_config(DatasetConfig, None, None, ["eval_fraction=1.5"])
    with pytest.raises(ConfigError, match=r"co_click_weight=nan is not a finite number"):
        load_config(MiningConfig, None, None, ["co_click_weight=.nan"])
    preset = tmp_path / "p.yaml"
    preset.write_text("build_datasets:\n  min_tag_confidence: 2\n")
    with pytest.raises(ConfigError, match=r"p.yaml:build_datasets: min_tag_confidence=2.0 must"):
        load_config(DatasetConfig, preset, "build_datasets")


def test_hostile_yaml_and_values_give_short_one_line_errors(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    levels = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"] + [
        f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]" for i in range(1, 10)
    ]
    bomb.write_text("\n".join(levels) + "\nmine:\n  start: *a9\n")
    with pytest.raises(ConfigError, match="expands to more than 100,000 values") as e:
        load_config(MiningConfig, bomb, "mine")
    assert "\n" not in str(e.value) and len(str(e.value)) < 300
    with pytest.raises(ConfigError, match=r"--set max_titles_per_query: not valid YAML") as e:
        load_config(MiningConfig, None, None, ["max_titles_per_query=[1,"])
    assert "\n" not in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(MiningConfig, None, None, ["max_titles_per_query=" + "9x" * 5000])
    assert len(str(e.value)) < 300 and "…" in str(e.value)
    with pytest.raises(ConfigError, match="is a directory"):
        load_config(MiningConfig, tmp_path, "mine")
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("mine:\n  start: café\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        load_config(MiningConfig, latin, "mine")
