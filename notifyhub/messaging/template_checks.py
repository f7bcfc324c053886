"""Checks on a template's content, shared by the admin and the API."""
from django.core.exceptions import ValidationError

from channels_app.content import content_problems
from channels_app.kinds import ChannelKind
from notifyhub.messaging.rendering import RenderError, recipient_context, render_trial, variables_used

ALWAYS_AVAILABLE = frozenset({"recipient"})


def template_content_check(*, content: dict, translations: dict, variables: list,
                           sample_context: dict | None = None) -> None:
    """Known channel kinds, valid syntax, no variable used that is not declared, and no part
    that fails whatever the context (a trial render with the sample context, within the
    template bounds)."""
    errors: dict[str, list[str]] = {}
    if not isinstance(content, dict):
        raise ValidationError({"content": ["Expected an object keyed by channel kind."]})
    trees = [("content", content)] + [
        (f"translations.{locale}", variant) for locale, variant in (translations or {}).items()
    ]
    for field, tree in trees:
        if not isinstance(tree, dict):
            errors.setdefault(field.split(".")[0], []).append(f"{field}: expected an object.")
            continue
        for kind, parts in tree.items():
            if kind not in ChannelKind.values:
                errors.setdefault(field.split(".")[0], []).append(f"{field}: unknown channel kind {kind!r}.")
                continue
            if not isinstance(parts, dict):
                errors.setdefault(field.split(".")[0], []).append(f"{field}.{kind}: expected an object of parts.")
                continue
            for problem in content_problems(kind, parts):
                errors.setdefault(field.split(".")[0], []).append(f"{field}.{kind}: {problem}.")
            try:
                undeclared = variables_used(parts) - set(variables or []) - ALWAYS_AVAILABLE
            except RenderError as exc:  # the message starts with the part's name
                errors.setdefault(field.split(".")[0], []).append(f"{field}.{kind}.{exc}")
                continue
            if undeclared:
                errors.setdefault("variables", []).append(
                    f"{field}.{kind} uses undeclared variables: {', '.join(sorted(undeclared))}.")
                continue
            try:
                render_trial(parts, _trial_context(sample_context))
            except RenderError as exc:
                errors.setdefault(field.split(".")[0], []).append(f"{field}.{kind}.{exc}")
    if errors:
        raise ValidationError(errors)


def _trial_context(sample_context) -> dict:
    sample = sample_context if isinstance(sample_context, dict) else {}
    return {**sample, "recipient": recipient_context(external_id="preview", name="", locale="", data={})}


def template_routing_check(*, routing: str, fallback_chain: list, content: dict) -> None:
    """A fallback chain names two or more different kinds, each with content in the template."""
    if routing != "fallback":
        return
    if not isinstance(fallback_chain, list) or len(fallback_chain) < 2 or len(set(fallback_chain)) != len(
            fallback_chain):
        raise ValidationError({"fallback_chain": ["Name two or more different channel kinds, in order."]})
    unknown = [kind for kind in fallback_chain if kind not in ChannelKind.values]
    if unknown:
        raise ValidationError({"fallback_chain": [f"Unknown channel kinds: {', '.join(map(str, unknown))}."]})
    missing = [kind for kind in fallback_chain if kind not in (content or {})]
    if missing:
        raise ValidationError({"fallback_chain": [f"The template has no content for {', '.join(missing)}."]})
