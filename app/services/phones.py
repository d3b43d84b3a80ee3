"""Phone numbers: parsed and normalised to E.164 with the phonenumbers library."""

from __future__ import annotations

import re

import phonenumbers

from app.errors import InvalidField
from app.i18n import _

_MAINLAND_MOBILE = re.compile(r"^1[0-9]{10}$")
_E164 = re.compile(r"^\+[0-9]{8,15}$")
_SEPARATORS = re.compile(r"[\s\-().]")


def normalize_phone(raw: object, field: str = "phone") -> str:
    """``+8613800138000`` for ``13800138000``, ``+86 138-0013-8000`` or ``+8613800138000``.

    Accepts a mainland China mobile number (11 digits starting with 1, meaning +86) or an E.164 number
    (``+`` and 8 to 15 digits); anything else, or a number that cannot exist, is 400 INVALID_FIELD.
    """
    text = _SEPARATORS.sub("", raw) if isinstance(raw, str) else ""
    if _MAINLAND_MOBILE.match(text):
        text = "+86" + text
    if not _E164.match(text):
        raise InvalidField(_("%(field)s must be an 11-digit mainland mobile number or +<country><number>", field=field),
                           field=field)
    try:
        number = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        number = None
    if number is None or not phonenumbers.is_valid_number(number):
        raise InvalidField(_("%(field)s is not a valid phone number", field=field), field=field)
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)
