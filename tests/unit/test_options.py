"""Job options: every value that becomes part of a row is checked before any SQL runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import pytest

import pgq
from pgq import options


@pytest.mark.parametrize(
    "name", ["default", "a", "emails.high", "tenant:42", "a-b_c.d:e", "A" * 63, "0"]
)
def test_good_queue_names(name: str) -> None:
    assert options.check_queue(name) == name


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "non-empty string"),
        (None, "non-empty string"),
        (5, "non-empty string"),
        ("a" * 64, "64 bytes, longer than 63"),
        ("with space", "only ASCII letters, digits and _ . : -"),
        ("a/b", "only ASCII"),
        ("tab\t", "only ASCII"),
        ("line\n", "only ASCII"),
        ("café", "only ASCII"),
        ("ünïcode", "only ASCII"),
        ("名前", "only ASCII"),
        ("\ud800", "only ASCII"),
        ("a%b", "only ASCII"),
        ("a'b", "only ASCII"),
    ],
)
def test_bad_queue_names(name: Any, words: str) -> None:
    with pytest.raises(pgq.QueueNameError) as info:
        options.check_queue(name)
    assert "queue name" in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize("name", ["app.tasks.send", "x", "Ünïcode.task", "a" * 255])
def test_good_task_names(name: str) -> None:
    assert options.check_task_name(name) == name


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("", "non-empty string"),
        ("   ", "non-empty string"),
        (None, "non-empty string"),
        (b"x", "non-empty string"),
        ("a" * 256, "at most 255 bytes"),
        ("é" * 128, "at most 255 bytes"),  # 256 bytes in UTF-8
        ("a\x00b", "no NUL"),
        ("a\udc00", "not valid Unicode"),
    ],
)
def test_bad_task_names(name: Any, words: str) -> None:
    with pytest.raises(pgq.TaskNameError) as info:
        options.check_task_name(name)
    assert "task name" in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize("value", [-32768, -1, 0, 1, 32767])
def test_priority_in_smallint_range(value: int) -> None:
    assert options.check_priority(value) == value


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (32768, "out of range [-32768, 32767]"),
        (-32769, "out of range"),
        (10**20, "out of range"),
        (1.0, "must be an integer"),
        ("1", "must be an integer"),
        (True, "must be an integer"),
        (None, "must be an integer"),
    ],
)
def test_bad_priority(value: Any, words: str) -> None:
    with pytest.raises(pgq.OptionError) as info:
        options.check_priority(value)
    assert "priority" in str(info.value)
    assert words in str(info.value)


@pytest.mark.parametrize("value", [1, 2, 20, options.MAX_ATTEMPTS_MAX])
def test_max_attempts_in_range(value: int) -> None:
    assert options.check_max_attempts(value) == value


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (0, "between 1 and 1000, not 0"),
        (-5, "between 1 and 1000"),
        (options.MAX_ATTEMPTS_MAX + 1, "between 1 and 1000"),
        (True, "must be an integer"),
        (False, "must be an integer"),
        (2.0, "must be an integer"),
        ("3", "must be an integer"),
    ],
)
def test_bad_max_attempts(value: Any, words: str) -> None:
    with pytest.raises(pgq.OptionError) as info:
        options.check_max_attempts(value)
    assert "max_attempts" in str(info.value)
    assert words in str(info.value)


def test_schedule_defaults_to_now() -> None:
    assert options.check_schedule(None, None) == (None, 0.0)


@pytest.mark.parametrize(
    "run_at",
    [
        datetime(2030, 1, 1, tzinfo=UTC),
        datetime(2030, 1, 1, tzinfo=timezone(timedelta(hours=-7))),
        datetime(2030, 1, 1, tzinfo=ZoneInfo("Europe/Paris")),
        datetime(2000, 1, 1, tzinfo=UTC),  # in the past: runs at once
    ],
)
def test_aware_run_at_is_kept(run_at: datetime) -> None:
    assert options.check_schedule(run_at, None) == (run_at, 0.0)


@pytest.mark.parametrize(
    ("delay", "seconds"),
    [(0, 0.0), (1.5, 1.5), (60, 60.0), (timedelta(minutes=2), 120.0), (timedelta(0), 0.0)],
)
def test_delay_in_seconds_or_timedelta(delay: Any, seconds: float) -> None:
    assert options.check_schedule(None, delay) == (None, seconds)


@pytest.mark.parametrize(
    ("run_at", "delay", "words"),
    [
        (datetime(2030, 1, 1, tzinfo=UTC), 5, "either run_at or delay, not both"),
        (datetime(2030, 1, 1, tzinfo=UTC), timedelta(0), "not both"),
        (datetime(2030, 1, 1), None, "run_at is a naive datetime"),
        ("2030-01-01T00:00:00Z", None, "run_at must be a datetime, not str"),
        (1_900_000_000, None, "run_at must be a datetime, not int"),
        (None, -1, "delay must be between 0 and"),
        (None, timedelta(seconds=-1), "delay must be between 0"),
        (None, float("nan"), "delay must be between 0"),
        (None, float("inf"), "delay must be between 0"),
        (None, options.DELAY_MAX_SECONDS + 1, "delay must be between 0"),
        (None, "10", "delay must be seconds or a timedelta"),
        (None, True, "delay must be seconds or a timedelta"),
    ],
)
def test_bad_schedule(run_at: Any, delay: Any, words: str) -> None:
    with pytest.raises(pgq.OptionError, match=words):
        options.check_schedule(run_at, delay)


def test_a_tzinfo_that_gives_no_offset_counts_as_naive() -> None:
    class NoOffset(tzinfo):
        def utcoffset(self, dt: datetime | None) -> None:
            return None

    with pytest.raises(pgq.OptionError, match="naive"):
        options.check_schedule(datetime(2030, 1, 1, tzinfo=NoOffset()), None)


@pytest.mark.parametrize("key", [None, "k", "order:42", "é" * 256, "x" * 512])
def test_good_unique_keys(key: str | None) -> None:
    assert options.check_unique_key(key) == key


@pytest.mark.parametrize(
    ("key", "words"),
    [
        ("", "non-empty string or None"),
        (42, "non-empty string or None"),
        ("x" * 513, "at most 512 bytes"),
        ("é" * 257, "at most 512 bytes"),
        ("a\x00", "no NUL"),
        ("a\ud800", "not valid Unicode"),
    ],
)
def test_bad_unique_keys(key: Any, words: str) -> None:
    with pytest.raises(pgq.OptionError) as info:
        options.check_unique_key(key)
    assert "unique_key" in str(info.value)
    assert words in str(info.value)


def test_option_errors_share_one_base() -> None:
    for cls in (pgq.QueueNameError, pgq.TaskNameError, pgq.OptionError):
        assert issubclass(cls, pgq.ValidationError)
        assert issubclass(cls, pgq.PgqError)
        assert issubclass(cls, ValueError)


def test_an_error_without_a_message_reads_its_docstring() -> None:
    assert str(pgq.QueueNameError()) == "The queue name is not valid."
