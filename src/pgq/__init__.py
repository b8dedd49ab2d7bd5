"""pgq: a job queue that lives in your own PostgreSQL database.

Enqueue inside your transaction, run ``pgq work``, and a job exists exactly when the
business change that asked for it commits.
"""

from pgq.args import set_max_bytes as set_args_max_bytes
from pgq.args import set_result_max_bytes
from pgq.enqueue import enqueue, enqueue_many
from pgq.errors import (
    ArgsError,
    ArgsTooLargeError,
    DatabaseUnavailableError,
    DatabaseUrlError,
    Fail,
    JobCancelled,
    JobFailed,
    JobNotFinished,
    JobNotFound,
    LeaseLost,
    MissingExtraError,
    OptionError,
    PgqError,
    QueueNameError,
    ResultError,
    ResultTooLargeError,
    Retry,
    ScheduleError,
    ScheduleOverdue,
    SchemaError,
    SessionTypeError,
    Snooze,
    TaskNameError,
    TaskRegistrationError,
    ValidationError,
    WaitTimeout,
)
from pgq.periodic import Schedule, periodic, schedule
from pgq.registry import JobSpec, Task, task
from pgq.results import result, wait, wait_async
from pgq.retry import Backoff
from pgq.runner import JobContext
from pgq.workflows import Chain, Group, ParentJob, Workflow, chain, group, parents

__version__ = "0.1.0"

__all__ = [
    "ArgsError",
    "ArgsTooLargeError",
    "Backoff",
    "Chain",
    "DatabaseUnavailableError",
    "DatabaseUrlError",
    "Fail",
    "Group",
    "JobCancelled",
    "JobContext",
    "JobFailed",
    "JobNotFinished",
    "JobNotFound",
    "JobSpec",
    "LeaseLost",
    "MissingExtraError",
    "OptionError",
    "ParentJob",
    "PgqError",
    "QueueNameError",
    "ResultError",
    "ResultTooLargeError",
    "Retry",
    "Schedule",
    "ScheduleError",
    "ScheduleOverdue",
    "SchemaError",
    "SessionTypeError",
    "Snooze",
    "Task",
    "TaskNameError",
    "TaskRegistrationError",
    "ValidationError",
    "WaitTimeout",
    "Workflow",
    "__version__",
    "chain",
    "enqueue",
    "enqueue_many",
    "group",
    "parents",
    "periodic",
    "result",
    "schedule",
    "set_args_max_bytes",
    "set_result_max_bytes",
    "task",
    "wait",
    "wait_async",
]
