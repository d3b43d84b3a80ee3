"""What stops a start: a value of the wrong type, a value no environment can use, unsafe production settings."""

from __future__ import annotations

import functools
import typing
from collections.abc import Mapping
from dataclasses import is_dataclass
from typing import Any
from urllib.parse import urlsplit

from app.config.errors import ConfigError
from app.config.redis_url import url_problem
from app.config.sections import Settings, attribute_names

__all__ = ["ConfigError", "build", "check_types", "production_problems", "setting_problems"]


@functools.cache
def _types(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _section(expected: Any) -> type | None:
    """The dataclass ``expected`` when it is a section, else None."""
    return expected if isinstance(expected, type) and is_dataclass(expected) else None


def _type_name(expected: Any) -> str:
    if typing.get_origin(expected) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(expected)))
    if typing.get_origin(expected) is list:
        return f"list of {typing.get_args(expected)[0].__name__}"
    return str(expected.__name__)


def _mismatch(value: Any, expected: Any) -> str | None:
    """Why ``value`` is not an ``expected`` (the type it is instead), or None when it is one.

    bool is not an int here, an int is a float, a list is checked item by item, and a Literal names the values
    a setting may take (an unknown SMS gateway stops the start, not the first SMS).
    """
    if typing.get_origin(expected) is typing.Literal:
        return None if value in typing.get_args(expected) else "another value"
    if typing.get_origin(expected) is list:
        if not isinstance(value, list):
            return type(value).__name__
        item_type = typing.get_args(expected)[0]
        for index, item in enumerate(value):
            if not isinstance(item, item_type) or (isinstance(item, bool) and item_type is not bool):
                return f"list (item {index} is {type(item).__name__})"
        return None
    if isinstance(value, bool) and expected is not bool:
        return "bool"
    accepted = (int, float) if expected is float else expected
    return None if isinstance(value, accepted) else type(value).__name__


def check_types(values: Mapping, source: str, cls: type = Settings, path: str = "") -> None:
    """Refuse a key ``values`` (one layer, from ``source``) has that ``cls`` lacks, or a value of the wrong type;
    the message names the dotted key, the type expected and the source, never the value (it may be a secret)."""
    names = attribute_names(cls)
    for key, value in values.items():
        dotted = f"{path}{key}"
        if key not in names:
            raise ConfigError(f"setting {dotted!r} in {source} has no field in app/config/sections.py")
        expected = _types(cls)[names[key]]
        section = _section(expected)
        if section is not None:
            if not isinstance(value, Mapping):
                raise ConfigError(f"setting {dotted!r} in {source} must be a section (a dict)")
            check_types(value, source, section, dotted + ".")
            continue
        mismatch = _mismatch(value, expected)
        if mismatch is not None:
            raise ConfigError(f"setting {dotted!r} in {source} must be {_type_name(expected)}, not {mismatch}")


def build(values: Mapping, cls: type = Settings, path: str = "") -> Any:
    """The ``cls`` dataclass of ``values`` (checked already), ints given for floats made floats."""
    arguments = {}
    types = _types(cls)
    for key, name in attribute_names(cls).items():
        dotted = f"{path}{key}"
        if key not in values:
            raise ConfigError(f"setting {dotted!r} is missing from config_default.py")
        value, expected = values[key], types[name]
        section = _section(expected)
        if section is not None:
            value = build(value, section, dotted + ".")
        elif expected is float:
            value = float(value)
        arguments[name] = value
    return cls(**arguments)


def setting_problems(settings: Settings) -> list[str]:
    """Values no environment can use (empty when all are fine)."""
    problems = []
    redis_problem = url_problem(settings.redis.url)
    if redis_problem:
        problems.append(redis_problem)
    if settings.redis.replica_wait_ms < 0:
        problems.append("redis.replica_wait_ms must be 0 (off) or a positive number of milliseconds")
    public_url = settings.app.public_url
    if public_url:
        parts = urlsplit(public_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            problems.append(f"app.public_url {public_url!r} is not an absolute http(s) URL like https://api.example.com")
    auth = settings.auth
    for key in ("idle_timeout", "session_max_age", "max_sessions", "reauth_window", "events_ttl_days"):
        if getattr(auth, key) <= 0:
            problems.append(f"auth.{key} must be a positive number")
    if not 0 <= settings.auth.min_password_score <= 4:
        problems.append(f"auth.min_password_score {settings.auth.min_password_score} is not on zxcvbn's scale, 0 to 4 "
                        "(5 or more would refuse every new password)")
    breached = settings.auth.breached_passwords_url
    if breached and (urlsplit(breached).scheme not in ("http", "https") or not urlsplit(breached).hostname):
        problems.append(f"auth.breached_passwords_url {breached!r} is not an http(s) URL like "
                        "https://api.pwnedpasswords.com/range/")
    if settings.auth.breached_passwords_timeout <= 0:
        problems.append("auth.breached_passwords_timeout must be a positive number of seconds")
    if settings.server.header_timeout <= 0 or settings.server.keep_alive_timeout <= 0:
        problems.append("server.header_timeout and server.keep_alive_timeout must be positive numbers of seconds")
    if settings.jobs.backend == "celery" and settings.redis.url.startswith("memory://"):
        problems.append("jobs.backend is celery, whose broker is Redis, but the Redis URL is memory://; set REDIS_URL "
                        "to a real server, or jobs.backend to thread")
    jobs = settings.jobs
    if jobs.max_retries < 0 or jobs.retry_backoff_max < 1 or jobs.visibility_timeout <= jobs.retry_backoff_max:
        problems.append("jobs.max_retries must be at least 0, jobs.retry_backoff_max at least 1, and "
                        "jobs.visibility_timeout longer than jobs.retry_backoff_max (a retry waiting in a worker "
                        "longer than the visibility timeout is handed to another worker too)")
    if settings.files.orphan_grace < 0:
        problems.append("files.orphan_grace must be 0 or more seconds")
    return problems + _s3_problems(settings)


def _s3_problems(settings: Settings) -> list[str]:
    problems = []
    s3 = settings.s3
    for key in ("endpoint_url", "public_url"):
        url = getattr(s3, key)
        if url and (urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname):
            problems.append(f"s3.{key} {url!r} is not an http(s) URL like https://s3.example.com")
    if s3.multipart_threshold < 5 * 1024 * 1024:
        problems.append("s3.multipart_threshold must be at least 5 MiB (5242880), S3's smallest part")
    if min(s3.download_ttl, s3.upload_ttl) < 1 or s3.download_ttl > 604800 or s3.upload_ttl > 604800:
        problems.append("s3.download_ttl and s3.upload_ttl must be from 1 to 604800 seconds (SigV4's longest)")
    if s3.connect_timeout <= 0 or s3.read_timeout <= 0 or s3.max_attempts < 1:
        problems.append("s3.connect_timeout and s3.read_timeout must be positive, s3.max_attempts at least 1")
    prefix = s3.prefix
    if prefix and (prefix.startswith("/") or not prefix.endswith("/") or ".." in prefix.split("/")
                   or "//" in prefix or len(prefix) > 64):
        problems.append(f"s3.prefix {prefix!r} must be relative, end with '/' (or be empty), hold no '..' or '//', "
                        "and be at most 64 characters, like uploads/")
    if s3.max_pending < 1 or s3.stream_deadline <= 0:
        problems.append("s3.max_pending must be at least 1 and s3.stream_deadline positive")
    return problems


def production_problems(settings: Settings, default_secret: str) -> list[str]:
    """Why these settings are unsafe to serve in production (empty when they are fine)."""
    problems = []
    secret = settings.app.secret_key
    if not secret or secret == default_secret:
        problems.append("SECRET_KEY is the development default; set a long random one")
    elif len(secret) < 32:
        problems.append("SECRET_KEY is shorter than 32 characters")
    if settings.app.debug:
        problems.append("debug is on (app.debug); turn it off")
    if settings.redis.url.startswith("memory://"):
        problems.append("the Redis URL is memory://, which is one process only; set REDIS_URL to a real server")
    if not settings.app.public_url:
        problems.append("app.public_url is empty; set it to the API's public base URL, e.g. https://api.example.com "
                        "(APP_APP__PUBLIC_URL)")
    if settings.mail.backend != "smtp":
        problems.append(f"mail.backend is {settings.mail.backend!r}, which only logs mails; set it to smtp")
    if settings.sms.gateway == "console":
        problems.append("sms.gateway is 'console', which writes every verification code to the log; set it to http "
                        "(your SMS provider), or file for a staging host")
    return problems
