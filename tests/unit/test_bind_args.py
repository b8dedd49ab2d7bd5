"""bind_args: keyword arguments checked against a task's signature, the parameter named."""

from __future__ import annotations

import functools
from typing import Any

import pytest

import pgq
from pgq.args import args_problem, bind_args
from pgq.registry import Registry


def takes_x(x: int) -> None:
    """One required parameter."""


def takes_options(x: int, y: int = 2, *, z: int = 3) -> None:
    """A required one, a defaulted one, a keyword-only one."""


def takes_anything(x: int, **rest: Any) -> None:
    """**kwargs takes any other name."""


def positional_only(x: int, /) -> None:
    """A parameter no keyword can fill: no job can ever call it."""


def positional_only_defaulted(x: int = 1, /, y: int = 2) -> None:
    """A positional-only parameter with a default: fine unless a job names it."""


def with_context(ctx: Any, x: int) -> None:
    """pass_context=True: the context fills the first parameter."""


def test_arguments_that_bind_pass() -> None:
    bind_args(takes_x, {"x": 1})
    bind_args(takes_options, {"x": 1, "y": 5, "z": 6})
    bind_args(takes_anything, {"x": 1, "other": 2})
    bind_args(positional_only_defaulted, {"y": 3})
    bind_args(with_context, {"x": 1}, pass_context=True)


def test_a_missing_required_argument_is_named() -> None:
    with pytest.raises(
        pgq.ArgsError, match=r"takes_x\(\) is missing the required argument\(s\) 'x'"
    ):
        bind_args(takes_x, {})
    with pytest.raises(pgq.ArgsError, match="'x'"):
        bind_args(takes_anything, {"other": 1})


def test_an_unexpected_keyword_is_named_with_what_the_function_takes() -> None:
    with pytest.raises(pgq.ArgsError) as raised:
        bind_args(takes_options, {"x": 1, "w": 2})
    assert str(raised.value) == (
        "takes_options() got an unexpected argument 'w'; it takes 'x', 'y', 'z'"
    )


def test_a_function_without_parameters_says_so() -> None:
    def none() -> None:
        pass

    with pytest.raises(pgq.ArgsError, match="unexpected argument 'a'; it takes no arguments"):
        bind_args(none, {"a": 1})


def test_a_positional_only_parameter_is_refused_even_when_given_by_keyword() -> None:
    for args in ({}, {"x": 1}):
        with pytest.raises(pgq.ArgsError, match="parameter 'x' is positional-only"):
            bind_args(positional_only, args)
    with pytest.raises(pgq.ArgsError, match="parameter 'x' is positional-only"):
        bind_args(positional_only_defaulted, {"x": 1})


def test_a_positional_only_name_goes_to_kwargs_when_the_function_takes_them() -> None:
    def f(x: int = 1, /, **rest: Any) -> None:
        pass

    bind_args(f, {"x": 2})  # f(x=2) puts x into rest: Python calls it fine


def test_the_context_takes_the_first_parameter_only_with_pass_context() -> None:
    with pytest.raises(pgq.ArgsError, match="missing the required argument\\(s\\) 'ctx'"):
        bind_args(with_context, {"x": 1})
    with pytest.raises(pgq.ArgsError, match="unexpected argument 'ctx'"):
        bind_args(with_context, {"ctx": 1, "x": 1}, pass_context=True)

    def keyword_only(*, ctx: Any) -> None:
        pass

    with pytest.raises(pgq.ArgsError, match="no positional parameter for the context"):
        bind_args(keyword_only, {"ctx": 1}, pass_context=True)

    def star_args(*args: Any, x: int) -> None:
        pass

    bind_args(star_args, {"x": 1}, pass_context=True)


def test_arguments_that_are_not_a_mapping_are_refused() -> None:
    assert args_problem(takes_x, [1]) == "args must be a mapping of keyword arguments, not list"  # type: ignore[arg-type]


def test_callables_python_cannot_describe_are_not_checked() -> None:
    # inspect finds no signature for max (a built-in): nothing to check it against.
    assert args_problem(max, {"anything": 1}) is None
    with pytest.raises(pgq.ArgsError, match="unexpected argument 'anything'"):
        bind_args(print, {"anything": 1})  # a built-in with a signature is checked


def test_partials_and_callable_objects_are_checked_by_their_signature() -> None:
    partial = functools.partial(takes_options, 1)
    bind_args(partial, {"y": 3})
    with pytest.raises(pgq.ArgsError, match="unexpected argument 'q'"):
        bind_args(partial, {"q": 3})

    class Unhashable:
        __hash__ = None  # type: ignore[assignment]

        def __call__(self, a: int) -> None:
            pass

    with pytest.raises(pgq.ArgsError, match="'a'"):
        bind_args(Unhashable(), {})


def test_task_spec_and_enqueue_bind_before_anything_is_sent() -> None:
    reg = Registry()

    @pgq.task(name="bind.send", registry=reg)
    def send(order_id: int) -> None:
        pass

    assert send.spec(order_id=1).args == {"order_id": 1}
    with pytest.raises(pgq.ArgsError, match="unexpected argument 'order'"):
        send.spec(order=1)
    with pytest.raises(pgq.ArgsError, match="unexpected argument 'y'"):
        send.configure(delay=5).spec(order_id=1, y=5)
    # enqueue binds before it looks at the session: a session it cannot use is not reached.
    with pytest.raises(pgq.ArgsError, match="missing the required argument"):
        send.enqueue(object())
    with pytest.raises(pgq.ArgsError, match="missing the required argument"):
        pgq.enqueue(object(), send, {})


def test_enqueue_by_name_is_not_bound() -> None:
    # No function is known for a name: the session is reached (and refused) instead.
    with pytest.raises(pgq.SessionTypeError):
        pgq.enqueue(object(), "bind.not_registered_here", {"anything": 1})
