"""New passwords: 8 to 128 characters, not easily guessed (zxcvbn's score >= ``auth.min_password_score``) and,
when ``auth.breached_passwords_url`` is set, not in a known data breach (app/services/breached_passwords.py).

Easily guessed counts the account's details (password_context) and the service's own words: ``auth.password_words``
and ``app.name``, each also as its parts and run together ("Acme Shop" → "acme shop", "acmeshop", "acme", "shop").
zxcvbn finds them as words in the password, but counts a word followed by a few characters ("zhangwei123!") or the
phone written with separators ("138-1234-5678") as fairly strong. So a reduced form is scored too, and the weaker
score counts: lower-cased, without separators (space - . _), and with each of those words, longest first, replaced
by one character that stands for it, as a guesser who knows the account tries its details first ("zhangwei123!" →
"\x00123!", scored 1). The common passwords of Chinese users (common_passwords_zh.txt) join zxcvbn's own.

zxcvbn 4.5.0 is pure Python, and some inputs are slow: its time grows with the length squared times the l33t
substitutions the password's characters allow (up to 736 when it holds all 20 of ``4@8({[<369!|170$5+%2``), and
faster than the length cubed for a repetitive one. Measured on the development machine (2 cores, busy): ordinary
passwords take 1 to 4 ms; 128 random letters 33 ms, "abc" * 43 82 ms, but 128 random printable characters 3.7 s,
"i" * 128 1.1 s and 128 characters holding every l33t character 7.9 s (zxcvbn's own limit, 72 characters, still
allows 2.3 s). Register and both resets check the password before any proof, so anyone could spend seconds of CPU
a request. So only a prefix is scored: at most SCORED_MAX_LENGTH characters, fewer when many substitutions apply
(see SCORED_BUDGET; 8 when all 20 are there). The slowest of 1,853 crafted 128-character inputs (single characters
and pairs repeated, l33t runs, l33t characters among letters) then took 36 ms ("i" * 128, scored as "i" * 48). When
the reduced form differs, the two forms share that bound: each gets half the budget and 38 characters at most.
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
from pathlib import Path
from typing import Any

import phonenumbers
from zxcvbn import zxcvbn
from zxcvbn.matching import L33T_TABLE, RANKED_DICTIONARIES, enumerate_l33t_subs, relevant_l33t_subtable

from app.config import configs
from app.errors import InvalidField
from app.i18n import N_, _
from app.services.breached_passwords import check_not_breached

PASSWORD_MIN_LENGTH, PASSWORD_MAX_LENGTH = 8, 128
SCORED_MAX_LENGTH = 48
SCORED_BUDGET = 50_000  # at most (l33t substitutions + 2) times the scored length squared
COMMON_PASSWORDS_ZH = Path(__file__).with_name("common_passwords_zh.txt")
SEPARATORS = re.compile(r"[\s\-._]+")
KNOWN_WORD = "\x00"  # what a context word becomes in the reduced form: zxcvbn counts it as about 10 guesses
_GENERIC_LABELS = {"com", "net", "org", "edu", "gov", "co", "ac"}  # second-level labels, as in .com.cn or .co.uk
_ZXCVBN = threading.Lock()
# Every warning and suggestion zxcvbn 4.5 gives (zxcvbn/feedback.py), for the catalogue: translated where sent.
ZXCVBN_ADVICE = (
    N_("Use a few words, avoid common phrases."), N_("No need for symbols, digits, or uppercase letters."),
    N_("Add another word or two. Uncommon words are better."), N_("Straight rows of keys are easy to guess."),
    N_("Short keyboard patterns are easy to guess."), N_("Use a longer keyboard pattern with more turns."),
    N_('Repeats like "aaa" are easy to guess.'), N_("Avoid repeated words and characters."),
    N_('Repeats like "abcabcabc" are only slightly harder to guess than "abc".'),
    N_('Sequences like "abc" or "6543" are easy to guess.'), N_("Avoid sequences."),
    N_("Recent years are easy to guess."), N_("Avoid recent years."), N_("Avoid years that are associated with you."),
    N_("Dates are often easy to guess."), N_("Avoid dates and years that are associated with you."),
    N_("This is a top-10 common password."), N_("This is a top-100 common password."),
    N_("This is a very common password."), N_("This is similar to a commonly used password."),
    N_("A word by itself is easy to guess."), N_("Names and surnames by themselves are easy to guess."),
    N_("Common names and surnames are easy to guess."), N_("Capitalization doesn't help very much."),
    N_("All-uppercase is almost as easy to guess as all-lowercase."),
    N_("Reversed words aren't much harder to guess."), N_("Predictable substitutions like '@' instead of 'a' don't "
                                                           "help very much."),
)


def _add_common_passwords(path: Path) -> None:
    """The words of ``path`` into zxcvbn's "passwords" dictionary, ranked by their order (a word zxcvbn ranks
    better keeps its rank). matching.add_frequency_lists would make a dictionary of its own, which zxcvbn scans on
    every call and again for each l33t substitution; merged, the words cost nothing per call, and zxcvbn's advice
    calls them common passwords."""
    ranked = RANKED_DICTIONARIES["passwords"]
    lines = (line.strip().lower() for line in path.read_text(encoding="utf-8").splitlines())
    for rank, word in enumerate((line for line in lines if line and not line.startswith("#")), 1):
        ranked[word] = min(rank, ranked.get(word, rank))


_add_common_passwords(COMMON_PASSWORDS_ZH)


def check_new_password(password: str, field: str = "password", *, context: Iterable[str | None] = ()) -> None:
    """400 on ``field`` unless ``password`` is PASSWORD_MIN_LENGTH to PASSWORD_MAX_LENGTH characters, scores at
    least ``auth.min_password_score`` with ``context`` (password_context) and service_words counted as easily
    guessed words, and is in no known breach. No message quotes the password (zxcvbn's feedback does not)."""
    if not isinstance(password, str) or not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
        raise InvalidField(_("%(field)s must be %(low)s to %(high)s characters", field=field,
                             low=PASSWORD_MIN_LENGTH, high=PASSWORD_MAX_LENGTH), field=field)
    minimum = configs.auth.min_password_score
    if minimum > 0:
        words = service_words()
        result, replaced = _weaker(password, [*(item for item in context if item), *words])
        if result["score"] < minimum:
            feedback = result["feedback"]
            matched = [match["matched_word"] for match in result["sequence"]
                       if match.get("dictionary_name") == "user_inputs"]
            warning = (_context_warning(replaced, words) or _zxcvbn_says(feedback["warning"])
                       or _context_warning(matched, words))
            advice = " ".join([warning, *map(_zxcvbn_says, feedback["suggestions"])]).strip()
            raise InvalidField(_("%(field)s is too easy to guess. %(advice)s", field=field,
                                 advice=advice or _("Add another word or two. Uncommon words are better.")),
                               field=field)
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
    """What a guesser would try first for this account (None skipped), lower-cased: the E.164 phone with and
    without its +, the national number, its groups of 4 digits or more as written internationally ("+86 138 1234
    5678") and its last 4, 6 and 8 digits; the email, its local part as _name_forms gives it (with and without a
    +tag), its domain and the domain's own labels ("example" of "example.com.cn"); the nickname likewise."""
    forms: dict[str, None] = {}  # ordered and without repeats
    if phone:
        number = phonenumbers.parse(phone, None)
        national = "".join(char for char in phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
                           if char.isdigit())
        international = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
        tails = [national[-length:] for length in (8, 6, 4) if len(national) > length]
        forms.update(dict.fromkeys([phone, phone.lstrip("+"), national, *re.findall(r"\d{4,}", international),
                                    *tails]))
    if email:
        local, _, domain = email.lower().partition("@")
        labels = [label for label in domain.split(".")[:-1] if label not in _GENERIC_LABELS]
        names = [*_name_forms(local.partition("+")[0]), *_name_forms(local)]  # without and with a +tag
        forms.update(dict.fromkeys([email.lower(), *names, domain, *labels]))
    if nickname:
        forms.update(dict.fromkeys(_name_forms(nickname)))
    return [form for form in forms if form]


def _name_forms(name: str) -> list[str]:
    """A name as written, its parts of 3 characters or more, the parts run together and, of 2 parts or more,
    their initials: "Zhang.Wei" → "zhang.wei", "zhang", "wei", "zhangwei", "zw"."""
    parts = [part for part in re.split(r"[\W_]+", name.lower()) if part]
    initials = ["".join(part[0] for part in parts)] if len(parts) > 1 else []
    return [name.lower().strip(), *(part for part in parts if len(part) >= 3), "".join(parts), *initials]


def _context_warning(matched: list[str], words: list[str]) -> str:
    """What zxcvbn leaves unsaid: that the password is made of the service's name or the account's details."""
    if any(word in words for word in matched):
        return _("It is built on the name of this service, its product or company.")
    if matched:
        return _("It is close to the account's phone number, email or nickname.")
    return ""


def _zxcvbn_says(advice: str) -> str:
    """zxcvbn's English advice (one of ZXCVBN_ADVICE) in the request's language."""
    return _(advice) if advice else ""


def _weaker(password: str, words: list[str]) -> tuple[dict[str, Any], list[str]]:
    """zxcvbn's result for ``password`` or for its reduced form (see the module docstring), whichever is guessed
    sooner, with the words taken out of the reduced form when that is the one."""
    reduced, replaced = _reduce(password, words)
    if reduced == password:
        return _score(password, words), []
    result, other = _score(password, words, forms=2), _score(reduced, words, forms=2)
    return (other, replaced) if other["guesses"] < result["guesses"] else (result, [])


def _reduce(password: str, words: list[str]) -> tuple[str, list[str]]:
    """``password`` lower-cased and without separators (one kept if that is all it is: zxcvbn fails on ""), with
    each of ``words`` it holds (2 characters or more, also without separators), longest first, replaced by
    KNOWN_WORD; and those words, as given."""
    reduced, replaced = SEPARATORS.sub("", password.lower()) or password[:1], []
    for word in sorted(words, key=len, reverse=True):
        plain = SEPARATORS.sub("", word.lower())
        if len(plain) >= 2 and plain in reduced:
            reduced = reduced.replace(plain, KNOWN_WORD)
            replaced.append(word)
    return reduced, replaced


def _score(password: str, user_inputs: list[str], forms: int = 1) -> dict[str, Any]:
    """zxcvbn's result for the prefix of ``password`` it can score within its share of the budget, when ``forms``
    are scored for one check (see the module docstring), and never fewer than PASSWORD_MIN_LENGTH characters."""
    substitutions = len(enumerate_l33t_subs(relevant_l33t_subtable(password, L33T_TABLE)))
    longest = round(SCORED_MAX_LENGTH / forms ** (1 / 3))  # the time of a repetitive one grows as the length cubed
    length = max(PASSWORD_MIN_LENGTH, min(longest, math.isqrt(SCORED_BUDGET // forms // (substitutions + 2))))
    with _ZXCVBN:
        return dict(zxcvbn(password[:length], user_inputs=user_inputs, max_length=PASSWORD_MAX_LENGTH))
