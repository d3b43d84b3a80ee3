"""The language of what the API says to people: error and success messages, mails and SMS texts, in ``en`` or
``zh-CN``. A request's ``Accept-Language`` chooses; ``app.locale`` when it names neither, and outside a request
(CLI commands, background jobs). ``code``, ``status``, ``field`` and the spec stay as they are in every language.

Code marks a message with ``_`` (``gettext``: translated at once, in a request or command), ``lazy_gettext``
(module-level constants, translated where they are used) or ``N_`` (marked only; ``_`` it where it is used);
placeholders are named, ``_("The file is larger than %(size)s bytes.", size=n)``. The catalogues live in
app/translations; ``make messages`` and ``make translations`` (docs/i18n.md).

A mail is rendered when it is sent, in the request that asks for it, so it reaches the worker in that request's
language; a job that renders text itself runs it under ``force_locale(tag)`` with the tag it was given.
"""

from __future__ import annotations

from pathlib import Path

from babel import Locale
from flask import Flask, Response, current_app, has_request_context, request
from flask_babel import Babel, force_locale, get_locale, gettext, lazy_gettext

from app.config import settings_of

__all__ = ["LOCALES", "N_", "_", "current_tag", "force_locale", "init_app", "lazy_gettext", "tag_of"]

_ = gettext
TRANSLATIONS = Path(__file__).with_name("translations")
# API tag → the catalogue's locale. Babel knows zh-CN as zh_Hans_CN (with its script), and gettext looks for that
# directory (then zh), never zh_CN: so the catalogue is app/translations/zh_Hans_CN.
LOCALES = {"en": Locale("en"), "zh-CN": Locale.parse("zh_Hans_CN")}
_SIMPLIFIED = {"zh", "zh-cn", "zh-sg", "zh-hans", "zh-hans-cn", "zh-hans-sg"}
babel = Babel()


def N_(text: str) -> str:
    """Mark ``text`` for the catalogue without translating it here: it is translated where it is used."""
    return text


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
    default = settings_of(current_app).app.locale
    if not has_request_context():
        return default
    for language, quality in request.accept_languages:  # bounded by app.negotiation
        tag = tag_of(language) if quality > 0 else None
        if tag:
            return tag
    return default


def current_tag() -> str:
    """The tag messages are being written in now (``force_locale`` included)."""
    locale = get_locale()
    return "zh-CN" if locale is not None and locale.language == "zh" else "en"


def _select_locale() -> Locale:
    return LOCALES[requested_tag()]


def _say_language(response: Response) -> Response:
    """Content-Language on the JSON answers whose message is in the chosen language (not the specs: English)."""
    response.vary.add("Accept-Language")
    if response.mimetype == "application/json" and not (request.endpoint or "").endswith(("specs", "openapi")):
        response.headers["Content-Language"] = current_tag()
    return response


def init_app(app: Flask) -> None:
    babel.init_app(app, default_locale="en", default_translation_directories=str(TRANSLATIONS),
                   locale_selector=_select_locale)
    app.after_request(_say_language)
