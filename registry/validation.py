"""The one bounded validator of tool arguments against a tool's JSON input schema.

Tool schemas come from remote servers, so a schema is hostile input too: ``"pattern": "^(a+)+$"``
with ``"aaaa…!"`` makes Python's backtracking ``re`` run for minutes, and ``re`` holds the GIL
throughout, so no thread can save the event loop from it. Every face (the REST gateway, ``/mcp``, the
agent) therefore validates through :func:`validate_arguments` / :func:`validate_arguments_async`:

- every regular expression of a schema (``pattern``, ``patternProperties``, the keys that
  ``additionalProperties`` / ``unevaluatedProperties`` weigh, the ``regex`` format when the schema
  itself is checked) runs on RE2, which is linear in the text; a pattern RE2 cannot compile
  (backreferences, lookaround) refuses the arguments (:class:`SchemaUnsupported`) instead of
  falling back to ``re``;
- ``uniqueItems`` is linear (hashing) instead of jsonschema's quadratic fallback;
- schema and arguments are bounded in size and depth before any work starts;
- every keyword checks a deadline (``TOOL_VALIDATION_TIMEOUT``, 1 s by default), so a schema that
  fans out exponentially (``anyOf`` over ``$ref`` chains) stops itself: :class:`ValidationTimeout`;
- the async form runs in a small thread pool of its own, never on the event loop.

Errors are :class:`ArgumentsInvalid` (400) with ``field`` set to the JSON path of the argument.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import json
import logging
import math
import threading
import time
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from itertools import islice
from typing import Any

import re2
from jsonschema import Draft202012Validator, FormatChecker, ValidationError, _keywords, _utils
from jsonschema.validators import extend

from netops.errors import InvalidInput
from netops.text import json_path, path_of, text_problem, walk

logger = logging.getLogger(__name__)

DEFAULT_TIME_LIMIT = 1.0  # seconds; TOOL_VALIDATION_TIMEOUT overrides
MAX_SCHEMA_CHARS = 256_000  # as canonical JSON
MAX_SCHEMA_DEPTH = 64
MAX_ARGUMENT_DEPTH = 32
MAX_ARGUMENT_NODES = 20_000  # values, keys included: far above what a tool call carries
MAX_ARGUMENT_TEXT = 1_000_000  # characters over all strings and keys
MAX_ERRORS = 50  # collected before the first (by path) is reported
MAX_MESSAGE = 300
RE2_MAX_MEMORY = 8 << 20  # bytes per compiled pattern


class ArgumentsInvalid(InvalidInput):
    """The arguments break the tool's input schema; ``field`` is the JSON path of the argument."""

    code = "invalid_arguments"


class SchemaUnsupported(ArgumentsInvalid):
    """The tool's schema cannot be evaluated safely (a pattern RE2 cannot run, an endless ``$ref``)."""

    code = "unsupported_schema"


class ValidationTimeout(ArgumentsInvalid):
    """Validation did not finish within the time limit (the arguments are refused, not let through)."""

    code = "validation_timeout"


# --- RE2 in place of re ----------------------------------------------------------------------------


class _UnsafePattern(Exception):
    def __init__(self, pattern: str, reason: str) -> None:
        super().__init__(reason)
        self.pattern, self.reason = pattern, reason


class _OutOfTime(Exception):
    pass


_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # RE2 would print every refused pattern on stderr
_OPTIONS.max_mem = RE2_MAX_MEMORY


@lru_cache(maxsize=2048)
def _compiled(pattern: str) -> Any:
    """The RE2 program for ``pattern``, or the reason (str) it cannot be one; cached either way."""
    try:
        return re2.compile(pattern, _OPTIONS)
    except re2.error as exc:
        return str(
            exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else exc
        )
    except (TypeError, UnicodeEncodeError) as exc:
        return str(exc)


def regex_search(pattern: str, text: str) -> bool:
    """``re.search(pattern, text) is not None``, in linear time; raises ``_UnsafePattern``."""
    program = _compiled(pattern)
    if isinstance(program, str):
        raise _UnsafePattern(pattern, program)
    return program.search(text) is not None


class _Re2Module:
    """The part of the ``re`` module that jsonschema's keyword functions use, answered by RE2."""

    @staticmethod
    def search(pattern: str, string: str, flags: int = 0) -> bool | None:
        return regex_search(pattern, string) or None

    match = search  # not used by jsonschema today; a safe answer if a later release does

    @staticmethod
    def compile(pattern: str, flags: int = 0) -> Any:
        program = _compiled(pattern)
        if isinstance(program, str):
            raise _UnsafePattern(pattern, program)
        return program


def _rebound(function: Callable[..., Any], **names: Any) -> Callable[..., Any]:
    """A copy of a jsonschema function whose global names (``re``, helpers) are replaced.

    jsonschema reaches for the module ``re`` from five places (``pattern``, ``patternProperties``,
    ``additionalProperties``, ``unevaluatedProperties`` and their helpers). Copying those functions
    with ``re`` bound to RE2 covers all of them without patching jsonschema for the whole process.
    """
    scope = {**function.__globals__, **names}
    copy = types.FunctionType(function.__code__, scope, function.__name__, function.__defaults__)
    copy.__kwdefaults__ = function.__kwdefaults__
    scope[function.__name__] = copy  # recursive helpers call the copy
    return copy


_find_additional = _rebound(_utils.find_additional_properties, re=_Re2Module)
_find_evaluated_keys = _rebound(_utils.find_evaluated_property_keys_by_schema, re=_Re2Module)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if validator.is_type(instance, "string") and not regex_search(pattern, instance):
        yield ValidationError(f"{_short(instance)} does not match {pattern!r}")


def _canonical(value: Any) -> Any:
    """A hashable form under which two JSON values are equal exactly when JSON Schema says so."""
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, int | float):
        return ("n", value)  # 1 == 1.0, with the same hash
    if isinstance(value, dict):
        return ("o", frozenset((key, _canonical(item)) for key, item in value.items()))
    if isinstance(value, list | tuple):
        return ("a", tuple(_canonical(item) for item in value))
    return ("v", value) if isinstance(value, str) or value is None else ("r", repr(value))


def _unique_items(validator: Any, unique: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    if not unique or not validator.is_type(instance, "array"):
        return
    seen: set[Any] = set()
    for item in instance:
        key = _canonical(item)
        if key in seen:
            yield ValidationError(f"{_short(instance)} has non-unique elements")
            return
        seen.add(key)


def _fails(validator: Any, instance: Any, subschema: Any, index: int) -> bool:
    return next(iter(validator.descend(instance, subschema, schema_path=index)), None) is not None


def _any_of(validator: Any, any_of: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """``anyOf`` stopping at a branch's first error and keeping no error tree.

    jsonschema keeps every branch's errors as the context of the one it reports, each child linked
    to its parent: a reference cycle per error, so a fanning-out schema leaves millions of objects that
    only the cyclic garbage collector frees, in pauses of a second that hold the GIL (and the loop).
    """
    if all(_fails(validator, instance, subschema, index) for index, subschema in enumerate(any_of)):
        yield ValidationError(f"{_short(instance)} is not valid under any of the given schemas")


def _one_of(validator: Any, one_of: Any, instance: Any, schema: Any) -> Iterator[ValidationError]:
    """``oneOf`` the way of :func:`_any_of`: no error tree kept."""
    valid = [
        index for index, subschema in enumerate(one_of) if not _fails(validator, instance, subschema, index)
    ]
    if not valid:
        yield ValidationError(f"{_short(instance)} is not valid under any of the given schemas")
    elif len(valid) > 1:
        yield ValidationError(f"{_short(instance)} is valid under more than one of the given schemas")


_deadline: contextvars.ContextVar[float] = contextvars.ContextVar("validation_deadline", default=math.inf)


_calls = itertools.count()
YIELD_EVERY = 16  # keyword evaluations between a deadline check and a GIL hand-over


def _bounded(keyword: Callable[..., Any]) -> Callable[..., Any]:
    """The keyword, checking the deadline first: every level of the schema passes through here."""

    def checked(validator: Any, value: Any, instance: Any, schema: Any) -> Any:
        if next(_calls) % YIELD_EVERY == 0:
            # Hand the GIL over now and then: the event loop's thread waits for it otherwise
            # (the interpreter's switch interval), and every request it serves waits too.
            time.sleep(0)
            if time.monotonic() > _deadline.get():
                raise _OutOfTime
        return keyword(validator, value, instance, schema)

    checked.__name__ = getattr(keyword, "__name__", "keyword")
    return checked


def _is_regex(instance: object) -> bool:
    if isinstance(instance, str):
        _Re2Module.compile(instance)
    return True


FORMAT_CHECKER = FormatChecker(formats=())
FORMAT_CHECKER.checks("regex", raises=_UnsafePattern)(_is_regex)

_KEYWORDS: dict[str, Callable[..., Any]] = {
    **Draft202012Validator.VALIDATORS,
    "pattern": _pattern,
    "patternProperties": _rebound(_keywords.patternProperties, re=_Re2Module),
    "additionalProperties": _rebound(
        _keywords.additionalProperties, find_additional_properties=_find_additional
    ),
    "unevaluatedProperties": _rebound(
        _keywords.unevaluatedProperties, find_evaluated_property_keys_by_schema=_find_evaluated_keys
    ),
    "uniqueItems": _unique_items,
    "anyOf": _any_of,
    "oneOf": _one_of,
}

BoundedValidator = extend(
    Draft202012Validator,
    validators={name: _bounded(function) for name, function in _KEYWORDS.items()},
    format_checker=FORMAT_CHECKER,
)


# --- schemas: checked once, cached -----------------------------------------------------------------

_CACHE_SIZE = 256
_cache: OrderedDict[str, Any] = OrderedDict()
_cache_lock = threading.Lock()
_MISSING = object()


def _depth_and_problem(value: Any, max_depth: int) -> tuple[str, str] | None:
    for depth, link, node, _ in walk(value):
        if depth > max_depth:
            return json_path(path_of(link)[:max_depth]), f"is nested more than {max_depth} levels deep"
        if isinstance(node, str) and (problem := text_problem(node)):
            return json_path(path_of(link)), problem
    return None


def _build(schema: Any, key: str) -> Any:
    """A validator for ``schema``, or None when the schema is not a valid JSON Schema (not judged)."""
    if len(key) > MAX_SCHEMA_CHARS:
        raise SchemaUnsupported(
            f"the tool's input schema is larger than {MAX_SCHEMA_CHARS} characters", field="schema"
        )
    found = _depth_and_problem(schema, MAX_SCHEMA_DEPTH)
    if found is not None:
        raise SchemaUnsupported(
            f"the tool's input schema {found[1]} (at {found[0] or 'the top'})", field="schema"
        )
    errors = list(
        islice(
            # The meta-schema check is costly too (0.2 s for 30 $defs): bounded and yielding like the rest.
            BoundedValidator(Draft202012Validator.META_SCHEMA, format_checker=FORMAT_CHECKER).iter_errors(
                schema
            ),
            MAX_ERRORS,
        )
    )
    for error in errors:
        if error.validator == "format" and error.validator_value == "regex":
            reason = error.cause.reason if isinstance(error.cause, _UnsafePattern) else str(error.cause)
            raise SchemaUnsupported(_unsafe_message(str(error.instance), reason), field="schema")
    if errors:
        # A server's broken schema: as before, the tool judges its own arguments.
        logger.info("a tool's input schema is invalid and is not applied: %s", errors[0].message[:200])
        return None
    return BoundedValidator(schema)


def _validator_for(schema: Any) -> Any:
    if schema is None or schema == {}:
        schema = {"type": "object"}
    if not isinstance(schema, dict | bool):
        return None
    key = json.dumps(schema, sort_keys=True, default=str)
    with _cache_lock:
        cached = _cache.get(key, _MISSING)
        if cached is not _MISSING:
            _cache.move_to_end(key)
    if cached is _MISSING:
        try:
            cached = _build(schema, key)
        except SchemaUnsupported as exc:
            cached = exc  # refused once, refused from the cache afterwards
        with _cache_lock:
            _cache[key] = cached
            while len(_cache) > _CACHE_SIZE:
                _cache.popitem(last=False)
    if isinstance(cached, SchemaUnsupported):
        raise SchemaUnsupported(cached.message, field=cached.field)
    return cached


def _unsafe_message(pattern: str, reason: str) -> str:
    shown = pattern if len(pattern) <= 80 else pattern[:77] + "..."
    return (
        f"the tool's input schema uses the pattern {shown!r}, which netops does not evaluate "
        f"(only linear-time regular expressions: no backreferences or lookaround; {reason})"
    )


# --- arguments -----------------------------------------------------------------------------------


def _check_arguments(arguments: Any) -> None:
    text = 0
    for nodes, (depth, link, node, _) in enumerate(walk(arguments), start=1):
        if depth > MAX_ARGUMENT_DEPTH:
            raise ArgumentsInvalid(
                f"the arguments are nested more than {MAX_ARGUMENT_DEPTH} levels deep",
                field=json_path(path_of(link)[:MAX_ARGUMENT_DEPTH]),
            )
        if isinstance(node, str):
            text += len(node)
            if problem := text_problem(node):
                raise ArgumentsInvalid(problem, field=json_path(path_of(link)) or "arguments")
        if nodes > MAX_ARGUMENT_NODES or text > MAX_ARGUMENT_TEXT:
            raise ArgumentsInvalid(
                f"the arguments are too large (at most {MAX_ARGUMENT_NODES} values "
                f"and {MAX_ARGUMENT_TEXT} characters of text)",
                field="arguments",
            )


def _describe(error: ValidationError) -> ArgumentsInvalid:
    """The error as the gateway has always worded it, with the argument's JSON path as ``field``."""
    where = json_path(error.absolute_path)
    message = error.message if len(error.message) <= MAX_MESSAGE else error.message[: MAX_MESSAGE - 3] + "..."
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        field = json_path([*error.absolute_path, missing[0]]) if missing else where
        return ArgumentsInvalid(message, field=field or "arguments")
    if "propertyNames" in error.absolute_schema_path and isinstance(error.instance, str):
        return ArgumentsInvalid(message, field=json_path([*error.absolute_path, error.instance]))
    if error.validator in ("additionalProperties", "unevaluatedProperties"):
        unknown = _unknown_names(error)
        field = json_path([*error.absolute_path, unknown[0]]) if unknown else where
        return ArgumentsInvalid(f"unknown argument: {message}", field=field or "arguments")
    return ArgumentsInvalid(message, field=where or "arguments")


def _unknown_names(error: ValidationError) -> list[str]:
    """The properties an ``additionalProperties: false`` error is about (by name, not by its words)."""
    if not isinstance(error.instance, dict) or not isinstance(error.schema, dict):
        return []
    known = error.schema.get("properties") or {}
    patterns = list(error.schema.get("patternProperties") or {})
    try:
        return sorted(
            name
            for name in error.instance
            if name not in known and not any(regex_search(p, name) for p in patterns)
        )
    except _UnsafePattern:
        return []


def _time_limit() -> float:
    try:
        from django.conf import settings

        return float(getattr(settings, "TOOL_VALIDATION_TIMEOUT", DEFAULT_TIME_LIMIT))
    except Exception:  # settings not configured (a script, the agent tested alone)
        return DEFAULT_TIME_LIMIT


def _timeout_error(limit: float) -> ValidationTimeout:
    return ValidationTimeout(f"the arguments could not be validated within {limit:g} s", field="arguments")


def _validate(schema: Any, arguments: Any, limit: float) -> None:
    _check_arguments(arguments)
    try:
        validator = _validator_for(schema)
        if validator is None:
            return
        errors = list(islice(validator.iter_errors(arguments), MAX_ERRORS))
    except _OutOfTime:
        raise _timeout_error(limit) from None
    except _UnsafePattern as exc:
        raise SchemaUnsupported(_unsafe_message(exc.pattern, exc.reason), field="schema") from None
    except RecursionError:
        raise SchemaUnsupported(
            "the tool's input schema refers to itself without end", field="schema"
        ) from None
    except ArgumentsInvalid:
        raise
    except Exception as exc:  # an unresolvable $ref, or anything else jsonschema cannot evaluate
        logger.warning("a tool's input schema could not be evaluated: %s", type(exc).__name__)
        raise SchemaUnsupported(
            f"the tool's input schema could not be evaluated ({type(exc).__name__})", field="schema"
        ) from None
    if errors:
        raise _describe(min(errors, key=lambda e: [str(p) for p in e.absolute_path]))


def validate_arguments(
    schema: Mapping[str, Any] | None, arguments: Any, *, time_limit: float | None = None
) -> None:
    """Check ``arguments`` against a tool's input ``schema``; raise :class:`ArgumentsInvalid` if not.

    Synchronous and bounded (sizes, RE2, a deadline checked at every keyword): safe in a worker
    thread or a sync view. On the event loop use :func:`validate_arguments_async`.
    A schema that is not valid JSON Schema is not applied (the tool judges its own arguments).
    """
    limit = _time_limit() if time_limit is None else time_limit
    token = _deadline.set(time.monotonic() + limit)
    try:
        _validate(schema, arguments, limit)
    finally:
        _deadline.reset(token)


_executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tool-schema-validation")


def _validate_until(schema: Any, arguments: Any, deadline: float, limit: float) -> None:
    _deadline.set(deadline)  # this thread's own context (run_in_executor does not copy the caller's)
    if time.monotonic() > deadline:  # waited in the queue past its time: do not start
        raise _timeout_error(limit)
    _validate(schema, arguments, limit)


async def validate_arguments_async(
    schema: Mapping[str, Any] | None, arguments: Any, *, time_limit: float | None = None
) -> None:
    """:func:`validate_arguments` in the validation thread pool, never blocking the event loop.

    The deadline is set when the call is made, so time spent waiting for a free thread counts.
    """
    limit = _time_limit() if time_limit is None else time_limit
    deadline = time.monotonic() + limit
    loop = asyncio.get_running_loop()
    context = contextvars.copy_context()
    future = loop.run_in_executor(_executor, context.run, _validate_until, schema, arguments, deadline, limit)
    try:
        await asyncio.wait_for(future, timeout=limit + 0.5)  # the thread stops itself at the deadline
    except TimeoutError:
        raise _timeout_error(limit) from None
