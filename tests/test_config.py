"""Settings: defaults ⊕ per-environment defaults ⊕ config_override.py ⊕ environment ⊕ explicit overrides."""

from __future__ import annotations

import dataclasses
import json
import runpy
import shutil
import textwrap
import typing

import pytest

from app.config import PROJECT_DIR, ConfigError, Settings, configs, load_configs, settings_of
from tests.support import copy_project, run_manage

GOOD_SECRET = "s" * 40


@pytest.fixture
def project(tmp_path):
    """A directory with the real config_default.py and a config_override.py the test writes."""
    shutil.copy(PROJECT_DIR / "config_default.py", tmp_path / "config_default.py")

    def write_override(source: str) -> None:
        (tmp_path / "config_override.py").write_text(textwrap.dedent(source))

    write_override("configs = {}\n")
    return tmp_path, write_override


def load(project_dir, environ=None, overrides=None):
    return load_configs(overrides, environ=environ or {}, directory=project_dir)


def test_defaults_read_as_items_and_attributes(project):
    settings = load(project[0])
    assert settings["qiniu"]["access_key"] == settings.qiniu.access_key == ""
    assert settings.auth.token_ttl == 7200
    assert settings.sms.http.timeout == 3.0
    assert settings.redis.url == "memory://"


def test_missing_attribute_is_an_attribute_error(project):
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = load(project[0]).sms.nope


def test_override_file_is_deep_merged(project):
    directory, write_override = project
    write_override("""
        configs = {"sms": {"gateway": "file", "http": {"url": "https://sms.example"}}}
    """)
    settings = load(directory)
    assert settings.sms.gateway == "file"
    assert settings.sms.http.url == "https://sms.example"
    assert settings.sms.http.timeout == 3.0  # sibling kept
    assert settings.sms.code_ttl == 300


def test_environment_beats_override_file(project):
    directory, write_override = project
    write_override('configs = {"sms": {"gateway": "file"}}\n')
    assert load(directory, {"APP_SMS__GATEWAY": "http"}).sms.gateway == "http"


def test_explicit_overrides_beat_environment(project):
    settings = load(project[0], {"APP_SMS__GATEWAY": "http"}, {"sms": {"gateway": "console"}})
    assert settings.sms.gateway == "console"


def test_short_environment_names(project):
    settings = load(project[0], {
        "DATABASE_URL": "postgresql://db/app",
        "REDIS_URL": "redis://cache:6379/1",
        "SECRET_KEY": GOOD_SECRET,
        "APP_ENV": "testing",
    })
    assert settings.database.url == "postgresql://db/app"
    assert settings.redis.url == "redis://cache:6379/1"
    assert settings.app.secret_key == GOOD_SECRET
    assert settings.app.env == "testing"


@pytest.mark.parametrize(("name", "raw", "path", "expected"), [
    ("APP_SMS__CODE_TTL", "120", ("sms", "code_ttl"), 120),
    ("APP_QINIU__PRIVATE", "yes", ("qiniu", "private"), True),
    ("APP_MAIL__USE_TLS", "off", ("mail", "use_tls"), False),
    ("APP_SMS__HTTP__TIMEOUT", "1.5", ("sms", "http", "timeout"), 1.5),
    ("APP_MAIL__ADMINS", "a@example.com, b@example.com", ("mail", "admins"), ["a@example.com", "b@example.com"]),
    ("APP_MAIL__ADMINS", '["a@example.com"]', ("mail", "admins"), ["a@example.com"]),
    ("APP_QINIU__DOMAIN", "https://cdn.example.com", ("qiniu", "domain"), "https://cdn.example.com"),
])
def test_environment_values_are_parsed_to_the_default_type(project, name, raw, path, expected):
    node = load(project[0], {name: raw})
    for part in path:
        node = node[part]
    assert node == expected
    assert type(node) is type(expected)


def test_unparsable_environment_value_names_the_variable(project):
    with pytest.raises(ConfigError, match="APP_SMS__CODE_TTL is not a valid int") as refused:
        load(project[0], {"APP_SMS__CODE_TTL": "soon"})
    assert "soon" not in str(refused.value)  # never the value: it may be a secret


def test_environment_variable_naming_no_setting_is_refused(project):
    with pytest.raises(ConfigError, match="APP_SMS__GATWAY names no setting"):
        load(project[0], {"APP_SMS__GATWAY": "file"})


def test_override_file_key_missing_from_defaults_is_refused(project):
    directory, write_override = project
    write_override('configs = {"sms": {"gatway": "file"}}\n')
    with pytest.raises(ConfigError, match=r"unknown setting 'sms\.gatway' in config_override\.py"):
        load(directory)


def test_unknown_environment_name_is_refused(project):
    with pytest.raises(ConfigError, match="APP_ENV must be one of"):
        load(project[0], {"APP_ENV": "staging"})


PRODUCTION = {"APP_ENV": "production", "SECRET_KEY": GOOD_SECRET, "REDIS_URL": "redis://r", "APP_SMS__GATEWAY": "http",
              "APP_APP__PUBLIC_URL": "https://api.example.com"}


def test_production_turns_debug_and_auto_migrate_off(project):
    settings = load(project[0], PRODUCTION)
    assert settings.app.debug is False
    assert settings.database.auto_migrate is False


def test_mail_goes_to_the_log_in_development_and_through_smtp_otherwise(project):
    assert load(project[0]).mail.backend == "console"
    assert load(project[0], {"APP_ENV": "testing"}).mail.backend == "smtp"
    assert load(project[0], PRODUCTION).mail.backend == "smtp"
    assert load(project[0], {"APP_MAIL__BACKEND": "smtp"}).mail.backend == "smtp"


@pytest.mark.parametrize(("environ", "reason"), [
    ({"APP_APP__PUBLIC_URL": ""}, "app.public_url is empty"),
    ({"APP_MAIL__BACKEND": "console"}, "mail.backend is 'console'"),
])
def test_production_refuses_a_missing_public_url_or_mails_to_the_log(project, environ, reason):
    with pytest.raises(ConfigError, match="refusing to start in production") as error:
        load(project[0], {**PRODUCTION, **environ})
    assert reason in str(error.value)


@pytest.mark.parametrize("url", ["api.example.com", "ftp://api.example.com", "https://", "https://a.example/?x=1"])
def test_a_public_url_that_is_not_an_absolute_http_url_is_refused(project, url):
    with pytest.raises(ConfigError, match=r"app\.public_url .* is not an absolute http"):
        load(project[0], {"APP_APP__PUBLIC_URL": url})


@pytest.mark.parametrize("prefix", ["/uploads/", "uploads", "a/../b/", "a//b/", "x" * 64 + "/"])
def test_an_s3_prefix_that_is_absolute_unfinished_or_climbs_is_refused(project, prefix):
    with pytest.raises(ConfigError, match=r"s3\.prefix .* must be relative, end with '/'"):
        load(project[0], {"APP_S3__PREFIX": prefix})
    for good in ("", "uploads/", "apps/shop/files/"):
        assert load(project[0], {"APP_S3__PREFIX": good}).s3.prefix == good


@pytest.mark.parametrize("score", [-1, 5])
def test_a_password_score_off_zxcvbns_scale_is_refused(project, score):
    with pytest.raises(ConfigError, match=r"auth\.min_password_score .* is not on zxcvbn's scale, 0 to 4"):
        load(project[0], {"APP_AUTH__MIN_PASSWORD_SCORE": str(score)})
    assert load(project[0], {"APP_AUTH__MIN_PASSWORD_SCORE": "4"}).auth.min_password_score == 4


@pytest.mark.parametrize(("environ", "message"), [
    ({"APP_AUTH__BREACHED_PASSWORDS_URL": "api.pwnedpasswords.com/range/"}, r"breached_passwords_url .* not an http"),
    ({"APP_AUTH__BREACHED_PASSWORDS_TIMEOUT": "0"}, r"breached_passwords_timeout must be a positive number"),
])
def test_a_breached_passwords_service_that_cannot_be_asked_is_refused(project, environ, message):
    with pytest.raises(ConfigError, match=message):
        load(project[0], environ)
    url = "https://api.pwnedpasswords.com/range/"
    assert load(project[0], {"APP_AUTH__BREACHED_PASSWORDS_URL": url}).auth.breached_passwords_url == url


def test_password_words_are_a_comma_separated_list_in_the_environment(project):
    settings = load(project[0], {"APP_AUTH__PASSWORD_WORDS": "acmecorp, Acme Shop"})
    assert settings.auth.password_words == ["acmecorp", "Acme Shop"]
    assert load(project[0]).auth.password_words == []


@pytest.mark.parametrize(("variable", "choices"), [
    ("APP_MAIL__BACKEND", "console, smtp"),
    ("APP_SMS__GATEWAY", "console, file, http"),
    ("APP_FILES__BACKEND", "local, qiniu, s3"),
    ("APP_LOG__FORMAT", "plain, json"),
    ("APP_APP__LOCALE", "en, zh-CN"),
])
def test_a_value_outside_a_settings_choices_stops_the_start(project, variable, choices):
    key = variable[len("APP_"):].lower().replace("__", ".")
    with pytest.raises(ConfigError, match=rf"{key}' in the environment must be one of {choices}, not another value"):
        load(project[0], {variable: "carrier-pigeon"})


@pytest.mark.parametrize(("environ", "reason"), [
    ({"REDIS_URL": "redis://r"}, "SECRET_KEY is the development default"),
    ({"REDIS_URL": "redis://r", "SECRET_KEY": "short"}, "shorter than 32 characters"),
    ({"REDIS_URL": "redis://r", "SECRET_KEY": GOOD_SECRET, "APP_APP__DEBUG": "1"}, "debug is on"),
    ({"SECRET_KEY": GOOD_SECRET}, "memory://"),
])
def test_production_refuses_unsafe_settings(project, environ, reason):
    with pytest.raises(ConfigError, match="refusing to start in production") as error:
        load(project[0], {"APP_ENV": "production", **environ})
    assert reason in str(error.value)


def test_create_app_refuses_unsafe_production_settings():
    from app import create_app

    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app({"app": {"env": "production"}, "redis": {"url": "redis://127.0.0.1:1/0"}})


def test_configs_reads_the_current_apps_settings(make_app):
    first = make_app({"sms": {"code_ttl": 11}})
    second = make_app({"sms": {"code_ttl": 22}})
    with first.app_context():
        assert configs.sms.code_ttl == 11
        assert configs["sms"]["code_ttl"] == 11
    with second.app_context():
        assert configs.sms.code_ttl == 22
    assert configs.sms.code_ttl > 0  # outside an app: the process-wide settings
    assert "secret" not in repr(configs)


# --- typed sections ----------------------------------------------------------------------------


def section_keys(cls) -> dict:
    """The keys a settings dataclass reads, nested sections as dicts (``async`` for the field ``async_``)."""
    hints = typing.get_type_hints(cls)
    return {field.metadata.get("key", field.name): section_keys(hints[field.name])
            if dataclasses.is_dataclass(hints[field.name]) else None for field in dataclasses.fields(cls)}


def default_keys(values: dict) -> dict:
    return {key: default_keys(value) if isinstance(value, dict) else None for key, value in values.items()}


def test_the_settings_dataclasses_have_exactly_the_keys_of_config_default():
    defaults = runpy.run_path(str(PROJECT_DIR / "config_default.py"))["configs"]
    assert section_keys(Settings) == default_keys(defaults)


def test_settings_are_frozen_dataclasses_read_as_attributes(project):
    settings = load(project[0])
    assert isinstance(settings, Settings)
    assert settings.async_.workers == settings["async"]["workers"] == 4
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.auth.token_ttl = 1  # type: ignore[misc]


@pytest.mark.parametrize(("layer", "value", "message"), [
    ("override", {"auth": {"token_ttl": "7200"}}, "'auth.token_ttl' in config_override.py must be int, not str"),
    ("override", {"app": {"trusted_proxies": True}}, "'app.trusted_proxies' in config_override.py must be int, not bool"),
    ("override", {"app": {"debug": 1}}, "'app.debug' in config_override.py must be bool, not int"),
    ("override", {"sms": {"http": {"url": None}}}, "'sms.http.url' in config_override.py must be str, not NoneType"),
    ("override", {"redis": {"socket_timeout": "1"}}, "'redis.socket_timeout' in config_override.py must be float"),
    ("override", {"files": {"allowed_types": "image/png"}},
     "'files.allowed_types' in config_override.py must be list of str, not str"),
    ("environ", {"APP_MAIL__ADMINS": '["a@example.com", 1]'},
     r"'mail.admins' in the environment must be list of str, not list \(item 1 is int\)"),
    ("overrides", {"auth": {"token_ttl": 7200.0}}, r"'auth.token_ttl' in create_app\(\) overrides must be int, not float"),
])
def test_a_value_of_the_wrong_type_is_refused_naming_key_type_and_source(project, layer, value, message):
    directory, write_override = project
    if layer == "override":
        write_override(f"configs = {value!r}\n")
    with pytest.raises(ConfigError, match=message):
        load(directory, value if layer == "environ" else None, value if layer == "overrides" else None)


def test_an_int_is_accepted_for_a_float(project):
    directory, write_override = project
    write_override('configs = {"sms": {"http": {"timeout": 2}}}\n')
    timeout = load(directory).sms.http.timeout
    assert timeout == 2.0
    assert type(timeout) is float


def test_create_app_refuses_a_value_of_the_wrong_type():
    from app import create_app

    with pytest.raises(ConfigError, match=r"'sms.code_ttl' in create_app\(\) overrides must be int"):
        create_app({"app": {"env": "testing"}, "sms": {"code_ttl": "300"}})


def test_an_apps_settings_are_read_the_same_outside_its_context(make_app):
    app = make_app({"sms": {"code_ttl": 33}})
    assert settings_of(app).sms.code_ttl == 33
    with app.app_context():
        assert configs.sms.code_ttl == 33


def test_a_key_in_config_default_without_a_field_stops_the_start(project):
    directory = project[0]
    source = (directory / "config_default.py").read_text()
    (directory / "config_default.py").write_text(source.replace('"sms": {', '"sms": {\n        "new_key": 1,', 1))
    with pytest.raises(ConfigError, match=r"'sms\.new_key' in config_default\.py has no field in app/config/sections"):
        load(directory)


def test_a_field_without_a_key_in_config_default_stops_the_start(project):
    directory = project[0]
    source = (directory / "config_default.py").read_text()
    (directory / "config_default.py").write_text(source.replace('"max_attempts": 5,', "", 1))
    with pytest.raises(ConfigError, match=r"'sms\.max_attempts' is missing from config_default\.py"):
        load(directory)


FILE_SECRET = "s3cret-from-the-file-" + "q" * 30


@pytest.mark.parametrize(("source", "error"), [
    (f"configs = {{\n    'app': {{'secret_key': '{FILE_SECRET}' 'debug': False}},\n}}\n", "SyntaxError: "),
    (f"configs = {{\n    'app': {{'secret_key': {FILE_SECRET.replace('-', '_')}}},\n}}\n", "NameError while loading"),
])
def test_a_settings_file_that_fails_to_load_is_named_with_its_line_not_its_source(tmp_path, source, error):
    """fab deploy prints what `manage.py deploy-check` says about a host's settings: a traceback would quote the
    failing line of config_override.py, secrets and all."""
    project = copy_project(tmp_path / "project")  # never the tree's own config_override.py
    checked = run_manage("deploy-check", env={}, cwd=project)
    assert checked.returncode == 0 and "secret_key" in json.loads(checked.stdout.splitlines()[-1]), checked.stderr
    (project / "config_override.py").write_text(source)
    refused = run_manage("deploy-check", env={}, cwd=project)
    assert refused.returncode != 0
    assert refused.stderr.strip().splitlines() == [refused.stderr.strip()]  # one line, no traceback
    assert f"manage.py: {project / 'config_override.py'} line 2: {error}" in refused.stderr
    for secret in (FILE_SECRET, FILE_SECRET.replace("-", "_"), "qqqqqqqqqq"):
        assert secret not in refused.stdout + refused.stderr
