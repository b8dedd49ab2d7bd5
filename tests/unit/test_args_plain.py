"""encode_args' fast path for plain args: never a different answer from the full walk.

The fast path checks types per container and NUL, surrogates and long integers on the
encoded text. Each case here is run both ways: the fast path either gives up (None) or
returns exactly the full walk's text, and encode_args always agrees with the full walk,
error type and message included.
"""

from __future__ import annotations

import enum
import json
import random
from collections import OrderedDict
from collections.abc import Iterator
from types import MappingProxyType
from typing import Any

import pytest

import pgq
from pgq import args as pgq_args
from pgq.args import ARGS_INT_MAX_DIGITS, ARGS_MAX_BYTES_DEFAULT, ARGS_MAX_DEPTH, encode_args


class Colour(enum.IntEnum):
    RED = 1


class Name(str):
    pass


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def cyclic() -> dict[str, Any]:
    value: dict[str, Any] = {}
    value["self"] = value
    return value


GOOD: list[Any] = [
    {},
    {"i": 1},
    {"s": "héllo ✓ 😀", "f": 1.5, "b": True, "n": None, "neg": -0.0},
    {"l": [1, "two", [3.0], {"four": 4}], "t": (1, 2), "d": {"e": {"f": []}}},
    {"quote": 'a"b', "backslash": "a\\b", "controls": "\n\t\r\x01\x1f"},
    # false alarms: the text looks suspicious, the values are fine
    {"looks_like_nul": "\\u0000"},
    {"digits": "1" * (ARGS_INT_MAX_DIGITS + 1)},
    {"int": 10**3999, "neg_int": -(10**3999)},
    {"brackets": "[" * 100 + "{" * 100},
    nested(ARGS_MAX_DEPTH),
    {"many": [{"x": i} for i in range(200)]},
    # not plain (the full walk takes them), yet fine
    {"enum": Colour.RED, "sub": Name("x"), Name("key"): 1},
    OrderedDict(a=1),
    MappingProxyType({"a": MappingProxyType({"b": 2})}),
]

BAD: list[Any] = [
    {"a": "x\x00y"},
    {"a\x00": 1},
    {"a": {"b": ["ok", "\x00"]}},
    {"a": "x\ud800"},
    {"\udfff": 1},
    {"a": [{"b": "\udc80"}]},
    {"a": float("nan")},
    {"a": [float("-inf")]},
    {1: "x"},
    {"a": {None: 1}},
    {"a": {True: 1}},
    {"a": {1.5: 1}},
    {"a": 10**ARGS_INT_MAX_DIGITS},
    {"a": [-(10**ARGS_INT_MAX_DIGITS)]},
    {"a": {1, 2}},
    {"a": b"x"},
    {"a": object()},
    nested(ARGS_MAX_DEPTH + 1),
    cyclic(),
    {"a": "x" * ARGS_MAX_BYTES_DEFAULT},
    {"a": "é" * (ARGS_MAX_BYTES_DEFAULT // 2)},
    [1, 2],
    "a=1",
]


def outcome(encode: Any, value: Any) -> tuple[str, str]:
    try:
        return "ok", encode(value)
    except pgq.ArgsError as exc:
        return type(exc).__name__, str(exc)


@pytest.mark.parametrize("value", GOOD + BAD, ids=lambda v: repr(v)[:40])
def test_the_fast_path_agrees_with_the_full_walk(value: Any) -> None:
    full = outcome(pgq_args._encode_checked, value)
    assert outcome(encode_args, value) == full
    fast = pgq_args._encode_plain(value)
    assert fast is None or ("ok", fast) == full


@pytest.mark.parametrize("value", BAD, ids=lambda v: repr(v)[:40])
def test_the_fast_path_never_accepts_bad_args(value: Any) -> None:
    assert pgq_args._encode_plain(value) is None


@pytest.mark.parametrize(
    "value",
    [{"i": 1}, {"s": "héllo"}, {"l": [1, [2, {"x": None}]], "t": (1.5,)}, nested(10)],
    ids=repr,
)
def test_plain_args_take_the_fast_path(value: Any) -> None:
    assert pgq_args._encode_plain(value) == pgq_args._encode_checked(value)


def test_the_fast_path_honours_a_changed_cap() -> None:
    previous = pgq.set_args_max_bytes(20)
    try:
        assert pgq_args._encode_plain({"a": "x" * 12}) is not None  # 20 bytes
        assert pgq_args._encode_plain({"a": "x" * 13}) is None
        with pytest.raises(pgq.ArgsTooLargeError, match="21 bytes"):
            encode_args({"a": "x" * 13})
    finally:
        pgq.set_args_max_bytes(previous)


def random_values(seed: int) -> Iterator[Any]:
    """Random args mixing plain values with every kind of trouble, for a wider net."""
    rng = random.Random(seed)
    scalars: list[Any] = [
        0, -1, 2**70, 10**4000, 1.25, float("nan"), float("inf"), True, False, None,
        "", "abc", "\x00", "\ud800", "é✓", "\\u0000", "\\", '"', "\n", b"x", Colour.RED,
    ]  # fmt: skip
    keys: list[Any] = ["a", "b", "é", "\x00", "\udfff", 1, None, Name("n")]

    def value(depth: int) -> Any:
        roll = rng.random()
        if depth < 4 and roll < 0.25:
            return {rng.choice(keys): value(depth + 1) for _ in range(rng.randint(0, 3))}
        if depth < 4 and roll < 0.4:
            items = [value(depth + 1) for _ in range(rng.randint(0, 3))]
            return tuple(items) if rng.random() < 0.3 else items
        return rng.choice(scalars)

    for _ in range(2000):
        yield {rng.choice(keys[:3]): value(1) for _ in range(rng.randint(0, 4))}


def test_random_args_get_the_same_answer_both_ways() -> None:
    taken = 0
    for value in random_values(seed=6):
        full = outcome(pgq_args._encode_checked, value)
        assert outcome(encode_args, value) == full, value
        fast = pgq_args._encode_plain(value)
        assert fast is None or ("ok", fast) == full, value
        taken += fast is not None
    assert taken > 100  # the net caught plain values too, not only bad ones


def test_the_fast_encoder_writes_what_json_dumps_writes() -> None:
    value = {"s": 'héllo ✓\n"q"', "f": [1.5, -0.0, 1e300], "i": 2**64, "n": None}
    expected = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    assert "".join(pgq_args._iterencode_plain(value, 0)) == expected
