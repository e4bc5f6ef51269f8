"""The mining window of a pipeline run: explicit end, else the schedule, else the whole log."""

from __future__ import annotations

import pytest

from qrewrite.errors import ConfigError
from qrewrite.mining.config import mining_window


def test_an_explicit_end_wins_over_the_schedule() -> None:
    assert mining_window("2026-02-01", 7, "2026-03-01T03:00:00Z") == ("2026-01-25", "2026-02-01")


def test_a_scheduled_run_mines_the_days_before_its_scheduled_date() -> None:
    # started late (04:10) for the 03:00 slot: still the window of its scheduled date
    assert mining_window("", 28, "2026-02-02T03:00:00Z") == ("2026-01-05", "2026-02-02")


def test_no_end_and_no_schedule_is_the_whole_log() -> None:
    assert mining_window("", 28, "") == (None, None)
    # a run that was not scheduled: the placeholder stays unresolved or is the epoch
    assert mining_window("", 28, "{{$.pipeline_job_schedule_time_utc}}") == (None, None)
    assert mining_window("", 28, "1970-01-01T00:00:00Z") == (None, None)


def test_zero_days_bounds_only_the_end() -> None:
    assert mining_window("2026-02-01", 0, "") == (None, "2026-02-01")


@pytest.mark.parametrize(("end", "days"), [("first of may", 7), ("2026-02-01", -1)])
def test_bad_windows_say_what_was_expected(end: str, days: int) -> None:
    with pytest.raises(ConfigError, match=r"window_end|window_days"):
        mining_window(end, days, "")
