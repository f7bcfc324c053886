"""Rendering templates in a Jinja2 sandbox.

Templates are written by operators and filled with context from calling systems, so they run
in Jinja2's immutable sandbox: no attribute access to Python internals, no imports, no side
effects; undefined variables are errors, not blanks. HTML parts are autoescaped.
"""
from collections.abc import Mapping
from functools import lru_cache

from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment

_text_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
_html_env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=True)
HTML_FIELDS = frozenset({"html"})


class RenderError(ValueError):
    """A template could not be rendered with the given context."""


@lru_cache(maxsize=2048)
def _compile(source: str, html: bool):
    return (_html_env if html else _text_env).from_string(source)


def _render_value(value, context: Mapping, *, html: bool = False):
    if isinstance(value, str):
        return _compile(value, html).render(context) if ("{" in value) else value
    if isinstance(value, Mapping):
        return {k: _render_value(v, context, html=html) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_value(v, context, html=html) for v in value]
    return value


def render_parts(parts: Mapping, context: Mapping) -> dict:
    """Render every part of one channel's content (``subject``, ``html``, ``payload``...)."""
    try:
        return {name: _render_value(value, context, html=name in HTML_FIELDS) for name, value in parts.items()}
    except TemplateError as exc:
        raise RenderError(str(exc)) from exc


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


def variables_used(content: Mapping) -> set[str]:
    """Top-level names a content tree refers to; raises ``RenderError`` for bad syntax."""
    names: set[str] = set()

    def walk(value):
        if isinstance(value, str) and "{" in value:
            try:
                names.update(meta.find_undeclared_variables(_text_env.parse(value)))
            except TemplateError as exc:
                raise RenderError(f"{exc} in {value[:80]!r}") from exc
        elif isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(content)
    return names


def recipient_context(*, external_id: str, name: str, locale: str, data: Mapping) -> dict:
    """What a template may know of its recipient, under the name ``recipient``."""
    return {"external_id": external_id, "name": name, "locale": locale, "data": dict(data or {})}
