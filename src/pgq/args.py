"""Job arguments: checked, then encoded as JSON text, before anything reaches PostgreSQL.

PostgreSQL rejects some JSON that Python happily writes (``\\u0000``, lone surrogates,
``NaN``), and an error from the server would abort the caller's transaction. So every
value is walked here first and the first problem is reported with its path.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from pgq.errors import ArgsError, ArgsTooLargeError, ValidationError

ARGS_MAX_BYTES_DEFAULT = 256 * 1024
ARGS_MAX_DEPTH = 64
# Python refuses to turn integers longer than about 4300 digits into text (and so to read
# them back from JSON in the worker), so pgq stops well short of that.
ARGS_INT_MAX_DIGITS = 4000
_INT_LIMIT = 10**ARGS_INT_MAX_DIGITS

_max_bytes = ARGS_MAX_BYTES_DEFAULT


def set_max_bytes(limit: int) -> int:
    """Change the size cap for encoded arguments (default 256 KiB) for this process.

    Returns the previous cap, so a test can restore it. Raises ValidationError (a
    ValueError) unless ``limit`` is a positive integer.
    """
    global _max_bytes
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError(
            f"the args size cap must be a positive number of bytes, not {limit!r}"
        )
    previous, _max_bytes = _max_bytes, limit
    return previous


def _as_dict(value: Any) -> dict[Any, Any]:
    # json.dumps only knows dict; _check has already accepted any other Mapping.
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")  # pragma: no cover


# One encoder, built once: json.dumps with keyword arguments builds a new one per call,
# which was half the cost of validating a job in enqueue_many.
_ENCODER = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_as_dict
)


def encode_args(args: Mapping[str, Any] | None) -> str:
    """Return ``args`` as JSON text, or raise ArgsError naming the path and the problem."""
    if args is None:
        args = {}
    if not isinstance(args, Mapping):
        raise ArgsError(f"args must be a mapping of keyword arguments, not {type(args).__name__}")
    _check(args, "args", 0)
    text = _ENCODER.encode(args)
    size = len(text.encode("utf-8"))
    if size > _max_bytes:
        raise ArgsTooLargeError(
            f"args are {size} bytes as JSON, over the cap of {_max_bytes} bytes; "
            "store large data elsewhere and pass a reference"
        )
    return text


def _check(value: Any, path: str, depth: int) -> None:
    if depth > ARGS_MAX_DEPTH:
        raise ArgsError(f"{path} is nested deeper than {ARGS_MAX_DEPTH} levels")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, int):
        if abs(value) >= _INT_LIMIT:
            raise ArgsError(
                f"{path} is an integer of more than {ARGS_INT_MAX_DIGITS} digits; "
                "pass it as a string"
            )
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ArgsError(f"{path} is {value!r}; JSON has no NaN or Infinity")
        return
    if isinstance(value, str):
        _check_text(value, path)
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ArgsError(
                    f"{path} has a key {key!r} of type {type(key).__name__}; "
                    "JSON object keys must be strings"
                )
            _check_text(key, f"{path} key {key!r}")
            _check(item, f"{path}[{key!r}]", depth + 1)
        return
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", depth + 1)
        return
    raise ArgsError(
        f"{path} is a {type(value).__name__}, which is not JSON-serialisable; "
        "pass str, int, float, bool, None, lists or dicts"
    )


def _check_text(text: str, path: str) -> None:
    if "\x00" in text:
        raise ArgsError(f"{path} contains a NUL character, which PostgreSQL cannot store")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ArgsError(
            f"{path} contains a lone surrogate at position {exc.start}; it is not valid Unicode"
        ) from None
