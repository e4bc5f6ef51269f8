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
    assert "started run run-1" in capsys.readouterr().out


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
