"""The catalogues: every marked message has a reviewed zh-CN translation with the same placeholders, the catalogue
holds exactly what the code marks, and the committed .mo is the compiled .po."""

from __future__ import annotations

import ast
import gettext
import inspect
import re

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po
from zxcvbn import feedback

from app.i18n import LOCALES, TRANSLATIONS
from app.services.password_policy import ZXCVBN_ADVICE
from app.services.sms import DEFAULT_TEMPLATE
from tests.support import PROJECT_DIR

# The keywords `make messages` passes to pybabel extract (Babel's defaults, which include _ and N_, and these).
KEYWORDS = ("lazy_gettext",)
LANGUAGES = [str(locale) for tag, locale in LOCALES.items() if tag != "en"]  # en is the source language
PLACEHOLDER = re.compile(r"%\(\w+\)[sdr]|\{\w+\}")


def po_path(locale: str):
    return TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po"


def catalogue(locale: str):
    with po_path(locale).open("rb") as po:
        return read_po(po, locale=locale)


def messages(locale: str) -> list:
    return [message for message in catalogue(locale) if message.id]


def marked_in_code() -> set[str]:
    """The msgids `make messages` would extract now, with babel.cfg's mapping."""
    from babel.messages.extract import DEFAULT_KEYWORDS

    with (PROJECT_DIR / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = {**DEFAULT_KEYWORDS, **dict.fromkeys(KEYWORDS)}
    return {message[2] for message in extract_from_dir(str(PROJECT_DIR), method_map, options_map, keywords=keywords)}


def test_every_zh_cn_locale_has_a_catalogue():
    assert LANGUAGES == ["zh_Hans_CN"]
    assert po_path("zh_Hans_CN").exists()


@pytest.mark.parametrize("locale", LANGUAGES)
def test_every_message_has_a_reviewed_translation(locale):
    untranslated = [message.id for message in messages(locale) if not message.string]
    fuzzy = [message.id for message in messages(locale) if message.fuzzy]
    assert untranslated == [] and fuzzy == [], "run make messages, translate these, then make translations"


@pytest.mark.parametrize("locale", LANGUAGES)
def test_the_catalogue_holds_exactly_the_messages_the_code_marks(locale):
    in_catalogue = {message.id for message in messages(locale)}
    in_code = marked_in_code()
    assert len(in_code) > 150
    assert sorted(in_code - in_catalogue) == [], "new messages: run make messages and translate them"
    assert sorted(in_catalogue - in_code) == [], "messages no longer used: run make messages"


@pytest.mark.parametrize("locale", LANGUAGES)
def test_translations_keep_every_placeholder(locale):
    broken = [message.id for message in messages(locale)
              if sorted(PLACEHOLDER.findall(message.id)) != sorted(PLACEHOLDER.findall(message.string))]
    assert broken == []


@pytest.mark.parametrize("locale", LANGUAGES)
def test_the_committed_mo_is_the_compiled_po(locale):
    with (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.mo").open("rb") as mo:
        compiled = {key: value for key, value in gettext.GNUTranslations(mo)._catalog.items() if key}
    expected = {message.id: message.string for message in messages(locale)}
    assert compiled == expected, "run make translations"


def test_every_piece_of_zxcvbns_advice_is_in_the_catalogue():
    said = {ast.literal_eval(node.args[0]) for node in ast.walk(ast.parse(inspect.getsource(feedback)))
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "_"}
    assert said == set(ZXCVBN_ADVICE)


def test_the_default_sms_template_is_the_one_in_the_catalogue():
    import config_default

    assert config_default.configs["sms"]["template"] == DEFAULT_TEMPLATE
