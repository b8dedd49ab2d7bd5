"""The @pgq.task decorator, Task.spec/configure and the Registry, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import pgq
from pgq.registry import JobSpec, Registry, Task


@pytest.fixture
def registry() -> Registry:
    return Registry()


def send_receipt(order_id: int) -> str:
    return f"sent {order_id}"


def test_default_name_is_module_and_function(registry: Registry) -> None:
    task = pgq.task(registry=registry)(send_receipt)
    assert task.name == f"{__name__}.send_receipt"
    assert registry.get(task.name) is task


def test_bare_decorator_registers_too() -> None:
    registry = Registry()

    @pgq.task(registry=registry)
    def nested() -> None:
        pass

    assert nested.name == f"{__name__}.test_bare_decorator_registers_too.<locals>.nested"
    assert list(registry) == [nested]


def test_the_task_stays_callable_like_the_function(registry: Registry) -> None:
    task = pgq.task(registry=registry)(send_receipt)
    assert isinstance(task, Task)
    assert task(7) == "sent 7"
    assert task(order_id=8) == "sent 8"
    assert not task.is_async


def test_async_functions_are_recognised(registry: Registry) -> None:
    async def fetch() -> None:
        pass

    assert pgq.task(registry=registry)(fetch).is_async


def test_options_are_validated_and_stored(registry: Registry) -> None:
    task = pgq.task(
        name="emails.send", queue="emails", priority=5, max_attempts=3, registry=registry
    )(send_receipt)
    assert (task.name, task.queue, task.priority, task.max_attempts) == (
        "emails.send",
        "emails",
        5,
        3,
    )


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"name": ""}, pgq.TaskNameError),
        ({"name": "a\x00"}, pgq.TaskNameError),
        ({"queue": "bad queue"}, pgq.QueueNameError),
        ({"priority": 40_000}, pgq.OptionError),
        ({"max_attempts": 0}, pgq.OptionError),
        ({"lease": 0}, pgq.TaskRegistrationError),
        ({"timeout": -1}, pgq.TaskRegistrationError),
    ],
)
def test_bad_options_raise_at_registration(
    registry: Registry, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        pgq.task(registry=registry, **kwargs)(send_receipt)
    assert len(registry) == 0


def test_a_non_function_is_refused(registry: Registry) -> None:
    with pytest.raises(pgq.TaskRegistrationError, match="needs a function"):
        pgq.task(registry=registry)(42)  # type: ignore[arg-type]


def test_same_name_from_different_functions_raises(registry: Registry) -> None:
    def first() -> None:
        pass

    def second() -> None:
        pass

    pgq.task(name="dup", registry=registry)(first)
    with pytest.raises(pgq.TaskRegistrationError, match="'dup' is already registered by"):
        pgq.task(name="dup", registry=registry)(second)
    assert registry.get("dup").func is first  # type: ignore[union-attr]


def test_registering_the_same_function_again_is_allowed(registry: Registry) -> None:
    # A module imported twice (worker reloads, test collection) registers the same function.
    pgq.task(registry=registry)(send_receipt)
    again = pgq.task(registry=registry, queue="other")(send_receipt)
    assert registry.get(again.name) is again
    assert len(registry) == 1


def test_registry_lists_tasks_and_queues(registry: Registry) -> None:
    def a() -> None:
        pass

    def b() -> None:
        pass

    pgq.task(name="a", queue="q2", registry=registry)(a)
    pgq.task(name="b", queue="q1", registry=registry)(b)
    assert sorted(task.name for task in registry) == ["a", "b"]
    assert registry.queues() == ["q1", "q2"]
    registry.remove("a")
    assert registry.get("a") is None
    assert len(registry) == 1


def test_spec_carries_the_task_defaults(registry: Registry) -> None:
    task = pgq.task(name="t", queue="emails", priority=3, max_attempts=4, registry=registry)(
        send_receipt
    )
    assert task.spec(order_id=1) == JobSpec(
        task="t", args={"order_id": 1}, queue="emails", priority=3, max_attempts=4
    )


def test_configure_overrides_only_what_it_names(registry: Registry) -> None:
    task = pgq.task(name="t", queue="emails", priority=3, registry=registry)(send_receipt)
    when = datetime(2030, 1, 1, tzinfo=UTC)
    spec = task.configure(queue="bulk", run_at=when, unique_key="k").spec(order_id=2)
    assert spec == JobSpec(
        task="t",
        args={"order_id": 2},
        queue="bulk",
        priority=3,
        run_at=when,
        max_attempts=pgq.registry.options.MAX_ATTEMPTS_DEFAULT,
        unique_key="k",
    )
    delayed = task.configure(delay=timedelta(seconds=30), priority=None).spec(order_id=3)
    assert (delayed.delay, delayed.priority, delayed.queue) == (timedelta(seconds=30), 3, "emails")


def test_configure_refuses_unknown_options(registry: Registry) -> None:
    task = pgq.task(name="t", registry=registry)(send_receipt)
    with pytest.raises(pgq.OptionError, match="unknown option\\(s\\) args, queeu"):
        task.configure(queeu="x", args={})


def test_specs_do_not_share_their_args(registry: Registry) -> None:
    call = pgq.task(name="t", registry=registry)(send_receipt).configure(priority=1)
    first, second = call.spec(order_id=1), call.spec(order_id=2)
    assert (first.args, second.args) == ({"order_id": 1}, {"order_id": 2})
