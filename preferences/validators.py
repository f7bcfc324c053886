"""Address and locale checks shared by the API, the admin and the services."""
import zoneinfo
from functools import cache

import phonenumbers
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator, validate_email

from channels_app.kinds import ChannelKind


def normalize_phone(value: str) -> str:
    """E.164 form of ``value``; it must carry its country code (``+8613800138000``)."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValidationError(
            "Enter a phone number in international format, e.g. +8613800138000.", code="invalid_phone"
        ) from None
    if not phonenumbers.is_valid_number(number):
        raise ValidationError(f"{value} is not a valid phone number.", code="invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalize_address(kind: str, value: str) -> str:
    value = (value or "").strip()
    if not value:
        raise ValidationError("This field may not be blank.", code="blank")
    if kind == ChannelKind.EMAIL:
        validate_email(value)
        local, _, domain = value.rpartition("@")
        return f"{local}@{domain.lower()}"
    if kind == ChannelKind.SMS:
        return normalize_phone(value)
    if kind == ChannelKind.WEBHOOK:
        URLValidator(schemes=["http", "https"])(value)
    return value


@cache
def timezone_names() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(value: str) -> str:
    if value and value not in timezone_names():
        raise ValidationError(f"{value!r} is not an IANA time zone name.", code="invalid_timezone")
    return value
