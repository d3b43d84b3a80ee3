"""The language of what the API says to people: error and success messages, mails and SMS texts, in ``en`` or
``zh-CN``. A request's ``Accept-Language`` chooses; ``app.locale`` when it names neither, and outside a request
(CLI commands, background jobs). ``code``, ``status``, ``field`` and the spec stay as they are in every language.

Code marks a message with ``_`` (``gettext``: translated at once, in a request or command), ``lazy_gettext``
(module-level constants, translated where they are used) or ``N_`` (marked only; ``_`` it where it is used);
placeholders are named, ``_("The file is larger than %(size)s bytes.", size=n)``. The catalogues live in
app/translations; ``make messages`` and ``make translations`` (docs/i18n.md).

Every answer pays for this, so the cheapest routes set its budget: the language is decided once a request (Flask-Babel
keeps the selector's answer), from the raw header, parsed once per distinct header and not at all when there is
none; ``_`` finds the catalogue in one lookup, not Flask-Babel's three context lookups and ``str(locale)``.

A mail is rendered when it is sent, in the request that asks for it, so it reaches the worker in that request's
language; a job that renders text itself runs it under ``force_locale(tag)`` with the tag it was given.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

from babel import Locale
from babel.support import NullTranslations
from flask import Flask, Response, current_app, has_request_context, request
from flask_babel import Babel, force_locale, get_locale, get_translations
from flask_babel.speaklater import LazyString
from werkzeug.datastructures import LanguageAccept
from werkzeug.http import parse_accept_header

from app.config import settings_of
from app.negotiation import MAX_BYTES

__all__ = ["LOCALES", "N_", "_", "current_tag", "force_locale", "gettext", "init_app", "lazy_gettext", "tag_of",
           "tag_of_header"]

TRANSLATIONS = Path(__file__).with_name("translations")
# API tag → the catalogue's locale. Babel knows zh-CN as zh_Hans_CN (with its script), and gettext looks for that
# directory (then zh), never zh_CN: so the catalogue is app/translations/zh_Hans_CN.
LOCALES = {"en": Locale("en"), "zh-CN": Locale.parse("zh_Hans_CN")}
CACHED_HEADERS = 256  # distinct Accept-Language headers whose choice is kept, each at most MAX_BYTES
_SIMPLIFIED = {"zh", "zh-cn", "zh-sg", "zh-hans", "zh-hans-cn", "zh-hans-sg"}
_CATALOGUES: dict[Locale | None, NullTranslations] = {}  # Flask-Babel's catalogue of each locale, as it keeps them
babel = Babel()


def N_(text: str) -> str:
    """Mark ``text`` for the catalogue without translating it here: it is translated where it is used."""
    return text


def gettext(string: str, **variables: Any) -> str:
    """``string`` in the current language, ``variables`` put in: what ``flask_babel.gettext`` returns."""
    text = _catalogue().ugettext(string)
    return text % variables if variables else text


_ = gettext


def lazy_gettext(string: str, **variables: Any) -> LazyString:
    """``gettext`` when the string is used, in the language of that moment."""
    return LazyString(gettext, string, **variables)


def _catalogue() -> NullTranslations:
    """Flask-Babel's catalogue for the current locale (``force_locale`` included), kept by locale: Flask-Babel loads
    each once per process too, but finds it again on every call by ``str(locale)``, which costs more than the rest."""
    locale = get_locale()
    found = _CATALOGUES.get(locale)
    if found is None:
        found = _CATALOGUES[locale] = get_translations()
    return found


def tag_of(language: str) -> str | None:
    """The tag (``en``, ``zh-CN``) that an Accept-Language range asks for, or None: ``en`` and ``en-*`` are
    English; ``zh``, ``zh-CN``, ``zh-SG`` and ``zh-Hans(-*)`` Simplified Chinese (``zh-TW``, ``zh-Hant``: neither)."""
    value = language.strip().lower().replace("_", "-")
    if value == "en" or value.startswith("en-"):
        return "en"
    if value in _SIMPLIFIED or value.startswith("zh-hans-"):
        return "zh-CN"
    return None


def requested_tag() -> str:
    """The tag of the current request (its most preferred language we speak), else ``app.locale``."""
    header = request.environ.get("HTTP_ACCEPT_LANGUAGE") if has_request_context() else None
    if not header:  # the common case: nothing to parse
        return settings_of(current_app).app.locale
    # app.negotiation bounds the header, so the cache holds CACHED_HEADERS of MAX_BYTES; one that nothing bounded
    # (a test request context) is parsed and not kept
    tag = tag_of_header(header) if len(header) <= MAX_BYTES else tag_of_header.__wrapped__(header)
    return tag or settings_of(current_app).app.locale


@functools.lru_cache(maxsize=CACHED_HEADERS)
def tag_of_header(header: str) -> str | None:
    """The tag an Accept-Language header asks for first, or None; decided once per distinct header (a client sends
    the same one every time)."""
    for language, quality in parse_accept_header(header, LanguageAccept):
        tag = tag_of(language) if quality > 0 else None
        if tag:
            return tag
    return None


def current_tag() -> str:
    """The tag messages are being written in now (``force_locale`` included)."""
    locale = get_locale()
    return "zh-CN" if locale is not None and locale.language == "zh" else "en"


def _select_locale() -> Locale:
    return LOCALES[requested_tag()]


def _say_language(response: Response) -> Response:
    """Content-Language on the JSON answers whose message is in the chosen language (not the specs: English)."""
    if "Vary" in response.headers:
        response.vary.add("Accept-Language")
    else:  # what vary.add writes here, without parsing an empty set and writing it back
        response.headers.add("Vary", "Accept-Language")
    if response.mimetype == "application/json" and not (request.endpoint or "").endswith(("specs", "openapi")):
        response.headers["Content-Language"] = current_tag()
    return response


def init_app(app: Flask) -> None:
    babel.init_app(app, default_locale="en", default_translation_directories=str(TRANSLATIONS),
                   locale_selector=_select_locale)
    app.after_request(_say_language)
