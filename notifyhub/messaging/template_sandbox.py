"""A Jinja2 sandbox with bounds on time, size and reach.

Jinja's immutable sandbox stops templates from reaching Python internals, but not from
spending the machine: ``10**10000000``, ``'a' * 10**8``, ``'x'.center(10**9)`` or three nested
loops each run to completion in the worker (or, through constant folding, while a template is
being saved). Operators write templates and systems supply their context, so neither is
trusted with unbounded CPU or memory.

The bounds, all checked before the expensive step runs:

- no ``include``/``extends``/``import``/``from``: a template is one self-contained string;
- integers stay under ``MAX_INT_BITS``; strings and lists built by ``*``, ``+``, ``~``,
  ``%``/``format``, ``join``, ``replace`` and the padding methods and filters stay under the
  output cap;
- ``range`` is capped at ``MAX_RANGE`` items and every loop iteration, call, attribute lookup
  and output checks a wall-clock deadline;
- everything a render writes (buffered output of ``set`` blocks and macros included) counts
  towards the output cap;
- constant folding is off, so compiling a template never evaluates it.

The deadline and the running output count live in a context variable set by
:func:`render_budget`, one budget per render.
"""
import contextvars
import re
import string
import time
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import wraps

from jinja2 import StrictUndefined, Template, TemplateSyntaxError, nodes
from jinja2.filters import make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError
from jinja2.visitor import NodeTransformer

MAX_INT_BITS = 4096  # about 1,233 decimal digits: far beyond any amount, far below Python's str limit
MAX_RANGE = 10_000
DEFAULT_SECONDS = 0.5
DEFAULT_MAX_OUTPUT = 256 * 1024
FORBIDDEN_TAGS = {nodes.Include: "include", nodes.Extends: "extends", nodes.Import: "import",
                  nodes.FromImport: "from … import"}
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\d+|\*)?(?:\.(\d+|\*))?[hlL]?[diouxXeEfFgGcrsa%]")
_HOOK_PREFIX = "_nh_"  # the filters the parser adds around loops, concatenation and output
_SIZE_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "to_bytes"})
_SIZE_FILTERS = frozenset({"center", "indent", "wordwrap", "truncate", "batch", "slice", "tojson", "pprint"})


class TemplateLimitExceeded(SecurityError):
    """A template tried to spend more time, memory or output than a render may."""


@dataclass
class _Budget:
    deadline: float
    seconds: float
    max_output: int
    written: int = 0


_budget: contextvars.ContextVar[_Budget | None] = contextvars.ContextVar("template_budget", default=None)


@contextmanager
def render_budget(*, seconds: float = DEFAULT_SECONDS, max_output: int = DEFAULT_MAX_OUTPUT):
    """Give the renders inside the block one deadline and one output allowance."""
    token = _budget.set(_Budget(time.monotonic() + seconds, seconds, max_output))
    try:
        yield
    finally:
        _budget.reset(token)


def _current() -> _Budget:
    budget = _budget.get()
    if budget is None:  # only outside a render (BoundedTemplate.render always opens a budget)
        budget = _Budget(time.monotonic() + DEFAULT_SECONDS, DEFAULT_SECONDS, DEFAULT_MAX_OUTPUT)
    return budget


def tick() -> _Budget:
    budget = _current()
    if time.monotonic() > budget.deadline:
        raise TemplateLimitExceeded(f"rendering took longer than {budget.seconds:g} s")
    return budget


def _check_size(size: int, what: str = "the result") -> None:
    limit = _current().max_output
    if size > limit:
        raise TemplateLimitExceeded(f"{what} would exceed {limit} characters")


def _length(value, limit: int | None = None) -> int:
    """Characters a value stands for once written out, counting shared references each time.

    ``[big] * 10000`` holds one string ten thousand times: cheap to build, huge to print. The
    walk stops as soon as it passes ``limit``.
    """
    limit = _current().max_output if limit is None else limit
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if isinstance(item, (str, bytes)):
            total += len(item)
        elif isinstance(item, Mapping):
            total += 4 * len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple, set, frozenset)):
            total += 2 * len(item)
            stack.extend(item)
        else:
            total += 8
    return total


def _check_int(value: int) -> None:
    if value.bit_length() > MAX_INT_BITS:
        raise TemplateLimitExceeded(f"integers are limited to {MAX_INT_BITS} bits")


def _check_format(fmt: str, args: Iterable, fields: int) -> None:
    """Widths in the format and the fields times the longest argument stay under the cap."""
    values = list(args)
    specs = " ".join(_format_specs(fmt))
    widths = [int(w) for w in re.findall(r"\d+", specs)]
    if "{" in specs:  # nested fields: a width may come from the arguments
        widths += [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    for width in widths:
        _check_size(width, "a format width")
    _check_size(len(fmt) + fields * max((_length(v) for v in values), default=0), "the formatted text")


def _format_specs(fmt: str):
    for _, field, spec, _ in string.Formatter().parse(fmt):
        if field is not None and spec:
            yield spec


def _percent_check(fmt: str, args) -> None:
    specs = _PERCENT_SPEC.findall(fmt)
    values = list(args.values()) if isinstance(args, Mapping) else list(args) if isinstance(args, tuple) else [args]
    for width, precision in specs:
        for number in (width, precision):
            if number.isdigit():
                _check_size(int(number), "a format width")
    if any("*" in pair for pair in specs):
        for value in values:
            if isinstance(value, int):
                _check_size(value, "a format width")
    _check_size(len(fmt) + len(specs) * max((_length(v) for v in values), default=0), "the formatted text")


def _join_check(sep: str, items: list) -> None:
    _check_size(_length(items) + _length(sep) * max(len(items) - 1, 0), "the joined text")


def _binop_check(op: str, left, right) -> None:
    ints = isinstance(left, int) and isinstance(right, int)
    if op == "**" and ints and right > 0 and abs(left) > 1:
        if left.bit_length() * right > MAX_INT_BITS:
            raise TemplateLimitExceeded(f"integers are limited to {MAX_INT_BITS} bits")
    elif op == "*":
        if ints:
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise TemplateLimitExceeded(f"integers are limited to {MAX_INT_BITS} bits")
        elif isinstance(right, int):
            _check_size(_length(left) * right)
        elif isinstance(left, int):
            _check_size(_length(right) * left)
    elif op == "+" and not ints:
        _check_size(_length(left) + _length(right))
    elif op == "%" and isinstance(left, str):
        _percent_check(left, right)


_CHEAP_FILTERS = frozenset({"length", "count", "first", "last", "default", "d", "random"})


def _guard_filter(name: str, original):
    """Wrap a filter: its input and output stay under the cap, and its size arguments too."""
    skip = 1 if getattr(original, "jinja_pass_arg", None) else 0

    @wraps(original)
    def guarded(*args, **kwargs):
        tick()
        if len(args) <= skip:
            return original(*args, **kwargs)
        value, rest = args[skip], args[skip + 1:]
        if name in {"join", "sum"}:
            value = list(value)
            args = (*args[:skip], value, *rest)
        _check_size(_length(value), f"the input of |{name}")
        for number in [*rest, *kwargs.values()]:
            if isinstance(number, int) and not isinstance(number, bool) and name in _SIZE_FILTERS:
                _check_size(number, f"the argument of |{name}")
        if name == "format" and isinstance(value, str):
            _percent_check(value, tuple(rest) or kwargs)
        elif name in {"join", "sum"}:
            attribute = kwargs.get("attribute", rest[1] if (name == "join" and len(rest) > 1) else None)
            items = value
            if attribute is not None:
                getter = make_attrgetter(args[0].environment if name == "join" else args[0], attribute)
                items = [getter(item) for item in value]
            sep = rest[0] if (name == "join" and rest) else kwargs.get("d", "")
            _join_check(sep if isinstance(sep, str) else "", items)
        elif name == "replace" and isinstance(value, str) and len(rest) >= 2:
            _check_size(len(value) + (value.count(str(rest[0])) + 1) * _length(rest[1]))
        elif name in {"indent", "wordwrap"} and isinstance(value, str):
            fills = [a if isinstance(a, int) else _length(a) for a in [*rest, *kwargs.values()]
                     if isinstance(a, (str, int)) and not isinstance(a, bool)]
            _check_size(len(value) + (value.count("\n") + 1) * max(fills, default=4))
        result = original(*args, **kwargs)
        if name not in _CHEAP_FILTERS:
            _check_size(_length(result))
        return result

    return guarded


class _Guards(NodeTransformer):
    """Refuse cross-template tags; route loops, concatenation and output through the budget."""

    def generic_visit(self, node, *args, **kwargs):
        for kind, tag in FORBIDDEN_TAGS.items():
            if isinstance(node, kind):
                raise TemplateSyntaxError(f"'{tag}' is not allowed: a template is one self-contained text",
                                          node.lineno)
        return super().generic_visit(node, *args, **kwargs)

    @staticmethod
    def _call(hook: str, node, *args) -> nodes.Filter:
        """``node|<internal hook>(*args)``: a filter call compiles to a direct call, without
        the sandbox's per-call checks, which these hooks (our own code) do not need."""
        return nodes.Filter(node, _HOOK_PREFIX + hook, list(args), [], None, None).set_lineno(node.lineno)

    def visit_For(self, node):
        node = self.generic_visit(node)
        node.iter = self._call("bounded_iter", node.iter)
        return node

    def visit_Concat(self, node):
        return self._call("bounded_value", self.generic_visit(node))

    def visit_Output(self, node):
        node = self.generic_visit(node)
        literal = sum(len(child.data) for child in node.nodes if isinstance(child, nodes.TemplateData))
        wrapped = [child if isinstance(child, nodes.TemplateData) else self._call("counted", child)
                   for child in node.nodes]
        node.nodes = [self._call("counted", nodes.Const("").set_lineno(node.lineno),
                                 nodes.Const(literal).set_lineno(node.lineno)), *wrapped]
        return node


class BoundedTemplate(Template):
    """A template whose render always runs inside a budget: the caller's, or a default one."""

    def render(self, *args, **kwargs):
        if _budget.get() is not None:
            return super().render(*args, **kwargs)
        with render_budget():
            return super().render(*args, **kwargs)


class BoundedSandbox(ImmutableSandboxedEnvironment):
    """The immutable sandbox with every bound above; use it like any Jinja environment."""

    intercepted_binops = frozenset({"**", "*", "+", "%", "//", "/"})
    template_class = BoundedTemplate

    def __init__(self, **kwargs):
        super().__init__(undefined=StrictUndefined, optimized=False, **kwargs)
        self.globals["range"] = self.bounded_range
        self.globals.pop("lipsum", None)
        for name, original in list(self.filters.items()):
            if name not in _CHEAP_FILTERS:
                self.filters[name] = _guard_filter(name, original)
        for hook in ("bounded_iter", "bounded_value", "counted"):
            self.filters[_HOOK_PREFIX + hook] = getattr(self, hook)

    def _parse(self, source, name, filename):
        return _Guards().visit(super()._parse(source, name, filename))

    # --- hooks called by compiled templates -----------------------------------------------
    @staticmethod
    def bounded_range(*args):
        tick()
        try:
            items = range(*args)
            size = len(items)
        except OverflowError:
            size = MAX_RANGE + 1
        if size > MAX_RANGE:
            raise TemplateLimitExceeded(f"range() is limited to {MAX_RANGE} items")
        return items

    @staticmethod
    def bounded_iter(iterable):
        for item in iterable:
            tick()
            yield item

    @staticmethod
    def bounded_value(value):
        _check_size(_length(value))
        return value

    @staticmethod
    def counted(value, literal: int = 0):
        budget = tick()
        if not isinstance(value, str):
            _check_size(_length(value), "the output")
        budget.written += literal + len(value if isinstance(value, str) else str(value))
        if budget.written > budget.max_output:
            raise TemplateLimitExceeded(f"the output would exceed {budget.max_output} characters")
        return value

    # --- sandbox hooks ---------------------------------------------------------------------
    def call_binop(self, context, operator_, left, right):
        tick()
        _binop_check(operator_, left, right)
        result = self.binop_table[operator_](left, right)
        if isinstance(result, int):
            _check_int(result)
        else:
            _check_size(_length(result))
        return result

    def getattr(self, obj, attribute):
        tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj, argument):
        tick()
        return super().getitem(obj, argument)

    def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 — Jinja's own signature
        tick()
        owner = getattr(__obj, "__self__", None)
        name = getattr(__obj, "__name__", "")
        if isinstance(owner, (str, int)):
            __self._method_check(owner, name, args, kwargs)
        result = super().call(__context, __obj, *args, **kwargs)
        _check_size(_length(result))
        return result

    @staticmethod
    def _method_check(owner, name: str, args, kwargs) -> None:
        values = [*args, *kwargs.values()]
        if name in _SIZE_METHODS:
            for value in values:
                if isinstance(value, int):
                    _check_size(value, f"the argument of .{name}()")
        elif name == "expandtabs" and values and isinstance(values[0], int):
            _check_size(len(owner) + owner.count("\t") * values[0])
        elif name == "join" and values:
            _join_check(owner, list(values[0]))
        elif name == "replace" and len(values) >= 2:
            _check_size(len(owner) + (owner.count(str(values[0])) + 1) * _length(values[1]))
        elif name == "translate" and values and isinstance(values[0], Mapping):
            _check_size(len(owner) * max((_length(v) for v in values[0].values()), default=1))

    def wrap_str_format(self, value):
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt = value.__self__
        fields = sum(1 for _, field, _, _ in string.Formatter().parse(fmt) if field is not None)

        @wraps(wrapper)
        def bounded(*args, **kwargs):
            values = [*args, *kwargs.values()]
            if value.__name__ == "format_map" and args and isinstance(args[0], Mapping):
                values = list(args[0].values())
            _check_format(fmt, values, fields)
            return wrapper(*args, **kwargs)

        return bounded

