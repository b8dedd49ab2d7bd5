"""Job arguments: checked, then encoded as JSON text, before anything reaches PostgreSQL.

PostgreSQL rejects some JSON that Python happily writes (``\\u0000``, lone surrogates,
``NaN``), and an error from the server would abort the caller's transaction. So every
value is walked here first and the first problem is reported with its path.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from json import encoder as json_encoder
from typing import Any

from pgq.errors import (
    ArgsError,
    ArgsTooLargeError,
    ResultError,
    ResultTooLargeError,
    ValidationError,
)

ARGS_MAX_BYTES_DEFAULT = 256 * 1024
# A task's return value is stored on its job's row (pgq.jobs.result), checked the same way.
RESULT_MAX_BYTES_DEFAULT = 256 * 1024
ARGS_MAX_DEPTH = 64
# Python refuses to turn integers longer than about 4300 digits into text (and so to read
# them back from JSON in the worker), so pgq stops well short of that.
ARGS_INT_MAX_DIGITS = 4000
_INT_LIMIT = 10**ARGS_INT_MAX_DIGITS

_max_bytes = ARGS_MAX_BYTES_DEFAULT
_result_max_bytes = RESULT_MAX_BYTES_DEFAULT


def set_max_bytes(limit: int) -> int:
    """Change the size cap for encoded arguments (default 256 KiB) for this process.

    Returns the previous cap, so a test can restore it. Raises ValidationError (a
    ValueError) unless ``limit`` is a positive integer.
    """
    global _max_bytes
    previous, _max_bytes = _max_bytes, _check_cap(limit, "args")
    return previous


def set_result_max_bytes(limit: int) -> int:
    """Change the size cap for a task's stored result (default 256 KiB) for this process
    (set it in the worker's process: the worker checks results).

    Returns the previous cap. Raises ValidationError unless ``limit`` is a positive integer.
    """
    global _result_max_bytes
    previous, _result_max_bytes = _result_max_bytes, _check_cap(limit, "result")
    return previous


def _check_cap(limit: object, what: str) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValidationError(
            f"the {what} size cap must be a positive number of bytes, not {limit!r}"
        )
    return limit


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
    text = _encode_plain(args)
    return text if text is not None else _encode_checked(args)


def _encode_checked(args: Any) -> str:
    """``encode_args`` the long way: every value checked with its path, then encoded."""
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


def encode_result(value: Any, task: str) -> str:
    """A task's return ``value`` as JSON text, checked like args (any JSON value, not only
    an object); raise ResultError naming ``task``, the path and the problem.

    The caller stores nothing for None: only call this for another value."""
    text = _encode_plain(value, _result_max_bytes) if type(value) is dict else None
    if text is not None:
        return text
    try:
        _check(value, "result", 0)
    except ArgsError as exc:
        raise ResultError(
            f"task {task!r} returned a value that cannot be stored as its result: {exc}; "
            "return JSON values (str, int, float, bool, None, lists, dicts with str keys)"
        ) from None
    text = _ENCODER.encode(value)
    size = len(text.encode("utf-8"))
    if size > _result_max_bytes:
        raise ResultTooLargeError(
            f"task {task!r} returned a result of {size} bytes as JSON, over the cap of "
            f"{_result_max_bytes} bytes; store large data elsewhere and return a reference "
            "(or raise the cap with pgq.set_result_max_bytes in the worker's process)"
        )
    return text


# --- the fast path ----------------------------------------------------------------------------
#
# Almost every job's args are a dict of str, int, float, bool and None, with a few plain
# lists and dicts inside. For those, what _check proves one value at a time (with a path
# string built for every value, which was most of the cost of enqueue_many's 50,000 jobs)
# can be proved per container from the set of its members' types, and on the encoded text
# once:
#   - keys: every key's type is exactly str (json would write the key 1 as "1", silently);
#   - types and depth: only containers are walked, and the walk gives up at the depth cap,
#     which also stops it on a cycle before the encoder (no circular check) sees one;
#   - NaN and Infinity: the encoder refuses them (allow_nan=False);
#   - NUL: the encoder writes it as \u0000 (ensure_ascii=False still escapes controls);
#   - lone surrogates: ensure_ascii=False leaves them in the text, so encoding the text to
#     UTF-8 (needed for the size anyway, unless it is ASCII) fails;
#   - integers over ARGS_INT_MAX_DIGITS digits: they are runs of that many digits in the text.
# Any doubt, false alarms included (a string holding a backslash and "u0000", or 4001
# digits), returns None and the full walk above decides, with its precise message.

_PLAIN_SCALARS = frozenset({str, int, float, bool, type(None)})
_PLAIN_CONTAINERS = frozenset({dict, list, tuple})
_STR_ONLY = frozenset({str})
_LONG_INT = re.compile(f"[0-9]{{{ARGS_INT_MAX_DIGITS + 1}}}")


def _refuse(value: Any) -> Any:
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def _plain_iterencode() -> Callable[..., Iterable[str]]:
    """The chunks of ``json.dumps(value)`` for plain values; an encoder built once.

    ``JSONEncoder.encode`` builds its C encoder afresh on every call, which cost as much as
    the encoding of a small dict; the C encoder itself is reusable. Where the C module is
    missing (or its signature changes), the pure-Python encoder does the same job.
    """
    encoder = json.JSONEncoder(
        ensure_ascii=False, allow_nan=False, separators=(",", ":"), check_circular=False
    )
    make = getattr(json_encoder, "c_make_encoder", None)
    basestring = getattr(json_encoder, "c_encode_basestring", None)
    if make is None or basestring is None:  # pragma: no cover - CPython has both
        return encoder.iterencode
    try:
        # (markers, default, encoder, indent, key_separator, item_separator, sort_keys,
        #  skipkeys, allow_nan): what JSONEncoder.iterencode passes for the settings above.
        iterencode: Callable[..., Iterable[str]]
        iterencode = make(None, _refuse, basestring, None, ":", ",", False, False, False)
    except TypeError:  # pragma: no cover - another CPython's signature
        return encoder.iterencode
    return iterencode


_iterencode_plain = _plain_iterencode()


def _encode_plain(args: Any, max_bytes: int | None = None) -> str | None:
    """``args`` as JSON text when it is plain and passes every check (``max_bytes`` at
    most; None: the args cap); None when in doubt."""
    # The walk of _is_plain, unrolled for the top level: most args stop there.
    if type(args) is not dict or not _STR_ONLY.issuperset(map(type, args)):
        return None
    if not _PLAIN_SCALARS.issuperset(map(type, args.values())) and not _is_plain(args, 0):
        return None
    try:
        text = "".join(_iterencode_plain(args, 0))
    except (ValueError, TypeError):  # NaN or Infinity
        return None
    if "\\u0000" in text:
        return None
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            return None
    if size > (_max_bytes if max_bytes is None else max_bytes):
        return None
    if size > ARGS_INT_MAX_DIGITS and _LONG_INT.search(text):
        return None
    return text


def _is_plain(value: Any, depth: int) -> bool:
    """True when ``value`` (a dict, list or tuple at ``depth``) holds only plain values.

    Conservative at the cap: a container at ARGS_MAX_DEPTH is left to the full walk.
    """
    if depth >= ARGS_MAX_DEPTH:
        return False
    if type(value) is dict:
        if not _STR_ONLY.issuperset(map(type, value)):
            return False
        members = value.values()
    else:
        members = value
    if _PLAIN_SCALARS.issuperset(map(type, members)):
        return True
    return all(
        type(member) in _PLAIN_SCALARS
        or (type(member) in _PLAIN_CONTAINERS and _is_plain(member, depth + 1))
        for member in members
    )


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


# --- binding arguments to a task's function ---------------------------------------------------
#
# Jobs call their function with keyword arguments only (``func(**args)``, after the context
# when the task takes one), so a signature is reduced once to the names it takes, the names
# it needs and whether it takes any name (``**kwargs``); each check is then a few set
# operations, cheap enough for every enqueue and every job a worker starts.


@dataclass(frozen=True, slots=True)
class _Signature:
    name: str  # the function's, for messages
    accepted: frozenset[str]  # names that may be passed by keyword
    required: frozenset[str]  # of those, the ones without a default
    any_keyword: bool  # the function takes **kwargs
    positional_only: frozenset[str]  # names only a positional argument can fill
    problem: str | None  # why no call with keyword arguments can work, if none can
    binds_any: bool = False  # every dict of keyword arguments binds

    def check(self, args: Mapping[str, Any]) -> str | None:
        """Why ``args`` do not bind, or None."""
        if self.binds_any and type(args) is dict:
            return None  # **kwargs and nothing required: the common no-op of benchmarks
        if type(args) is not dict and (problem := _not_a_mapping(args)) is not None:
            return problem
        if self.problem is not None:
            return self.problem
        given = args.keys()
        # The usual case, without building a set: every name taken, every required one given.
        if (self.any_keyword or given <= self.accepted) and self.required.issubset(given):
            return None
        # An unexpected name first, as Python does: it is often the missing one misspelt.
        unexpected = () if self.any_keyword else given - self.accepted
        if not unexpected:
            if not self.required:
                return None
            missing = self.required - given
            if not missing:
                return None
            names = ", ".join(repr(name) for name in sorted(missing))
            return f"{self.name}() is missing the required argument(s) {names}"
        first = min(unexpected, key=str)
        if first in self.positional_only:
            return (
                f"{self.name}() parameter {first!r} is positional-only, and pgq passes "
                "arguments by keyword; remove the '/' from its signature"
            )
        return f"{self.name}() got an unexpected argument {first!r}; it takes " + (
            ", ".join(repr(n) for n in sorted(self.accepted)) or "no arguments"
        )


def bind_args(
    func: Callable[..., Any], args: Mapping[str, Any], *, pass_context: bool = False
) -> None:
    """Check that ``func(**args)`` (``func(ctx, **args)`` with ``pass_context``) would bind.

    What ``Task.enqueue`` and ``Task.spec`` check before anything is sent, and what a worker
    checks before it starts a job. Raises [`ArgsError`][pgq.ArgsError] naming the parameter:
    a required one missing, an unexpected keyword, or a positional-only parameter (pgq passes
    arguments by keyword). Functions whose signature Python cannot tell (some built-ins) are
    not checked. Example::

        def send(order_id: int) -> None: ...

        bind_args(send, {"order_id": 1})  # fine
        bind_args(send, {"order": 1})  # ArgsError: ... unexpected argument 'order' ...
    """
    problem = args_problem(func, args, pass_context=pass_context)
    if problem is not None:
        raise ArgsError(problem)


def args_problem(
    func: Callable[..., Any], args: Mapping[str, Any], *, pass_context: bool = False
) -> str | None:
    """What ``bind_args`` would raise, as text; None when the arguments bind."""
    sig = signature_of(func, pass_context)
    return _not_a_mapping(args) if sig is None else sig.check(args)


def signature_of(func: Callable[..., Any], pass_context: bool = False) -> _Signature | None:
    """``func``'s signature as ``args_problem`` checks it (None: it cannot be told); a
    caller that checks many jobs of one function keeps it (``Task`` does)."""
    try:
        return _signature(func, pass_context)
    except TypeError:  # an unhashable callable: described afresh each time
        return _describe(func, pass_context)


def _not_a_mapping(args: Any) -> str | None:
    if isinstance(args, Mapping):
        return None
    return f"args must be a mapping of keyword arguments, not {type(args).__name__}"


def _describe(func: Callable[..., Any], pass_context: bool) -> _Signature | None:
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):  # a callable Python cannot describe: not checked
        return None
    # A function defined inside another is named from its own part of the qualified name.
    name = (getattr(func, "__qualname__", None) or repr(func)).rpartition("<locals>.")[2]
    problem = None
    if pass_context:
        if params and params[0].kind in (_POSITIONAL_ONLY, _POSITIONAL_OR_KEYWORD):
            params = params[1:]  # the context fills it
        elif not any(p.kind is _VAR_POSITIONAL for p in params):
            problem = f"{name}() takes no positional parameter for the context (pass_context=True)"
    accepted = {p.name for p in params if p.kind in (_POSITIONAL_OR_KEYWORD, _KEYWORD_ONLY)}
    required = {p.name for p in params if p.name in accepted and p.default is p.empty}
    positional_only = {p.name for p in params if p.kind is _POSITIONAL_ONLY}
    needed = [p.name for p in params if p.kind is _POSITIONAL_ONLY and p.default is p.empty]
    if problem is None and needed:
        problem = (
            f"{name}() parameter {needed[0]!r} is positional-only, and pgq passes arguments "
            "by keyword; remove the '/' from its signature"
        )
    any_keyword = any(p.kind is _VAR_KEYWORD for p in params)
    return _Signature(
        name=name,
        accepted=frozenset(accepted),
        required=frozenset(required),
        any_keyword=any_keyword,
        positional_only=frozenset(positional_only),
        problem=problem,
        binds_any=any_keyword and not required and problem is None,
    )


_signature = functools.lru_cache(maxsize=4096)(_describe)

_POSITIONAL_ONLY = inspect.Parameter.POSITIONAL_ONLY
_POSITIONAL_OR_KEYWORD = inspect.Parameter.POSITIONAL_OR_KEYWORD
_VAR_POSITIONAL = inspect.Parameter.VAR_POSITIONAL
_KEYWORD_ONLY = inspect.Parameter.KEYWORD_ONLY
_VAR_KEYWORD = inspect.Parameter.VAR_KEYWORD
