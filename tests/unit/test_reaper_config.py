"""The reaper's pure pieces: configuration, results, durations, progress. No database."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from pgq import reaper
from pgq.cli import maintenance
from pgq.errors import ValidationError
from pgq.reaper import PruneResult, ReapedJob, ReaperConfig, ReapResult

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90.0),
        ("0", 0.0),
        ("1.5", 1.5),
        (".5s", 0.5),
        ("30s", 30.0),
        ("15m", 900.0),
        ("12h", 43200.0),
        ("7d", 604800.0),
        (" 2D ", 172800.0),
        ("1.5h", 5400.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert maintenance.parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "d", "1w", "-1", "1 day", "1e3", "nan", "inf", "1h30m"])
def test_parse_duration_rejects_with_a_message_that_says_what_works(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration: use plain seconds or .* 7d"):
        maintenance.parse_duration(text)


def test_never_only_where_allowed() -> None:
    assert maintenance.parse_duration("never", allow_never=True) is None
    assert maintenance.parse_duration("NEVER", allow_never=True) is None
    with pytest.raises(ValueError, match="is not a duration"):
        maintenance.parse_duration("never")


def test_defaults() -> None:
    config = ReaperConfig()
    assert (config.interval, config.prune_interval) == (5.0, 60.0)
    assert [config.retention(s) for s in ("succeeded", "cancelled", "failed")] == [
        86400.0,
        7 * 86400.0,
        30 * 86400.0,
    ]


@pytest.mark.parametrize(
    "bad",
    [
        {"interval": 0},
        {"interval": -1},
        {"interval": float("nan")},
        {"interval": float("inf")},
        {"interval": True},
        {"prune_interval": 0},
        {"batch_size": 0},
        {"batch_size": 1.5},
        {"prune_batch_size": True},
        {"prune_max_batches": 0},
        {"succeeded_retention": -1},
        {"failed_retention": float("nan")},
        {"cancelled_retention": "7d"},
    ],
)
def test_bad_config_values_raise_validation_error_naming_the_field(bad: dict[str, Any]) -> None:
    (name,) = bad
    with pytest.raises(ValidationError, match=name):
        ReaperConfig(**bad)


def test_none_turns_off_pruning_and_keeps_a_state_forever() -> None:
    config = ReaperConfig(prune_interval=None, failed_retention=None, succeeded_retention=0)
    assert (config.prune_interval, config.retention("failed"), config.retention("succeeded")) == (
        None,
        None,
        0,
    )


def test_lock_keys_are_distinct_bigints() -> None:
    keys = {reaper.REAP_LOCK_KEY, reaper.PRUNE_LOCK_KEY}
    assert len(keys) == 2
    assert all(-(2**63) <= key < 2**63 for key in keys)


def _job(job_id: int, state: str) -> ReapedJob:
    return ReapedJob(job_id, "default", "t", state, 2, 3, NOW, "w1", None)


def test_reap_result_summary() -> None:
    result = ReapResult([_job(1, "queued"), _job(2, "failed"), _job(3, "queued")], batches=1)
    summary = result.as_dict()
    assert {k: summary[k] for k in ("reaped", "requeued", "failed", "cancelled")} == {
        "reaped": 3,
        "requeued": 2,
        "failed": 1,
        "cancelled": 0,
    }
    assert summary["jobs"][0] == {
        "id": 1,
        "queue": "default",
        "task": "t",
        "state": "queued",
        "attempts": 2,
        "max_attempts": 3,
        "run_at": NOW.isoformat(),
        "worker_id": "w1",
        "lease_expired_at": None,
    }


def test_prune_result_lists_every_state() -> None:
    result = PruneResult({"failed": 3}, batches=2)
    assert result.total == 3
    assert result.as_dict()["deleted"] == {"succeeded": 0, "cancelled": 0, "failed": 3}


def test_progress_prints_lines_on_stderr_only_for_long_runs(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    quick = maintenance._Progress()
    quick.batch("succeeded", 1000)
    quick.done()
    assert capsys.readouterr() == ("", "")

    monkeypatch.setattr(maintenance, "PROGRESS_EVERY", 0.0)
    slow = maintenance._Progress()
    slow.batch("succeeded", 1000)
    slow.batch("failed", 10)
    slow.done()
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        "pruning: 1000 deleted in 1 batches (now succeeded)",
        "pruning: 1010 deleted in 2 batches (now failed)",
        "pruning: done, 1010 deleted",
    ]
