"""Segment definitions: validation (errors name the clause path) and compilation to one Q.

A definition is a node::

    {"all": [node, ...]} | {"any": [node, ...]} | {"not": node}
    | {"field": "locale", "op": "=", "value": "zh-CN"}

Fields: ``locale``, ``timezone``, ``created_at``, ``updated_at``, ``has_address`` (a channel
kind), ``topic`` (a topic key) and ``data.<key>[.<key>...]``. ``!=`` on a ``data`` key also
matches recipients without that key. Order comparisons on ``data`` keys compare numbers only
(a string "10" never passes ``> 3``), on PostgreSQL and on SQLite.
"""
import json
import operator
from datetime import UTC, datetime
from functools import reduce

from django.core.exceptions import ValidationError
from django.db.models import BooleanField, CharField, Exists, F, Func, OuterRef, Q, Value
from django.db.models.fields.json import KeyTextTransform, KeyTransform, compile_json_path
from django.db.models.lookups import Contains, Exact
from django.utils.dateparse import parse_date, parse_datetime

from channels_app.kinds import ChannelKind
from notifyhub.broadcasts.models import Subscription
from preferences.models import ContactPoint, Recipient

OPS = ("=", "!=", "<", "<=", ">", ">=", "in", "contains", "exists")
ORDER_OPS = ("<", "<=", ">", ">=")
FIELD_OPS = {
    "locale": ("=", "!=", "in", "contains", "exists"),
    "timezone": ("=", "!=", "in", "contains", "exists"),
    "created_at": ORDER_OPS,
    "updated_at": ORDER_OPS,
    "has_address": ("=", "!=", "in"),
    "topic": ("=", "!=", "in"),
}
MAX_DEPTH = 8
MAX_CLAUSES = 200
MAX_IN = 1000


class SegmentInvalid(ValidationError):
    """``errors`` maps clause paths (``definition.all[1].op``) to messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors)
        self.errors = errors


def _scalar(value) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _moment(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    moment = parse_datetime(value)
    if moment is None:
        day = parse_date(value)
        moment = datetime(day.year, day.month, day.day) if day else None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment


class _Checker:
    def __init__(self):
        self.errors: dict[str, list[str]] = {}
        self.clauses = 0

    def error(self, path: str, message: str) -> None:
        self.errors.setdefault(path, []).append(message)

    def node(self, node, path: str, depth: int) -> None:
        if not isinstance(node, dict):
            return self.error(path, 'Expected an object: {"all": [...]}, {"any": [...]}, {"not": {...}} or a clause.')
        if depth > MAX_DEPTH:
            return self.error(path, f"Nested deeper than {MAX_DEPTH} levels.")
        groups = [key for key in ("all", "any", "not") if key in node]
        if groups:
            if len(node) != 1:
                return self.error(path, f"A {groups[0]!r} group has no other keys.")
            key = groups[0]
            if key == "not":
                return self.node(node["not"], f"{path}.not", depth + 1)
            children = node[key]
            if not isinstance(children, list) or not children:
                return self.error(f"{path}.{key}", "Expected a non-empty list of conditions.")
            for index, child in enumerate(children):
                self.node(child, f"{path}.{key}[{index}]", depth + 1)
            return None
        self.clause(node, path)
        return None

    def clause(self, node: dict, path: str) -> None:
        self.clauses += 1
        if self.clauses == MAX_CLAUSES + 1:
            self.error(path, f"At most {MAX_CLAUSES} conditions.")
        extra = set(node) - {"field", "op", "value"}
        if extra:
            self.error(path, f"Unknown keys: {', '.join(sorted(extra))}; a clause has field, op and value.")
        name, op = node.get("field"), node.get("op")
        if not isinstance(name, str) or not (name in FIELD_OPS or _data_keys(name)):
            return self.error(f"{path}.field", f"Unknown field {name!r}; one of {', '.join(FIELD_OPS)} or data.<key>.")
        allowed = FIELD_OPS.get(name, OPS)
        if op not in allowed:
            return self.error(f"{path}.op", f"Operator {op!r} does not apply to {name}; one of {', '.join(allowed)}.")
        if "value" not in node and op != "exists":
            return self.error(f"{path}.value", "This clause needs a value.")
        value = node.get("value", True)
        message = _value_problem(name, op, value)
        if message:
            self.error(f"{path}.value", message)
        return None


def _data_keys(name: str) -> list[str] | None:
    if not name.startswith("data."):
        return None
    keys = name[len("data."):].split(".")
    return keys if all(0 < len(key) <= 100 for key in keys) else None


def _value_problem(name: str, op: str, value) -> str:  # noqa: C901 — one branch per field kind
    if op == "exists":
        return "" if isinstance(value, bool) else "exists takes true or false."
    if op == "in":
        if not isinstance(value, list) or not value or len(value) > MAX_IN:
            return f"in takes a list of 1 to {MAX_IN} values."
        values = value
    else:
        values = [value]
    for item in values:
        if name in ("locale", "timezone", "topic", "has_address") and not isinstance(item, str):
            return f"Expected a string, got {type(item).__name__}."
        if name == "has_address" and item not in ChannelKind.values:
            return f"Unknown channel kind {item!r}; one of {', '.join(ChannelKind.values)}."
        if name in ("created_at", "updated_at") and _moment(item) is None:
            return "Expected an ISO 8601 date or date-time, e.g. 2026-01-31T08:00:00Z."
        if name.startswith("data."):
            if op in ORDER_OPS and not _number(item):
                return f"{op} compares numbers; got {type(item).__name__}."
            if not _scalar(item):
                return "Expected a string, number, boolean or null."
    return ""


def segment_validate(*, definition) -> None:
    """Raise :class:`SegmentInvalid` naming every bad clause, or return."""
    checker = _Checker()
    checker.node(definition, "definition", 0)
    if checker.errors:
        raise SegmentInvalid(checker.errors)


class JsonType(Func):
    """The JSON type of ``data`` at a key path, as PostgreSQL names it (number, string...)."""

    output_field = CharField()

    def __init__(self, keys: list[str]):
        super().__init__(F("data"))
        self.keys = keys

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(_key(self.source_expressions[0], self.keys))
        return f"jsonb_typeof({sql})", params

    def as_sql(self, compiler, connection, **extra):  # SQLite
        sql, params = compiler.compile(self.source_expressions[0])
        path = compile_json_path(self.keys)
        return (f"(CASE json_type({sql}, %s) WHEN 'integer' THEN 'number' WHEN 'real' THEN 'number' "
                f"WHEN 'text' THEN 'string' WHEN 'true' THEN 'boolean' WHEN 'false' THEN 'boolean' "
                f"ELSE json_type({sql}, %s) END)"), [*params, path, *params, path]


class JsonArrayHas(Func):
    """The list at a ``data`` key path has ``value`` as an element."""

    output_field = BooleanField()
    conditional = True

    def __init__(self, keys: list[str], value):
        super().__init__(F("data"))
        self.keys, self.value = keys, value

    def as_postgresql(self, compiler, connection, **extra):
        sql, params = compiler.compile(_key(self.source_expressions[0], self.keys))
        return f"({sql} @> %s::jsonb)", [*params, json.dumps([self.value])]

    def as_sql(self, compiler, connection, **extra):  # SQLite
        sql, params = compiler.compile(self.source_expressions[0])
        return (f"EXISTS (SELECT 1 FROM json_each({sql}, %s) AS element WHERE element.value = %s)",  # noqa: S608
                [*params, compile_json_path(self.keys), self.value])


def _key(base, keys: list[str]) -> KeyTransform:
    expression = base
    for key in keys:
        expression = KeyTransform(key, expression)
    return expression


def _is_type(keys: list[str], kind: str) -> Q:
    return Q(Exact(JsonType(keys), Value(kind)))


def _data_column():
    """``Recipient.data`` as a resolved column, so JSON lookups prepare their values as the ORM does."""
    return Recipient._meta.get_field("data").get_col(Recipient._meta.db_table)


def _data_q(keys: list[str], op: str, value) -> Q:
    key = _key(_data_column(), keys)
    lookup = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte", "in": "in"}
    if op == "exists":
        return Q(key.get_lookup("isnull")(key, not value))
    if op == "!=":
        return Q(key.get_lookup("isnull")(key, True)) | ~Q(key.get_lookup("exact")(key, value))
    if op in ORDER_OPS:
        return _is_type(keys, "number") & Q(key.get_lookup(lookup[op])(key, value))
    if op == "contains":
        text = KeyTextTransform(keys[-1], _key(_data_column(), keys[:-1]))
        parts = [_is_type(keys, "string") & Q(Contains(text, value))] if isinstance(value, str) else []
        parts.append(_is_type(keys, "array") & Q(JsonArrayHas(keys, value)))
        return reduce(operator.or_, parts)
    return Q(key.get_lookup(lookup[op])(key, value))


def _field_q(name: str, op: str, value) -> Q:
    if name in ("locale", "timezone"):
        if op == "exists":
            return ~Q(**{name: ""}) if value else Q(**{name: ""})
        q = {"=": Q(**{name: value}), "!=": ~Q(**{name: value}), "in": Q(**{f"{name}__in": value}),
             "contains": Q(**{f"{name}__contains": value})}
        return q[op]
    if name in ("created_at", "updated_at"):
        lookup = {"<": "lt", "<=": "lte", ">": "gt", ">=": "gte"}[op]
        return Q(**{f"{name}__{lookup}": _moment(value)})
    values = value if op == "in" else [value]
    if name == "has_address":
        related = ContactPoint.objects.filter(recipient=OuterRef("pk"), kind__in=values, active=True)
    else:  # topic
        related = Subscription.objects.filter(recipient=OuterRef("pk"), topic__key__in=values)
    exists = Exists(related)
    return ~Q(exists) if op == "!=" else Q(exists)


def _compile(node: dict) -> Q:
    if "all" in node:
        return reduce(operator.and_, (_compile(child) for child in node["all"]))
    if "any" in node:
        return reduce(operator.or_, (_compile(child) for child in node["any"]))
    if "not" in node:
        return ~_compile(node["not"])
    name, op, value = node["field"], node["op"], node.get("value", True)
    keys = _data_keys(name)
    return _data_q(keys, op, value) if keys else _field_q(name, op, value)


def segment_q(*, definition) -> Q:
    """The definition as one ``Q`` over recipients (validated first)."""
    segment_validate(definition=definition)
    return _compile(definition)
