"""Strict request bodies: a field the operation does not have is an error, not something to
drop. A caller who misspells ``context`` or nests it where it does not belong learns at once,
instead of getting a 202 and a message rendered without it."""
import difflib
from collections.abc import Mapping

from rest_framework import serializers


class RefuseUnknownFieldsMixin:
    """400 naming every unknown field (with a "did you mean" hint when one is close). Read-only
    fields of the answer are known: a body read, changed and sent back is accepted."""

    def to_internal_value(self, data):
        if isinstance(data, Mapping):
            known = set(self.fields)
            unknown = sorted(set(data) - known)
            if unknown:
                writable = sorted(name for name, field in self.fields.items() if not field.read_only)
                raise serializers.ValidationError({name: [_unknown(name, writable)] for name in unknown})
        return super().to_internal_value(data)


def _unknown(name: str, writable: list[str]) -> str:
    close = difflib.get_close_matches(str(name), writable, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return f"Unknown field.{hint} Fields: {', '.join(writable)}."
