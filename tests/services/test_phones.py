"""Phone numbers are normalised to E.164; malformed ones are 400 on the phone field."""

from __future__ import annotations

import pytest

from app.errors import InvalidField
from app.services.phones import normalize_phone


@pytest.mark.parametrize(("raw", "expected"), [
    ("13800138000", "+8613800138000"),
    ("+8613800138000", "+8613800138000"),
    ("+86 138-0013-8000", "+8613800138000"),
    ("138 0013 8000", "+8613800138000"),
    ("+14155552671", "+14155552671"),
    ("+44 20 7946 0958", "+442079460958"),
])
def test_valid_numbers_become_e164(raw, expected):
    assert normalize_phone(raw) == expected


@pytest.mark.parametrize("raw", [
    "", "abc", "12345", "1380013800", "138001380001", "23800138000", "+86123", "+1234567890123456",
    "0086 13800138000", "+8612345678901", None, 13800138000,
])
def test_malformed_numbers_are_invalid_on_the_phone_field(raw):
    with pytest.raises(InvalidField) as error:
        normalize_phone(raw)
    assert error.value.field == "phone"


def test_the_field_name_can_be_chosen():
    with pytest.raises(InvalidField) as error:
        normalize_phone("x", field="account")
    assert error.value.field == "account"
