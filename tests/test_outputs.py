"""Nothing lost: a step that fails (a full disk) leaves its previous output whole, a re-run leaves
no stale file beside its new report, an output that is an input is refused before any work; and
the exit code says whose fault it was (a full disk, a dead tracking server: 5)."""

from __future__ import annotations

import errno
import socket
import time
from pathlib import Path

import pandas as pd
import pytest

from qrewrite.cli import main
from qrewrite.errors import ConfigError
from qrewrite.outputs import staged_output


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", "/data/out/search_log.parquet")


def test_a_failed_stage_leaves_the_previous_output_and_no_stage(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_output(out, ["a.txt", "q"], step="t") as stage:
        (stage / "a.txt").write_text("first")
        (stage / "q").mkdir()
        (stage / "q" / "rejected.txt").write_text("2 rows")
    with pytest.raises(OSError), staged_output(out, ["a.txt", "q"], step="t") as stage:
        (stage / "a.txt").write_text("half")
        _disk_full()
    assert _snapshot(out) == {"a.txt": b"first", "q/rejected.txt": b"2 rows"}
    with staged_output(out, ["a.txt", "q"], step="t") as stage:
        (stage / "a.txt").write_text("second")  # no rejected rows this time
    assert _snapshot(out) == {"a.txt": b"second"}  # the old quarantine went with its run
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no stage left behind
    refused = pytest.raises(ConfigError, match="is \\(or is inside\\) the input")
    with refused, staged_output(out, ["a.txt"], step="t", inputs=[out / "a.txt"]):
        pass


def test_import_judged_on_a_full_disk_keeps_the_previous_import(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    from qrewrite.importing import judged

    src = tmp_path / "judged.csv"
    pd.DataFrame(
        {
            "query": ["red shoes", "red shoes", "oak desk", "oak desk"],
            "product_id": ["p1", "p2", "p3", "p1"],
            "product_title": ["Red Shoe", "Blue Shoe", "Oak Desk", "Red Shoe"],
            "grade": [3, 1, 3, "n/a"],
        }
    ).to_csv(src, index=False)
    out = tmp_path / "imported"
    args = ["import-judged", "--input", str(src), "--out", str(out)]
    assert main([*args, "--grade-scale", "numeric:1:3"]) == 0
    before = _snapshot(out)
    assert "quarantine/judged_rejected.parquet" in before
    monkeypatch.setattr(judged, "_replay", _disk_full)
    assert main([*args, "--grade-scale", "numeric:1:3"]) == 5
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "environment error: No space left on device" in err
    assert _snapshot(out) == before  # the previous import is whole
    monkeypatch.undo()
    pd.read_csv(src).iloc[:3].to_csv(src, index=False)  # the bad row fixed: nothing rejected
    assert main([*args, "--grade-scale", "numeric:1:3"]) == 0
    assert not (out / "quarantine").exists()  # no stale quarantine beside a 0-rejected manifest


def test_mine_on_a_full_disk_keeps_the_previous_candidates(
    tiny_market: Path, tmp_path: Path, monkeypatch
) -> None:
    from qrewrite.mining import mine as mine_module

    out = tmp_path / "mined"
    assert main(["mine", "--data", str(tiny_market), "--out", str(out)]) == 0
    before = _snapshot(out)
    monkeypatch.setattr(mine_module, "write_mining_report", _disk_full)
    assert main(["mine", "--data", str(tiny_market), "--out", str(out)]) == 5
    assert _snapshot(out) == before
    assert main(["mine", "--data", str(tiny_market), "--out", str(tiny_market)]) == 3
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    assert main(["mine", "--data", str(tiny_market), "--out", str(a_file)]) == 3
    assert a_file.read_text() == "keep me"


def test_label_refuses_to_write_over_its_candidates(tiny_market, tiny_mined, tmp_path, capsys):
    candidates = tmp_path / "candidates.parquet"
    candidates.write_bytes((tiny_mined / "rewrite_candidates.parquet").read_bytes())
    before = candidates.read_bytes()
    args = ["label", "--data", str(tiny_market), "--candidates", str(candidates)]
    assert main([*args, "--out", str(candidates)]) == 3
    assert "is (or is inside) the input" in capsys.readouterr().err
    assert candidates.read_bytes() == before


def test_a_dead_tracking_server_fails_fast_with_its_url(monkeypatch, capsys) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
    t0 = time.monotonic()
    assert main(["rollback"]) == 5
    assert time.monotonic() - t0 < 60  # not MLflow's minutes of retries
    err = capsys.readouterr().err
    assert f"tracking server at http://127.0.0.1:{port} does not answer" in err
    assert "no champion" not in err


def test_a_registry_that_is_not_there_is_named_and_not_created(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///nowhere/mlflow.db")
    assert main(["promote", "--version", "1"]) == 3
    assert "no MLflow registry at sqlite:///" in capsys.readouterr().err
    assert list(tmp_path.rglob("*.db")) == []


def test_a_bad_duckdb_setting_blames_the_setting_not_the_data(tiny_market, tmp_path, capsys):
    args = ["mine", "--data", str(tiny_market), "--out", str(tmp_path / "m")]
    assert main([*args, "--set", "duckdb_memory_limit=lots"]) == 3
    err = capsys.readouterr().err
    assert "mine.duckdb_memory_limit='lots': DuckDB cannot use it" in err
    assert not (tmp_path / "m").exists()


def test_synth_and_rewrite_keep_their_previous_output(tmp_path, tiny_model, monkeypatch) -> None:
    from qrewrite.market import simulate

    out = tmp_path / "market"
    args = ["synth", "--out", str(out), "--scale", "tiny", "--seed", "3"]
    assert main(args) == 0
    before = _snapshot(out)
    monkeypatch.setattr(simulate, "table_fingerprint", _disk_full)  # fails after every table
    assert main(args) == 5
    assert _snapshot(out) == before
    monkeypatch.undo()

    queries = tmp_path / "queries.txt"
    queries.write_text("red running shoes\noak desk\n")
    rewrite = ["rewrite", "--model", str(tiny_model), "--queries", str(queries), "--no-progress"]
    assert main([*rewrite, "--out", str(queries)]) == 3  # the table would replace its input
    assert queries.read_text() == "red running shoes\noak desk\n"


def test_label_eval_on_a_broken_data_folder_is_a_one_line_data_error(
    tiny_market, tiny_labels, tmp_path, capsys
) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(tiny_market, data)
    args = ["label-eval", "--data", str(data), "--labels", str(tiny_labels)]
    for manifest, expected in (
        ("{not json", "not valid JSON"),
        ('{"counts": {}}', "no 'kind'"),
        ("[1, 2]", "no 'kind'"),
    ):
        (data / "manifest.json").write_text(manifest)
        assert main(args) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err
    (data / "manifest.json").write_text('{"kind": "synthetic"}')
    (data / "truth" / "intents.parquet").write_bytes(b"PAR1 not really")
    assert main(args) == 2
    assert "intents.parquet: not a readable parquet file" in capsys.readouterr().err


def test_a_link_that_leads_nowhere_is_not_called_missing(tmp_path: Path, capsys) -> None:
    loop = tmp_path / "loop.csv"
    loop.symlink_to(tmp_path / "loop.csv")
    dangling = tmp_path / "gone.parquet"
    dangling.symlink_to(tmp_path / "elsewhere.parquet")
    for path, expected in ((loop, "a symbolic link in a loop"), (dangling, "which does not exist")):
        assert main(["import-judged", "--input", str(path), "--out", str(tmp_path / "o")]) == 2
        assert expected in capsys.readouterr().err


def test_sft_on_a_full_disk_keeps_the_previous_model(
    tiny_model: Path, tiny_datasets: Path, tmp_path: Path, monkeypatch
) -> None:
    """The model folder is replaced only by a whole model; the base model is never an output."""
    from qrewrite.training import sft as sft_module

    out = tmp_path / "sft"

    def sft(out_dir: Path) -> int:
        return main(
            [
                "sft",
                "--config",
                "tiny",
                "--datasets",
                str(tiny_datasets),
                "--base-model",
                str(tiny_model),
                "--out",
                str(out_dir),
                "--no-progress",
                "--set",
                "max_steps=2",
                "--set",
                f"tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
            ]
        )

    assert sft(out) == 0
    before = _snapshot(out)
    assert "model.safetensors" in before and "sft_report.json" in before
    monkeypatch.setattr(sft_module, "plot_curves", _disk_full)
    assert sft(out) == 5
    after = {k: v for k, v in _snapshot(out).items() if not k.startswith("checkpoints")}
    assert after == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".sft")] == []  # no stage
    model_before = _snapshot(tiny_model)
    assert sft(tiny_model) == 3
    assert _snapshot(tiny_model) == model_before


def test_a_report_folder_that_is_a_file_is_a_config_error(
    tiny_market: Path, tiny_mined: Path, tiny_labels: Path, tmp_path: Path, capsys
) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    for args in (
        ["validate", "--contract", "catalog", "--data", str(tiny_market / "catalog.parquet")],
        ["label-eval", "--data", str(tiny_market), "--labels", str(tiny_labels)],
        [
            "build-datasets",
            *("--data", str(tiny_market), "--mined", str(tiny_mined)),
            *("--labels", str(tiny_labels), "--out", str(tmp_path / "datasets")),
        ],
    ):
        assert main([*args, "--report", str(a_file)]) == 3, args[0]
        assert f"the output folder {a_file} is a file" in capsys.readouterr().err
    assert a_file.read_text() == "keep me"
    assert not (tmp_path / "datasets").exists()
