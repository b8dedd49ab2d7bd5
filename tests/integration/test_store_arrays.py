"""The array literals the worker's statements take (store.number_array, word_array,
text_array) reach PostgreSQL as exactly the values they were built from."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgq import store

TRICKY_TEXTS = [
    None,
    "",
    "NULL",
    "plain",
    'say "hi"',
    'back\\slash \\\\ and \\" mixed',
    "{braces},commas, and spaces ",
    "line\nbreak\ttab",
    "ünïcødé ✓ 🎉",
    '{"kind": "ValueError", "message": "bad \\"x\\"", "traceback": null}',
]


def _round_trip(conn: psycopg.Connection[Any], literal: str, cast: str) -> list[Any]:
    row = conn.execute(f"SELECT %s::{cast}".encode(), (literal,)).fetchone()
    assert row is not None
    return list(row[0])


def test_text_array_keeps_every_string_and_null(conn: psycopg.Connection[Any]) -> None:
    assert _round_trip(conn, store.text_array(TRICKY_TEXTS), "text[]") == TRICKY_TEXTS


def test_number_array_keeps_ints_and_floats(conn: psycopg.Connection[Any]) -> None:
    ints = [0, 1, -1, 2**62, 9_007_199_254_740_993]
    floats = [0.0, 0.1, 1e-300, 1e300, 12345.678901234567, float("inf")]
    assert _round_trip(conn, store.number_array(ints), "bigint[]") == ints
    assert _round_trip(conn, store.number_array(floats), "float8[]") == floats


@pytest.mark.parametrize("values", [[], ["succeeded"], ["retry", "snooze", "release"]])
def test_word_array(conn: psycopg.Connection[Any], values: list[str]) -> None:
    assert _round_trip(conn, store.word_array(values), "text[]") == values


def test_empty_arrays(conn: psycopg.Connection[Any]) -> None:
    assert _round_trip(conn, store.number_array([]), "bigint[]") == []
    assert _round_trip(conn, store.text_array([]), "text[]") == []
