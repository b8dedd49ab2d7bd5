"""Validation of job options: queue and task names, priority, attempts, schedule, unique key.

Everything that becomes part of a row is checked here, before any SQL runs, so a bad value
raises a typed error that names the field instead of aborting the caller's transaction.
"""

from __future__ import annotations

import math
import re
from datetime import datetime

from pgq.errors import OptionError, QueueNameError, TaskNameError

QUEUE_DEFAULT = "default"
PRIORITY_DEFAULT = 0
MAX_ATTEMPTS_DEFAULT = 20
PRIORITY_MIN, PRIORITY_MAX = -32768, 32767  # smallint
MAX_ATTEMPTS_MAX = 1000
QUEUE_NAME_MAX_BYTES = 63
TASK_NAME_MAX_BYTES = 255
UNIQUE_KEY_MAX_BYTES = 512
DELAY_MAX_SECONDS = 10 * 365 * 24 * 3600

_QUEUE_NAME = re.compile(r"[A-Za-z0-9_.:\-]+")


def check_queue(queue: object) -> str:
    if not isinstance(queue, str) or not queue:
        raise QueueNameError(f"queue name must be a non-empty string, not {queue!r}")
    # The pattern first: it admits only ASCII, so the length check below counts bytes and
    # a lone surrogate is reported as a bad character instead of crashing an encode().
    if not _QUEUE_NAME.fullmatch(queue):
        raise QueueNameError(
            f"queue name {queue[:70]!r} may contain only ASCII letters, digits and _ . : -"
        )
    if len(queue) > QUEUE_NAME_MAX_BYTES:
        raise QueueNameError(
            f"queue name {queue[:70]!r} is {len(queue)} bytes, longer than {QUEUE_NAME_MAX_BYTES}"
        )
    return queue


def check_task_name(name: object) -> str:
    if not isinstance(name, str) or not name.strip():
        raise TaskNameError(f"task name must be a non-empty string, not {name!r}")
    if "\x00" in name or len(name.encode("utf-8", "replace")) > TASK_NAME_MAX_BYTES:
        raise TaskNameError(
            f"task name {name[:70]!r} must be at most {TASK_NAME_MAX_BYTES} "
            "bytes with no NUL character"
        )
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise TaskNameError(f"task name {name!r} is not valid Unicode") from None
    return name


def check_priority(priority: object) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise OptionError(f"priority must be an integer, not {priority!r}")
    if not PRIORITY_MIN <= priority <= PRIORITY_MAX:
        raise OptionError(f"priority {priority} is out of range [{PRIORITY_MIN}, {PRIORITY_MAX}]")
    return priority


def check_max_attempts(max_attempts: object) -> int:
    if isinstance(max_attempts, bool) or not isinstance(max_attempts, int):
        raise OptionError(f"max_attempts must be an integer, not {max_attempts!r}")
    if not 1 <= max_attempts <= MAX_ATTEMPTS_MAX:
        raise OptionError(
            f"max_attempts must be between 1 and {MAX_ATTEMPTS_MAX}, not {max_attempts}"
        )
    return max_attempts


def check_schedule(run_at: object, delay: object) -> tuple[datetime | None, float]:
    """``(run_at, delay_seconds)``: at most one of the two, run_at timezone-aware."""
    if run_at is not None and delay is not None:
        raise OptionError("give either run_at or delay, not both")
    if run_at is not None:
        if not isinstance(run_at, datetime):
            raise OptionError(f"run_at must be a datetime, not {type(run_at).__name__}")
        if run_at.tzinfo is None or run_at.utcoffset() is None:
            raise OptionError(
                "run_at is a naive datetime; pass a timezone-aware one, "
                "e.g. datetime.now(timezone.utc)"
            )
        return run_at, 0.0
    if delay is None:
        return None, 0.0
    seconds = delay.total_seconds() if hasattr(delay, "total_seconds") else delay
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        raise OptionError(f"delay must be seconds or a timedelta, not {delay!r}")
    if not math.isfinite(seconds) or not 0 <= seconds <= DELAY_MAX_SECONDS:
        raise OptionError(f"delay must be between 0 and {DELAY_MAX_SECONDS} seconds, not {seconds}")
    return None, float(seconds)


def check_unique_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key:
        raise OptionError(f"unique_key must be a non-empty string or None, not {key!r}")
    if "\x00" in key or len(key.encode("utf-8", "replace")) > UNIQUE_KEY_MAX_BYTES:
        raise OptionError(
            f"unique_key must be at most {UNIQUE_KEY_MAX_BYTES} bytes with no NUL character"
        )
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise OptionError("unique_key is not valid Unicode (lone surrogate)") from None
    return key
