"""Job arguments: what encode_args accepts, what it rejects, and where it says the problem is."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest

import pgq
from pgq import args as pgq_args
from pgq.args import ARGS_MAX_BYTES_DEFAULT, ARGS_MAX_DEPTH, encode_args


@pytest.fixture
def restore_cap() -> Iterator[None]:
    previous = pgq.set_args_max_bytes(ARGS_MAX_BYTES_DEFAULT)
    yield
    pgq.set_args_max_bytes(previous)


def test_none_and_empty_encode_as_an_empty_object() -> None:
    assert encode_args(None) == "{}"
    assert encode_args({}) == "{}"


def test_round_trips_every_json_type_compactly() -> None:
    value = {
        "s": "héllo ✓ 😀",
        "i": -(2**63),
        "big": 10**40,
        "f": 1.5,
        "neg_zero": -0.0,
        "b": True,
        "n": None,
        "l": [1, "two", [3.0], {"four": 4}],
        "t": (1, 2),
        "d": {"nested": {"deeper": []}},
    }
    text = encode_args(value)
    assert json.loads(text) == {**value, "t": [1, 2]}
    assert ", " not in text and ": " not in text  # compact separators
    assert "😀" in text  # not \\u escaped: the size cap counts real UTF-8 bytes


def test_any_mapping_is_accepted_at_every_level() -> None:
    text = encode_args(MappingProxyType({"outer": MappingProxyType({"inner": 1})}))
    assert json.loads(text) == {"outer": {"inner": 1}}


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ([1, 2], "not list"),
        ("a=1", "not str"),
        (5, "not int"),
        ({("a",): 1}.items(), "not dict_items"),
    ],
)
def test_args_must_be_a_mapping(value: Any, words: str) -> None:
    with pytest.raises(pgq.ArgsError, match="args must be a mapping") as info:
        encode_args(value)
    assert words in str(info.value)


class Opaque:
    pass


@pytest.mark.parametrize(
    ("value", "path", "problem"),
    [
        ({"a": Opaque()}, "args['a']", "Opaque, which is not JSON-serialisable"),
        ({"a": {1, 2}}, "args['a']", "set"),
        ({"a": b"x"}, "args['a']", "bytes"),
        ({"a": datetime(2024, 1, 1)}, "args['a']", "datetime"),
        ({"a": Decimal("1.5")}, "args['a']", "Decimal"),
        ({"a": {"b": [0, Opaque()]}}, "args['a']['b'][1]", "not JSON-serialisable"),
        ({"a": "x\x00y"}, "args['a']", "NUL character"),
        ({"a\x00": 1}, "args key 'a\\x00'", "NUL character"),
        ({"a": {"b": ["ok", "\x00"]}}, "args['a']['b'][1]", "NUL character"),
        ({"a": {"b\x00c": 1}}, "args['a'] key", "NUL character"),
        ({"a": "x\ud800"}, "args['a']", "lone surrogate at position 1"),
        ({"\udfff": 1}, "args key", "lone surrogate"),
        ({"a": [{"b": "\udc80"}]}, "args['a'][0]['b']", "lone surrogate"),
        ({"a": float("nan")}, "args['a']", "nan; JSON has no NaN or Infinity"),
        ({"a": float("inf")}, "args['a']", "inf; JSON has no NaN or Infinity"),
        ({"a": [float("-inf")]}, "args['a'][0]", "-inf"),
        ({1: "x"}, "args has a key 1 of type int", "keys must be strings"),
        ({"a": {None: 1}}, "args['a'] has a key None", "keys must be strings"),
        ({"a": {(1, 2): 1}}, "args['a'] has a key (1, 2)", "keys must be strings"),
        ({"a": 10**4001}, "args['a']", "more than 4000 digits"),
    ],
)
def test_bad_values_name_their_path(value: Any, path: str, problem: str) -> None:
    with pytest.raises(pgq.ArgsError) as info:
        encode_args(value)
    message = str(info.value)
    assert path in message
    assert problem in message
    assert type(info.value) is pgq.ArgsError


def test_an_integer_of_4000_digits_is_still_fine() -> None:
    assert json.loads(encode_args({"a": 10**3999}))["a"] == 10**3999


def test_nesting_is_bounded_so_a_cycle_is_an_error_not_a_crash() -> None:
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(pgq.ArgsError, match=f"deeper than {ARGS_MAX_DEPTH} levels"):
        encode_args(cyclic)


def test_nesting_up_to_the_limit_is_accepted() -> None:
    value: dict[str, Any] = {}
    for _ in range(ARGS_MAX_DEPTH):
        value = {"a": value}
    assert encode_args(value).count("{") == ARGS_MAX_DEPTH + 1


def _args_of_size(size: int) -> dict[str, str]:
    """Args whose JSON text is exactly ``size`` bytes: {"a":"xxx…"} is 8 bytes + payload."""
    return {"a": "x" * (size - 8)}


def test_the_default_cap_is_256_kib_and_inclusive(restore_cap: None) -> None:
    assert ARGS_MAX_BYTES_DEFAULT == 256 * 1024
    assert len(encode_args(_args_of_size(256 * 1024)).encode()) == 256 * 1024
    with pytest.raises(pgq.ArgsTooLargeError, match="262145 bytes as JSON, over the cap of 262144"):
        encode_args(_args_of_size(256 * 1024 + 1))


def test_the_cap_counts_utf8_bytes_not_characters(restore_cap: None) -> None:
    pgq.set_args_max_bytes(20)
    assert encode_args({"a": "é" * 6})  # 8 + 12 bytes
    with pytest.raises(pgq.ArgsTooLargeError, match="22 bytes"):
        encode_args({"a": "é" * 7})


def test_set_args_max_bytes_changes_the_cap_and_returns_the_previous_one(
    restore_cap: None,
) -> None:
    assert pgq.set_args_max_bytes(100) == ARGS_MAX_BYTES_DEFAULT
    assert encode_args(_args_of_size(100))
    with pytest.raises(pgq.ArgsTooLargeError, match="over the cap of 100 bytes"):
        encode_args(_args_of_size(101))
    assert pgq.set_args_max_bytes(1_000_000) == 100
    assert encode_args(_args_of_size(500_000))


@pytest.mark.parametrize("bad", [0, -1, 1.5, "10", True, None])
def test_set_args_max_bytes_rejects_anything_but_a_positive_int(
    restore_cap: None, bad: Any
) -> None:
    with pytest.raises(pgq.ValidationError, match="positive number of bytes"):
        pgq.set_args_max_bytes(bad)
    assert pgq_args._max_bytes == ARGS_MAX_BYTES_DEFAULT


def test_args_errors_are_pgq_errors_and_value_errors() -> None:
    assert issubclass(pgq.ArgsTooLargeError, pgq.ArgsError)
    for cls in (pgq.ArgsError, pgq.ArgsTooLargeError):
        assert issubclass(cls, pgq.PgqError)
        assert issubclass(cls, ValueError)
