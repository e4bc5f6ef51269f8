"""``qrewrite submit`` and ``qrewrite schedule`` against a local server speaking the KFP REST API
(scripted responses; see kfp_api.py): what reaches the API, and errors a person can act on."""

from __future__ import annotations

import pytest
import yaml

from qrewrite.cli import main
from qrewrite_pipelines.cluster import kfp_cron
from qrewrite_pipelines.query_rewrite import COMPILED
from tests.pipelines.kfp_api import KfpApi


@pytest.fixture(autouse=True)
def no_kfp_context(tmp_path, monkeypatch) -> None:
    # the KFP client reads ~/.config/kfp/context.json; never a developer's real one
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KF_PIPELINES_ENDPOINT", raising=False)


def _posted(api: KfpApi, suffix: str) -> dict:
    bodies = [
        r["body"] for r in api.requests if r["method"] == "POST" and r["path"].endswith(suffix)
    ]
    assert len(bodies) == 1, api.requests
    return bodies[0]


def test_submit_starts_a_run_of_the_compiled_package(capsys) -> None:
    with KfpApi() as api:
        code = main(
            [
                "submit",
                "--host",
                api.host,
                "--run-name",
                "try-1",
                "--param",
                "data_source=/workspace/exports/2026-11",
                "--param",
                "gpu_count=2",
            ]
        )
    assert code == 0
    run = _posted(api, "/apis/v2beta1/runs")
    assert run["display_name"] == "try-1"
    assert run["experiment_id"] == "exp-1"  # created on first use
    assert run["runtime_config"]["parameters"] == {
        "data_source": "/workspace/exports/2026-11",
        "gpu_count": 2,
    }
    compiled = list(yaml.safe_load_all(COMPILED.read_text()))
    # the package goes in whole: the pipeline spec and the Kubernetes platform spec
    assert run["pipeline_spec"]["pipeline_spec"] == compiled[0]
    assert run["pipeline_spec"]["platform_spec"] == compiled[1]
    # the steps run as the least-privilege account k8s/base/pipeline/rbac.yaml creates
    assert run["service_account"] == "qrewrite-pipeline-runner"
    assert "started run run-1" in capsys.readouterr().out


def test_submit_waits_for_the_run_and_reports_its_end(capsys) -> None:
    with KfpApi() as api:
        assert main(["submit", "--host", api.host, "--wait", "60"]) == 0
    assert "run run-1 SUCCEEDED" in capsys.readouterr().out
    with KfpApi(run_ends="FAILED") as api:
        code = main(["submit", "--host", api.host, "--wait", "60"])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and "ended FAILED" in err and "Traceback" not in err


def test_schedule_creates_one_at_a_time_retrains_without_catch_up(capsys) -> None:
    with KfpApi() as api:
        code = main(
            ["schedule", "--host", api.host, "--cron", "0 3 * * *", "--param", "window_days=14"]
        )
    assert code == 0
    rr = _posted(api, "/apis/v2beta1/recurringruns")
    assert rr["max_concurrency"] in (1, "1")
    assert rr["no_catchup"] is True
    assert rr["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * *"  # KFP's seconds field added
    assert rr["runtime_config"]["parameters"] == {"window_days": 14}
    assert rr["experiment_id"] == "exp-1"
    assert "pipeline_spec" in rr
    assert rr["service_account"] == "qrewrite-pipeline-runner"
    assert "recurring run rr-1" in capsys.readouterr().out


def test_an_api_error_is_one_line_naming_the_host(capsys) -> None:
    with KfpApi(fail_with=503) as api:
        code = main(["submit", "--host", api.host])
    err = capsys.readouterr().err
    assert code != 0
    assert err.count("\n") == 1 and api.host in err and "Traceback" not in err


def test_a_missing_package_says_to_compile(tmp_path, capsys) -> None:
    code = main(["submit", "--host", "http://127.0.0.1:9", "--package", str(tmp_path / "no.yaml")])
    assert code == 3
    assert "qrewrite compile" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("given", "expected"), [("0 3 * * *", "0 0 3 * * *"), ("0 0 3 * * 1", "0 0 3 * * 1")]
)
def test_cron_takes_five_or_six_fields(given: str, expected: str) -> None:
    assert kfp_cron(given) == expected


def test_a_bad_cron_is_refused_before_any_call(capsys) -> None:
    with KfpApi() as api:
        code = main(["schedule", "--host", api.host, "--cron", "daily"])
    assert code == 3 and not api.requests
    assert "5 fields" in capsys.readouterr().err


def test_a_preset_file_goes_in_as_the_config_text(tmp_path, capsys) -> None:
    preset = tmp_path / "my.yaml"
    preset.write_text("synth:\n  scale: tiny\n")
    with KfpApi() as api:
        assert main(["submit", "--host", api.host, "--param", f"config=@{preset}"]) == 0
    assert _posted(api, "/apis/v2beta1/runs")["runtime_config"]["parameters"] == {
        "config": "synth:\n  scale: tiny\n"
    }
    with KfpApi() as api:  # a value that is not YAML goes in as it is
        assert main(["submit", "--host", api.host, "--param", "data_source=/x: [y"]) == 0
    assert _posted(api, "/apis/v2beta1/runs")["runtime_config"]["parameters"] == {
        "data_source": "/x: [y"
    }
    code = main(["submit", "--host", "http://127.0.0.1:9", "--param", "config=@/no/such.yaml"])
    assert code == 3 and "cannot read /no/such.yaml" in capsys.readouterr().err
