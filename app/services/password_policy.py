"""New passwords: 8 to 128 characters, not easily guessed (zxcvbn's score >= ``auth.min_password_score``) and,
when ``auth.breached_passwords_url`` is set, not in a known data breach (app/services/breached_passwords.py).

Easily guessed counts the account's details (password_context) and the service's own words: ``auth.password_words``
and ``app.name``, each also as its parts and run together ("Acme Shop" → "acme shop", "acmeshop", "acme", "shop").

zxcvbn 4.5.0 is pure Python, and some inputs are slow: its time grows with the length squared times the l33t
substitutions the password's characters allow (up to 736 when it holds all 20 of ``4@8({[<369!|170$5+%2``), and
faster than the length cubed for a repetitive one. Measured on the development machine (2 cores, busy): ordinary
passwords take 1 to 4 ms; 128 random letters 33 ms, "abc" * 43 82 ms, but 128 random printable characters 3.7 s,
"i" * 128 1.1 s and 128 characters holding every l33t character 7.9 s (zxcvbn's own limit, 72 characters, still
allows 2.3 s). Register and both resets check the password before any proof, so anyone could spend seconds of CPU
a request. So only a prefix is scored: at most SCORED_MAX_LENGTH characters, fewer when many substitutions apply
(see SCORED_BUDGET; 8 when all 20 are there). The slowest of 1,853 crafted 128-character inputs (single characters
and pairs repeated, l33t runs, l33t characters among letters) then took 36 ms ("i" * 128, scored as "i" * 48).
An attacker must guess the prefix too, so a strong prefix makes a strong password; what follows is not looked at.

zxcvbn keeps the user inputs of each call in a module-global dict (``matching.RANKED_DICTIONARIES``), so concurrent
calls could score against each other's context: calls are serialised by a lock. That costs little throughput, as
zxcvbn holds the GIL while it runs anyway.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterable
from typing import Any

import phonenumbers
from zxcvbn import zxcvbn
from zxcvbn.matching import L33T_TABLE, enumerate_l33t_subs, relevant_l33t_subtable

from app.config import configs
from app.errors import InvalidField
from app.services.breached_passwords import check_not_breached

PASSWORD_MIN_LENGTH, PASSWORD_MAX_LENGTH = 8, 128
SCORED_MAX_LENGTH = 48
SCORED_BUDGET = 50_000  # at most (l33t substitutions + 2) times the scored length squared
_ZXCVBN = threading.Lock()


def check_new_password(password: str, field: str = "password", *, context: Iterable[str | None] = ()) -> None:
    """400 on ``field`` unless ``password`` is PASSWORD_MIN_LENGTH to PASSWORD_MAX_LENGTH characters, scores at
    least ``auth.min_password_score`` with ``context`` (password_context) and service_words counted as easily
    guessed words, and is in no known breach. No message quotes the password (zxcvbn's feedback does not)."""
    if not isinstance(password, str) or not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise InvalidField(f"{field} must be {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} characters",
                           field=field)
    minimum = configs.auth.min_password_score
    if minimum > 0:
        words = service_words()
        result = _score(password, [*(item for item in context if item), *words])
        if result["score"] < minimum:
            feedback = result["feedback"]
            warning = feedback["warning"] or _context_warning(result["sequence"], words)
            advice = " ".join([warning, *feedback["suggestions"]]).strip()
            raise InvalidField(f"{field} is too easy to guess. "
                               f"{advice or 'Add another word or two. Uncommon words are better.'}", field=field)
    check_not_breached(password, field)


def service_words() -> list[str]:
    """``auth.password_words`` and ``app.name``, lower-cased, each as written, run together and as its parts of
    three characters or more."""
    forms: dict[str, None] = {}  # ordered and without repeats
    for word in [*configs.auth.password_words, configs.app.name]:
        parts = [part for part in re.split(r"[\W_]+", word.lower()) if part]
        for form in (word.lower().strip(), "".join(parts), *(part for part in parts if len(part) >= 3)):
            if form:
                forms[form] = None
    return list(forms)


def password_context(phone: str | None = None, email: str | None = None, nickname: str | None = None) -> list[str]:
    """What a guesser would try first for this account: the E.164 phone and its national digits, the email and
    its local part, the nickname (None skipped)."""
    items = []
    if phone:
        number = phonenumbers.parse(phone, None)
        national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
        items += [phone, "".join(char for char in national if char.isdigit())]
    if email:
        items += [email, email.partition("@")[0]]
    if nickname:
        items.append(nickname)
    return items


def _context_warning(sequence: list[dict[str, Any]], words: list[str]) -> str:
    """What zxcvbn leaves unsaid: that the password is made of the service's name or the account's details."""
    matched = [match["matched_word"] for match in sequence if match.get("dictionary_name") == "user_inputs"]
    if any(word in words for word in matched):
        return "It is built on the name of this service, its product or company."
    if matched:
        return "It is close to the account's phone number, email or nickname."
    return ""


def _score(password: str, user_inputs: list[str]) -> dict[str, Any]:
    """zxcvbn's result for the prefix of ``password`` it can score within the budget (see the module docstring)."""
    substitutions = len(enumerate_l33t_subs(relevant_l33t_subtable(password, L33T_TABLE)))
    length = min(SCORED_MAX_LENGTH, math.isqrt(SCORED_BUDGET // (substitutions + 2)))
    with _ZXCVBN:
        return dict(zxcvbn(password[:length], user_inputs=user_inputs, max_length=PASSWORD_MAX_LENGTH))
