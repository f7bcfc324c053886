"""JSON at the edge: bounded nesting and text that PostgreSQL can store.

Python's ``json`` module parses 50,000 nested ``[`` into a ``RecursionError`` and accepts
lone surrogates (``"\\ud800"``) and NUL (``"\\u0000"``), which fail later — as a 500 when the
row is written, or, worse, after it is committed, when something reads it back. The parser
here refuses both before any view sees the data, naming the field (``context.name``):

- :func:`json_depth` measures the nesting of raw JSON text without parsing it;
- :func:`json_problems` walks a parsed value and reports each unstorable string by path;
- :class:`JSONParser` is DRF's parser with both checks, for every API view.

The limit is ``NOTIFYHUB_MAX_JSON_DEPTH`` (default 32).
"""
import codecs
import json
import re

from django.conf import settings
from rest_framework import parsers
from rest_framework.exceptions import ParseError, ValidationError

DEFAULT_MAX_DEPTH = 32
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(rb"[\[\]{}]")


def max_json_depth() -> int:
    return int(getattr(settings, "NOTIFYHUB_MAX_JSON_DEPTH", DEFAULT_MAX_DEPTH))


def json_depth(raw: bytes | str) -> int:
    """The deepest nesting of arrays and objects in ``raw`` (strings are skipped, so a ``[``
    inside a string does not count). Linear in the size of the text, no recursion."""
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    depth = deepest = 0
    for match in _BRACKETS.finditer(_STRINGS.sub(b'""', raw)):
        if match.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def _text_problem(text: str) -> str:
    if "\x00" in text:
        return "Contains a NUL character (\\u0000), which cannot be stored."
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "Contains a lone surrogate (e.g. \\ud800), which is not valid Unicode text."
    return ""


def json_problems(value, *, max_depth: int | None = None) -> dict:
    """Errors by path for every string (keys included) that cannot be stored and every object
    or array nested deeper than ``max_depth``; ``{}`` when the value is clean. The result nests
    like a serializer's errors: ``{"context": {"name": ["..."]}}``, list positions as strings."""
    limit = max_json_depth() if max_depth is None else max_depth
    errors: dict = {}

    def put(path: tuple, message: str) -> None:
        node = errors
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):  # a message already sits above this path
                return
        node.setdefault(path[-1] if path else "non_field_errors", [message])

    stack = [((), value, 0)]
    while stack:
        path, item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                put(path, f"Nested more than {limit} levels deep.")
                continue
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, child in pairs:
                key = str(key)
                problem = _text_problem(key)
                if problem:
                    put((*path, key.encode("utf-8", "backslashreplace").decode("utf-8")), f"Key: {problem}")
                    continue
                stack.append(((*path, key), child, depth + 1))
        elif isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                put(path, problem)
    return errors


def json_loads_checked(raw: bytes, *, max_depth: int | None = None):
    """Parse ``raw`` JSON; :class:`ParseError` when it is not JSON or nests too deep, and
    :class:`ValidationError` naming each unstorable string."""
    limit = max_json_depth() if max_depth is None else max_depth
    if json_depth(raw) > limit:
        raise ParseError(f"JSON nested more than {limit} levels deep.")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise ParseError(f"JSON parse error - {exc}") from None
    problems = json_problems(data, max_depth=limit)
    if problems:
        raise ValidationError(problems)
    return data


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser with the depth and text checks above; the errors name the field."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read() if stream is not None else b""
        if codecs.lookup(encoding).name != "utf-8":
            try:
                raw = raw.decode(encoding).encode("utf-8")
            except (UnicodeError, LookupError) as exc:
                raise ParseError(f"JSON parse error - {exc}") from None
        return json_loads_checked(raw)


def json_field_check(value) -> None:
    """Field-level validator: the same checks for values that did not come through the parser
    (a serializer fed from Python, a form)."""
    problems = json_problems(value)
    if problems:
        raise ValidationError(problems.get("non_field_errors") or problems)
