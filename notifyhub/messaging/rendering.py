"""Rendering templates in a bounded Jinja2 sandbox.

Templates are written by operators and filled with context from calling systems, so they run
in a sandbox (:mod:`notifyhub.messaging.template_sandbox`): no attribute access to Python
internals, no imports or includes, no side effects, and bounded time, integer size and output;
undefined variables are errors, not blanks. HTML parts are autoescaped.

Every failure, whatever Python raised inside the template (``ZeroDivisionError``,
``OverflowError``, ``RecursionError``, ``MemoryError``...), leaves here as :class:`RenderError`
naming the part, so a save or a dry run answers ``400`` and a send records ``render_error``.
"""
from collections.abc import Mapping
from functools import lru_cache

from django.conf import settings

from notifyhub.messaging.template_sandbox import BoundedSandbox, render_budget

_text_env = BoundedSandbox(autoescape=False)
_html_env = BoundedSandbox(autoescape=True)
HTML_FIELDS = frozenset({"html"})


class RenderError(ValueError):
    """A template could not be rendered with the given context."""


def _describe(exc: BaseException) -> str:
    if isinstance(exc, RecursionError):
        return "recursion too deep"
    if isinstance(exc, MemoryError):
        return "out of memory"
    text = str(exc) or type(exc).__name__
    return text[:300]


@lru_cache(maxsize=2048)
def _compile(source: str, html: bool):
    return (_html_env if html else _text_env).from_string(source)


def _budget():
    return render_budget(seconds=settings.NOTIFYHUB_TEMPLATE_RENDER_SECONDS,
                         max_output=settings.NOTIFYHUB_TEMPLATE_MAX_OUTPUT)


def _render_value(value, context: Mapping, *, html: bool, path: str):
    try:
        if isinstance(value, str):
            if "{" not in value:
                return value
            rendered = _compile(value, html).render(context)
            rendered.encode("utf-8")  # a lone surrogate would fail later, at the provider
            return rendered
    except RenderError:
        raise
    except Exception as exc:  # noqa: BLE001 — anything a template does wrong is the template's error
        raise RenderError(f"{path}: {_describe(exc)}") from exc
    if isinstance(value, Mapping):
        return {k: _render_value(v, context, html=html, path=f"{path}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, context, html=html, path=f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def render_trial(parts: Mapping, context: Mapping) -> None:
    """Render with sample context and raise only what no context could fix.

    Saving a template runs it once: a template that overflows, divides by zero, recurses
    without end or exceeds the time or output budget is refused on save. A missing variable
    or a type error may be the sample's fault, so those pass here and are caught at send.
    """
    from jinja2 import UndefinedError

    from notifyhub.messaging.template_sandbox import TemplateLimitExceeded

    fatal = (TemplateLimitExceeded, ArithmeticError, RecursionError, MemoryError, UnicodeError)
    for name, value in parts.items():
        try:
            render_parts({name: value}, context)
        except RenderError as exc:
            cause = exc.__cause__
            if isinstance(cause, fatal) and not isinstance(cause, UndefinedError):
                raise


def render_parts(parts: Mapping, context: Mapping) -> dict:
    """Render every part of one channel's content (``subject``, ``html``, ``payload``...).

    One time budget and one output allowance cover all the parts together.
    """
    with _budget():
        return {name: _render_value(value, context, html=name in HTML_FIELDS, path=name)
                for name, value in parts.items()}


def content_for(*, content: Mapping, translations: Mapping, channel: str, locale: str) -> Mapping | None:
    """The channel's content in the recipient's locale (exact tag, then language), else default."""
    if locale:
        language = locale.split("-")[0].lower()
        for tag, variant in translations.items():
            if tag.lower() == locale.lower() and channel in variant:
                return variant[channel]
        for tag, variant in translations.items():
            if tag.split("-")[0].lower() == language and channel in variant:
                return variant[channel]
    return content.get(channel)


def variables_used(content: Mapping, *, path: str = "") -> set[str]:
    """Top-level names a content tree refers to; raises ``RenderError`` naming the part.

    Each string is also compiled (never evaluated: constant folding is off), so an unknown
    filter or a forbidden tag is refused when the template is saved, not when it is sent.
    """
    from jinja2 import meta

    names: set[str] = set()
    if isinstance(content, str):
        if "{" in content:
            try:
                names.update(meta.find_undeclared_variables(_text_env.parse(content)))
                _compile(content, False)
            except Exception as exc:  # noqa: BLE001 — a syntax error is the template's error
                raise RenderError(f"{path + ': ' if path else ''}{_describe(exc)} in {content[:80]!r}") from exc
    elif isinstance(content, Mapping):
        for key, value in content.items():
            names |= variables_used(value, path=f"{path}.{key}" if path else str(key))
    elif isinstance(content, list):
        for index, value in enumerate(content):
            names |= variables_used(value, path=f"{path}[{index}]")
    return names


def recipient_context(*, external_id: str, name: str, locale: str, data: Mapping) -> dict:
    """What a template may know of its recipient, under the name ``recipient``."""
    return {"external_id": external_id, "name": name, "locale": locale, "data": dict(data or {})}
