import json
import subprocess
import sys
from pathlib import Path

import pytest

from qrewrite.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


COMMANDS = sorted(build_parser()._subparsers._group_actions[0].choices)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_subcommand_explains_its_flags(command: str, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    # the cluster commands work on the compiled package, not on a step's preset section
    without_preset = {"validate", "label-eval", "compile", "submit", "schedule"}
    assert "--config" in out or command in without_preset
    for action in build_parser()._subparsers._group_actions[0].choices[command]._actions:
        if action.option_strings and action.dest != "help":
            assert action.help, f"{command} {action.option_strings} has no help"


def test_synth_mine_validate_chain(tmp_path: Path, capsys) -> None:
    market, mined = tmp_path / "market", tmp_path / "mined"
    preset = str(ROOT / "configs" / "local.yaml")
    assert (
        main(
            [
                "synth",
                "--config",
                preset,
                "--scale",
                "tiny",
                "--seed",
                "3",
                "--set",
                "n_sessions=500",
                "--out",
                str(market),
                "--no-progress",
            ]
        )
        == 0
    )
    manifest = json.loads((market / "manifest.json").read_text())
    assert manifest["config"]["n_sessions"] == 500 and manifest["config"]["seed"] == 3
    assert main(["mine", "--config", preset, "--data", str(market), "--out", str(mined)]) == 0
    out = capsys.readouterr().out
    assert "mine: " in out and "rewrite_candidates.parquet" in out
    assert (
        main(
            [
                "validate",
                "--contract",
                "rewrite_candidates",
                "--data",
                str(mined / "rewrite_candidates.parquet"),
                "--report",
                str(tmp_path / "r"),
            ]
        )
        == 0
    )
    assert (tmp_path / "r" / "rewrite_candidates.md").exists()


def test_console_script_is_installed() -> None:
    exe = Path(sys.executable).parent / "qrewrite"
    result = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("qrewrite ")


def test_bad_config_exits_3_with_one_line(tmp_path: Path, capsys) -> None:
    assert main(["synth", "--out", str(tmp_path), "--set", "scale=medium"]) == 3
    err = capsys.readouterr().err
    assert err.strip() == (
        "qrewrite synth: error: synth: unknown scale 'medium'; expected one of tiny, demo, "
        "large, huge"
    )
